"""An MLflow tracking server on 127.0.0.1 for the tests and ``run-local --mlflow``: ``mlflow server`` with
a SQLite store and its artifacts in a folder it serves, in an environment of its own (``make setup-dev``
makes ``.venv/mlflow``): the full MLflow wants other versions of pyarrow and starlette than FiftyOne, so
only its client (``mlflow-skinny``) shares the project's environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from yolo_kfp.local.s3_server import free_ports

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
OWN_ENVIRONMENT = os.path.join(ROOT, ".venv", "mlflow", "bin", "mlflow")
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}  # nothing leaves the machine


def mlflow_binary() -> str:
    found = os.environ.get("YOLO_KFP_MLFLOW") or (OWN_ENVIRONMENT if os.path.exists(OWN_ENVIRONMENT)
                                                   else shutil.which("mlflow"))
    if not found or not os.path.exists(found):
        raise FileNotFoundError("MLflow's server is missing: make setup-dev installs it in .venv/mlflow (or set "
                                "YOLO_KFP_MLFLOW to an 'mlflow' executable)")
    return found


def server_command(workdir: str, port: int) -> list[str]:
    """``mlflow server`` on 127.0.0.1 with its store (SQLite) and artifacts in ``workdir``."""
    workdir = os.path.abspath(workdir)
    return [mlflow_binary(), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{os.path.join(workdir, 'mlflow.db')}",
            "--artifacts-destination", os.path.join(workdir, "artifacts")]


def reopen_command(workdir: str) -> list[str]:
    """The command that serves a finished run's store again, on MLflow's usual port."""
    return server_command(workdir, 5000)


@dataclass
class MlflowServer:
    workdir: str
    start_timeout: float = 90

    def __enter__(self) -> MlflowServer:
        (port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{port}"
        os.makedirs(self.workdir, exist_ok=True)
        self._log = open(os.path.join(self.workdir, "server.log"), "w")
        self._process = subprocess.Popen(
            server_command(self.workdir, port), stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, **QUIET}, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while not self._healthy():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                with open(os.path.join(self.workdir, "server.log")) as f:
                    raise RuntimeError(f"mlflow server did not start: {f.read()[-2000:]}")
            time.sleep(0.5)
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def __exit__(self, *exc) -> None:
        if self._process.poll() is None:
            os.killpg(self._process.pid, 15)
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, 9)
                self._process.wait()
        self._log.close()
