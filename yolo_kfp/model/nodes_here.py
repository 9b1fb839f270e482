"""A job across nodes run on this machine, for ``run-local``: its nodes as ``torchrun`` processes meeting on
127.0.0.1 (CPU, gloo), read from the very manifest the cluster would get (a TrainJob or a PyTorchJob), so that
the demo runs the launcher's code up to the Kubernetes API call.

Each node process gets what the engine would give its pod: the manifest's command, its environment (a Secret's
key resolved from this process's environment, where run-local keeps the data connection), and torchrun's
``PET_*`` variables (nodes, processes per node, node rank, the rendezvous address). Node 0's output is shown in
the step's log as it comes, each node's kept in a file; a node that fails stops the others, and none is left
running.
"""

import contextlib
import glob
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from yolo_kfp.model.job_launcher import ENGINES, shown_line
from yolo_kfp.model.training_jobs import PYTORCH_CONTAINER

log = logging.getLogger(__name__)


def job_plan(manifest: dict) -> tuple[list[str], int, int, list[dict]]:
    """What a TrainJob or PyTorchJob runs: (command, nodes, processes per node, environment)."""
    spec = manifest["spec"]
    if manifest["kind"] == "TrainJob":
        trainer = spec["trainer"]
        return trainer["command"], trainer["numNodes"], int(trainer["numProcPerNode"]), trainer.get("env", [])
    replicas = spec["pytorchReplicaSpecs"]
    (container,) = [c for c in replicas["Master"]["template"]["spec"]["containers"] if c["name"] == PYTORCH_CONTAINER]
    nodes = 1 + replicas.get("Worker", {}).get("replicas", 0)
    return container["command"], nodes, int(spec["nprocPerNode"]), container.get("env", [])


def resolved_env(env: list[dict]) -> dict[str, str]:
    """The manifest's environment here: values as given, a Secret's key from this process's environment."""
    values = {}
    for variable in env:
        if "value" in variable:
            values[variable["name"]] = variable["value"]
        elif "secretKeyRef" in variable.get("valueFrom", {}):
            reference = variable["valueFrom"]["secretKeyRef"]
            key = reference["key"]
            if key not in os.environ and reference.get("optional"):
                continue  # as a pod without that key: the variable is not set
            if key not in os.environ:
                raise ValueError(f"the job's {variable['name']} comes from a Secret's {key}, which this run does "
                                 "not have: set it in the environment (run-local keeps the data connection there)")
            values[variable["name"]] = os.environ[key]
    return values


def run_nodes(manifest: dict, port: int, log_dir: str, timeout: float = 24 * 3600) -> None:
    """Runs the job's nodes here (their output in ``log_dir/node-<n>.log``) and waits for them; raises, naming
    the node and its log, if one fails."""
    command, nodes, per_node, env = job_plan(manifest)
    if command[:2] != ["torchrun", "--no-python"]:
        raise ValueError(f"the job's command {command[:3]} is not torchrun's: the launcher builds every node's")
    started: list[tuple[subprocess.Popen, str]] = []
    # torchrun leaves a log folder of its own in TMPDIR: the nodes get one that goes when they have ended
    with tempfile.TemporaryDirectory(prefix="yolo-nodes-") as scratch:
        # a node is no KFP task: kfp's runtime switch (set in the launcher's task) is left out
        here = {k: v for k, v in os.environ.items() if k != "_KFP_RUNTIME"}
        base = {**here, **resolved_env(env), "PET_NNODES": str(nodes), "PET_NPROC_PER_NODE": str(per_node),
                "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
                "TMPDIR": scratch,
                # the command's programs (yolo-kfp) from this interpreter's environment, as the image has on PATH
                "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}
        try:
            for node in range(nodes):
                path = os.path.join(log_dir, f"node-{node}.log")
                with open(path, "w") as out:
                    # torchrun as its module: this interpreter's, wherever its scripts are on PATH or not
                    torchrun = [sys.executable, "-m", "torch.distributed.run", *command[1:]]
                    process = subprocess.Popen(torchrun, stdout=out, stderr=subprocess.STDOUT,
                                               env={**base, "PET_NODE_RANK": str(node)}, start_new_session=True)
                started.append((process, path))
            _wait_for(started, manifest["metadata"]["name"], timeout)
        finally:
            for process, _ in started:
                if process.poll() is None:
                    stop_node(process)


def _wait_for(started: list[tuple[subprocess.Popen, str]], name: str, timeout: float) -> None:
    """Shows node 0's output in the step's log as it comes (as the launcher follows rank 0's pod) until every node
    has ended; raises at the first that fails."""
    deadline = time.monotonic() + timeout
    with open(started[0][1], "rb") as node_0:
        pending = b""
        while True:
            codes = [process.poll() for process, _ in started]
            pending = _show(pending + node_0.read())
            for node, code in enumerate(codes):
                if code not in (None, 0):
                    raise RuntimeError(f"node {node} of {name} failed with exit code {code}: read {started[node][1]}")
            if all(code == 0 for code in codes):
                _show(pending + b"\n")
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}'s nodes ran past {timeout:.0f} s")
            time.sleep(1)


def _show(output: bytes) -> bytes:
    """Logs ``output``'s whole lines as node 0's, as the launcher shows a pod's; returns the unfinished rest."""
    *lines, rest = output.split(b"\n")
    for line in filter(None, lines):
        log.info("node 0 | %s", shown_line(line))
    return rest


def stop_node(agent: subprocess.Popen) -> None:
    """A node stopped as a lost pod is: its torchrun agent and the workers it started, which torchrun puts in
    sessions of their own."""
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:  # gone meanwhile
            continue
        if parent == agent.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(stat.split("/")[2]), signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(agent.pid, signal.SIGKILL)
    agent.wait()


def run_job_here(job, engine: str, log_dir: str) -> None:
    """``job`` (a ``NodesJob``) as ``engine`` would get its manifest, its nodes run here."""
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run_nodes(ENGINES[engine].build(job), port, log_dir)
