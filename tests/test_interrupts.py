"""A local run that is killed or interrupted leaves no process and no temporary file, and a run into the
same output dir resumes its training."""

import glob
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from cli_process import CLI

from yolo_kfp.local.output_folder import MARKER
from yolo_kfp.local.run_scope import marked_processes, stop_marked
from yolo_kfp.local.s3_server import stale_sockets

pytestmark = pytest.mark.slow


def processes_under(tmpdir) -> list[str]:
    """The command lines of the processes whose TMPDIR lies under ``tmpdir``: the run's, and only the run's."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                variables = f.read().split(b"\0")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(v.startswith(f"TMPDIR={tmpdir}".encode()) for v in variables):
            found.append(f"{entry}: {command[:120]}")
    return found


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def assert_nothing_left(tmpdir) -> None:
    wait_for(lambda: not processes_under(tmpdir) and not os.listdir(tmpdir) and not stale_sockets(), 30,
             "the run's processes and files to go")
    assert not processes_under(tmpdir) and os.listdir(tmpdir) == [] and stale_sockets() == []


def test_killed_or_interrupted_run_local_leaves_nothing_and_resumes(base_checkpoint, tmp_path):
    out, tmpdir = tmp_path / "out", tmp_path / "tmp"
    tmpdir.mkdir()
    (out / "demo").mkdir(parents=True)
    shutil.copyfile(base_checkpoint, out / "demo" / "base-checkpoint.pt")  # the demo reuses it: no base training
    (out / MARKER).write_text("{}")  # as the earlier run that left it would have
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    args = [CLI, "run-local", "--demo", "--output-dir", str(out), "--param", "epochs=5"]
    kept = str(out / "checkpoints" / "*" / "last.pt")

    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: glob.glob(kept), 300, "a kept checkpoint")
        assert any("weed" in p for p in processes_under(tmpdir)), processes_under(tmpdir)
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert_nothing_left(tmpdir)

    with open(tmp_path / "second.log", "wb") as log:
        second = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: b"resuming" in (tmp_path / "second.log").read_bytes(), 300, "training to resume")
        interrupted = time.monotonic()
        second.send_signal(signal.SIGINT)  # Ctrl-C
        assert second.wait(timeout=30) == 130
    assert time.monotonic() - interrupted < 15
    assert (tmp_path / "second.log").read_text().strip().splitlines()[-1].startswith("yolo-kfp: error: interrupted")
    assert_nothing_left(tmpdir)

    third = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0, third.stderr[-3000:]
    resumed = [line for line in (third.stdout + third.stderr).splitlines() if "resuming" in line]
    assert resumed and " of 5" in resumed[0], resumed
    assert (out / "best.pt").exists() and not glob.glob(kept), "a finished training keeps no checkpoint"
    assert_nothing_left(tmpdir)


def test_stop_marked_stops_only_marked_processes(tmp_path):
    mark = {"YOLO_KFP_RUN": "test-mark-123"}
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    marked = subprocess.Popen(sleeper, env={**os.environ, **mark})
    unmarked = subprocess.Popen(sleeper)
    try:
        wait_for(lambda: marked_processes("test-mark-123", set()) == [marked.pid], 10, "the marked process")
        assert stop_marked("test-mark-123", spare=set()) == 0
        assert marked.wait(timeout=10) == -signal.SIGTERM
        assert unmarked.poll() is None
    finally:
        unmarked.kill()
        unmarked.wait()
