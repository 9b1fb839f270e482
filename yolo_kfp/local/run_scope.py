"""A local run leaves nothing behind, however it ends: no process, no temporary file.

``RunScope`` gives the run a private temporary folder (``TMPDIR`` of this process and of everything it
starts: kfp.local's task folders, SeaweedFS's sockets and logs, Ultralytics' config dir) and marks every
process the run starts with an environment variable. A watchdog process, outside the run's process
group and session, waits on a pipe from the run: when the pipe closes — a normal end, an exception,
Ctrl-C or SIGKILL alike — it stops every process that carries the mark (the way CI servers find a
build's strays) and removes the temporary folder.

``python -m yolo_kfp.local.run_scope TOKEN TMPDIR RUN_PID`` is the watchdog.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

MARK = "YOLO_KFP_RUN"
GRACE_SECONDS = 5.0


def marked_processes(token: str, spare: set[int]) -> list[int]:
    """The pids of the processes whose environment carries ``MARK=token``, but those in ``spare``."""
    needle = f"{MARK}={token}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in spare:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def stop_marked(token: str, spare: set[int]) -> int:
    """SIGTERM to every marked process, SIGKILL to those still there after ``GRACE_SECONDS``; returns how many."""
    pids = marked_processes(token, spare)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + (GRACE_SECONDS if sig == signal.SIGTERM else 0)
        while pids and time.monotonic() < deadline:
            time.sleep(0.1)
            pids = marked_processes(token, spare)
        pids = marked_processes(token, spare)
        if not pids:
            break
    return len(pids)


class RunScope:
    """Use as a context manager around a local run; see the module's docstring."""

    def __enter__(self) -> "RunScope":
        self.token = uuid.uuid4().hex
        self.tmp = tempfile.mkdtemp(prefix="yolo-kfp-run-")
        self._saved = {key: os.environ.get(key) for key in ("TMPDIR", MARK)}
        self._saved_tempdir = tempfile.tempdir
        watchdog_env = {k: v for k, v in os.environ.items() if k != MARK}
        self.watchdog = subprocess.Popen([sys.executable, "-m", "yolo_kfp.local.run_scope", self.token, self.tmp,
                                          str(os.getpid())], stdin=subprocess.PIPE, start_new_session=True,
                                         env=watchdog_env)
        os.environ.update({"TMPDIR": self.tmp, MARK: self.token})
        tempfile.tempdir = self.tmp
        return self

    def __exit__(self, *exc) -> None:
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        tempfile.tempdir = self._saved_tempdir
        assert self.watchdog.stdin is not None  # a pipe: stdin=PIPE
        self.watchdog.stdin.close()  # the watchdog's cue
        self.watchdog.wait()


def watch(token: str, tmp: str, run_pid: int) -> None:
    """Waits for the run to close the pipe (or die), then stops its processes and removes its folder."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the run, not for its cleanup
    sys.stdin.buffer.read()
    from yolo_kfp.local.s3_server import remove_stale_sockets

    stop_marked(token, spare={os.getpid(), run_pid})
    shutil.rmtree(tmp, ignore_errors=True)
    remove_stale_sockets()  # the demo's S3 server's, when it was stopped by the signal above


if __name__ == "__main__":
    watch(sys.argv[1], sys.argv[2], int(sys.argv[3]))
