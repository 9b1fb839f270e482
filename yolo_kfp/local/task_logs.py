"""Each step's log in a file of its own, and what it does as events, inside run-local's child process.

kfp.local runs every task as a subprocess and prints its output, between an ``Executing task 'X'`` line
and a ``Task 'X' finished with status S`` line, from the thread that runs the task: ParallelFor iterations
run side by side in threads of their own. So the child's ``sys.stdout`` and ``sys.stderr`` are replaced by
streams that send each line to the log of the task its thread is running (``<logs>/<task>.log``, a loop
iteration's ``<task>-<i>.log``; anything between tasks to ``pipeline.log``), still pass it on to the real
stream (what ``--verbose`` shows), and report a task's start, end and notable lines as JSON events.
"""

import io
import itertools
import json
import os
import re
import threading
from typing import TextIO

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
EXECUTING = re.compile(r"Executing task '([^']+)'")
FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
# the executor input names the task's folder: <run>/[for-loop-N-iteration-I/]<task>/executor_output.json
OUTPUT_FILE = re.compile(r'"outputFile": "(.+)/executor_output\.json"')
ITERATION = re.compile(r"-iteration-(\d+)$")
RETRYING = re.compile(r"Task (\S+) failed \(attempt (\d+)/(\d+)\)\. Retrying in ([\d.]+)s")
CACHED = re.compile(r"Task (\S+) cache hit")
HORIZONTAL_LINE = re.compile(r"^-{10,}$")
# Lines of a task that the person running it should see: our cores' warnings (actionable by design) and a
# training resumed from its checkpoint. Ultralytics' own warnings stay in the log.
WARNED = re.compile(r"\[KFP Executor [^\]]* (?:WARNING|ERROR)\]: (.*)")
RESUMING = re.compile(r"\[KFP Executor [^\]]* INFO\]: resuming .* at (epoch \d+ of \d+)")
PIPELINE_LOG = "pipeline.log"


def plain(line: str) -> str:
    """The line as a terminal would leave it: no colour codes, only what follows its last carriage return."""
    return ANSI.sub("", line).rsplit("\r", 1)[-1]


class _Execution:
    """One execution of a task in one thread; its lines wait in memory until its folder, which names its log,
    is known."""

    def __init__(self, number: int, task: str):
        self.number, self.task = number, task
        self.pending: list[str] = []
        self.file: TextIO | None = None
        self.task_dir: str | None = None
        self.finished = False

    def log_name(self) -> str:
        found = ITERATION.search(os.path.basename(os.path.dirname(self.task_dir or "")))
        return f"{self.task}-{found.group(1)}" if found else self.task


class TaskLogs:
    """The routing shared by the child's stdout and stderr; ``emit`` receives each event (a dict)."""

    def __init__(self, logs_dir: str, emit):
        os.makedirs(logs_dir, exist_ok=True)
        self.logs_dir, self._emit = logs_dir, emit
        self._lock = threading.Lock()
        self._thread = threading.local()
        self._numbers = itertools.count(1)
        self._open: set[_Execution] = set()
        self._closed = False
        self._pipeline = open(os.path.join(logs_dir, PIPELINE_LOG), "a", buffering=1)

    def stream(self, sink) -> "TaskStream":
        return TaskStream(self, sink)

    def close(self) -> None:
        with self._lock:
            for execution in list(self._open):
                self._close(execution)
            self._pipeline.close()
            self._closed = True

    def route(self, line: str) -> None:
        """One complete line (without its newline) written by the current thread."""
        with self._lock:
            if self._closed:
                return
            text = plain(line)
            started = EXECUTING.search(text)
            if started:
                self._thread.execution = _Execution(next(self._numbers), started.group(1))
                self._emit({"event": "start", "id": self._thread.execution.number, "task": started.group(1)})
            execution = getattr(self._thread, "execution", None)
            if execution is None:
                self._between_tasks(text)
            else:
                self._in_task(execution, text)

    def _between_tasks(self, text: str) -> None:
        self._pipeline.write(text + "\n")
        retrying, cached = RETRYING.search(text), CACHED.search(text)
        if retrying:
            task, attempt, attempts, delay = retrying.groups()
            self._emit({"event": "note", "task": task,
                        "text": f"failed (attempt {attempt} of {attempts}), trying again in {float(delay):g} s"})
        elif cached:
            self._emit({"event": "cached", "task": cached.group(1)})

    def _in_task(self, execution: _Execution, text: str) -> None:
        if execution.file is None:
            execution.pending.append(text)
            output_file = OUTPUT_FILE.search(text)
            if output_file:
                execution.task_dir = output_file.group(1)
                self._open_log(execution)
                self._emit({"event": "folder", "id": execution.number, "task": execution.task,
                            "folder": execution.task_dir})
        else:
            execution.file.write(text + "\n")
        warned, resuming = WARNED.search(text), RESUMING.search(text)
        note = warned.group(1) if warned else \
            f"resuming at {resuming.group(1)} from its kept checkpoint" if resuming else None
        if note is not None:
            self._emit({"event": "note", "task": execution.task, "text": note})
        finished = FINISHED.search(text)
        if finished and finished.group(1) == execution.task:
            execution.finished = True
            # opened here where it failed before its executor input was printed
            log = execution.file if execution.file is not None else self._open_log(execution)
            outputs = os.path.join(execution.task_dir or "", "executor_output.json")
            self._emit({"event": "end", "id": execution.number, "task": execution.task,
                        "status": finished.group(2), "log": log.name,
                        "outputs": outputs if execution.task_dir and os.path.isfile(outputs) else None})
        elif execution.finished and HORIZONTAL_LINE.match(text):  # kfp.local's line after a task's outputs
            self._close(execution)
            self._thread.execution = None

    def _open_log(self, execution: _Execution) -> TextIO:
        # appended to: a retried task's attempts share one log (run-local empties the folder when it starts)
        file = execution.file = open(os.path.join(self.logs_dir, execution.log_name() + ".log"), "a", buffering=1)
        file.writelines(line + "\n" for line in execution.pending)
        execution.pending = []
        self._open.add(execution)
        return file

    def _close(self, execution: _Execution) -> None:
        file = execution.file if execution.file is not None else self._open_log(execution)
        file.close()
        self._open.discard(execution)


class TaskStream(io.TextIOBase):
    """A stand-in for ``sys.stdout``/``sys.stderr``: whole lines go to ``sink`` and to ``TaskLogs``."""

    def __init__(self, logs: TaskLogs, sink):
        super().__init__()
        self._logs, self._sink = logs, sink
        self._partial = threading.local()

    def write(self, text: str) -> int:
        *lines, rest = (getattr(self._partial, "text", "") + text).split("\n")
        self._partial.text = rest
        for line in lines:
            self._logs.route(line)
            self._sink.write(line + "\n")
        self._sink.flush()
        return len(text)

    def flush(self) -> None:
        self._sink.flush()

    def fileno(self) -> int:
        return self._sink.fileno()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self):
        return self._sink.encoding


def event_writer(fd: int | None):
    """``emit`` for ``TaskLogs``: one JSON line per event on the pipe ``fd`` (none: events are dropped)."""
    if fd is None:
        return lambda event: None
    pipe = os.fdopen(fd, "w", buffering=1)

    def emit(event: dict) -> None:
        pipe.write(json.dumps(event) + "\n")

    return emit
