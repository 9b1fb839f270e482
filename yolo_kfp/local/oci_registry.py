"""An OCI registry on 127.0.0.1 for the demo and the tests: the CNCF distribution registry (Debian's
``docker-registry``) with TLS (a CA made here) and htpasswd users, as a cluster's private registry would be;
and a ModelCar base pushed into it, made from the machine's static busybox (``sh`` and ``sleep``).

``python -m yolo_kfp.local.oci_registry`` starts one in the foreground, pushes the base, and prints the
settings a ``run-local`` that publishes to it needs (docs/tracking.md).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

from yolo_kfp.infra.oci_reference import Reference
from yolo_kfp.local.certificates import make_certificates
from yolo_kfp.local.s3_server import free_ports, wait_for_port
from yolo_kfp.release.oci_client import AUTH_VARIABLE, CA_VARIABLE, OCI_MANIFEST, RegistryClient, digest_of

USER = "yolo-kfp"
BUSYBOX = "/bin/busybox"  # Debian's busybox-static: a static binary, so it runs alone in an image
APPLETS = ("sh", "sleep", "ln", "ls", "cat")  # what KServe's ModelCar sidecar runs, and a look around


def registry_binary() -> str:
    found = shutil.which("docker-registry") or shutil.which("registry")
    if not found:
        raise FileNotFoundError("no OCI registry binary: apt-get install docker-registry (Debian's CNCF distribution)")
    return found


class LocalRegistry:
    """``with LocalRegistry() as registry``: ``registry.host`` (127.0.0.1:port), ``registry.ca`` (the CA's PEM),
    ``registry.auth_json()`` (a dockerconfigjson of its user); everything it wrote goes when it stops."""

    def __init__(self, password: str | None = None) -> None:
        self.password = password or base64.urlsafe_b64encode(os.urandom(18)).decode()
        self.folder = ""
        self.process: subprocess.Popen | None = None
        self.host = ""
        self.ca = ""

    def __enter__(self) -> LocalRegistry:
        import bcrypt
        import yaml

        self.folder = tempfile.mkdtemp(prefix="yolo-kfp-registry-")
        try:
            tls = make_certificates(os.path.join(self.folder, "tls"))
            self.ca = tls["ca"]
            with open(os.path.join(self.folder, "htpasswd"), "wb") as f:  # the registry reads bcrypt only
                f.write(USER.encode() + b":" + bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=6)) + b"\n")
            (port, debug_port) = free_ports(2)
            self.host = f"127.0.0.1:{port}"
            config = {"version": 0.1, "log": {"level": "warn"},
                      "storage": {"filesystem": {"rootdirectory": os.path.join(self.folder, "data")}},
                      "http": {"addr": self.host, "tls": {"certificate": tls["cert"], "key": tls["key"]},
                               "debug": {"addr": f"127.0.0.1:{debug_port}"}},
                      "auth": {"htpasswd": {"realm": "yolo-kfp", "path": os.path.join(self.folder, "htpasswd")}}}
            with open(os.path.join(self.folder, "config.yml"), "w") as f:
                yaml.safe_dump(config, f)
            log = open(os.path.join(self.folder, "registry.log"), "wb")
            self.process = subprocess.Popen([registry_binary(), "serve", os.path.join(self.folder, "config.yml")],
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
            wait_for_port(port, self.process, 30, os.path.join(self.folder, "registry.log"))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def storage(self) -> str:
        """The registry's storage folder: what a test compares before and after a push."""
        return os.path.join(self.folder, "data")

    def auth_json(self, password: str | None = None) -> str:
        token = base64.b64encode(f"{USER}:{password or self.password}".encode()).decode()
        return json.dumps({"auths": {self.host: {"auth": token}}})

    def environment(self) -> dict[str, str]:
        """What a publish step needs to push here: the credentials and the CA."""
        return {AUTH_VARIABLE: self.auth_json(), CA_VARIABLE: self.ca}


def push_busybox_base(registry: LocalRegistry, repository: str = "base/busybox") -> str:
    """Pushes a one-layer linux/amd64 image of the machine's static busybox (``/bin/sh``, ``/bin/sleep``…) to
    ``repository``; returns its reference by digest, a ModelCar base."""
    if not os.path.exists(BUSYBOX):
        raise FileNotFoundError(f"no {BUSYBOX}: apt-get install busybox-static")
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        folder = tarfile.TarInfo("bin")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        binary = tar.gettarinfo(BUSYBOX, "bin/busybox")
        binary.uid = binary.gid = 0
        binary.uname = binary.gname = ""
        with open(BUSYBOX, "rb") as f:
            tar.addfile(binary, f)
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(link)
    data = layer.getvalue()
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": created,
                         "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [digest_of(data)]}}).encode()
    reference = Reference.parse(f"{registry.host}/{repository}", "repository")
    client = RegistryClient(registry.host, (USER, registry.password), registry.ca)
    with tempfile.TemporaryDirectory() as work:
        for name, blob in (("layer", data), ("config", config)):
            path = os.path.join(work, name)
            with open(path, "wb") as f:
                f.write(blob)
            client.put_blob(reference.path, path, digest_of(blob))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": digest_of(config), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                       "digest": digest_of(data), "size": len(data)}]}).encode()
    digest = client.put_manifest(reference.path, "latest", manifest, OCI_MANIFEST)
    return f"{reference.repository}@{digest}"


def main() -> None:
    """Serves a registry until interrupted (Ctrl-C, or a kill: SIGTERM), after printing how to publish to it."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a shell's background job starts with it ignored
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with LocalRegistry() as registry:
        base = push_busybox_base(registry)
        auth = os.path.join(registry.folder, "auth.json")
        with open(auth, "w") as f:
            f.write(registry.auth_json())
        print(f"registry {registry.host} (TLS: {registry.ca}; user {USER}); ModelCar base {base}\n"
              f'export {AUTH_VARIABLE}="$(cat {auth})" {CA_VARIABLE}={registry.ca}\n'
              f"yolo-kfp run-local --demo --modelcar-base {base} "
              f"--param publish_oci={registry.host}/team/yolo-kfp-model"
              "\n(Ctrl-C stops it and removes everything it stored)", flush=True)
        try:
            registry.process.wait() if registry.process else None
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
