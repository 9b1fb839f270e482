"""``yolo-kfp run-local``: the whole pipeline through ``kfp.local`` on this machine.

kfp.local runs in a child process, in a process group of its own, and each task as a subprocess of
it (``SubprocessRunner(use_venv=False)``), with the artifacts under ``<output dir>/pipeline-root``:
Ctrl-C stops the whole group at once, even while kfp.local sleeps before a retry. A failed step ends
in one line naming the step, the exception from its log, what to do and where the log is. Each step's full
log is kept in ``<output dir>/logs/`` (``yolo_kfp.local.task_logs``); the terminal shows progress
(``yolo_kfp.local.progress``), or with ``verbose`` everything the steps print. At the end the final outputs
are gathered in the output dir: ``metrics.json``, ``best.pt``, ``model.onnx``, ``report.html`` and
``timings.json``.
"""

import collections
import contextlib
import functools
import glob
import importlib.util
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from yolo_kfp.local.mlflow_server import MlflowServer, mlflow_binary
from yolo_kfp.local.output_folder import claim
from yolo_kfp.local.progress import Progress, output_to
from yolo_kfp.local.run_scope import RunScope
from yolo_kfp.local.task_logs import TaskLogs, event_writer
from yolo_kfp.model.checkpoints import CHECKPOINTS_ENV
from yolo_kfp.model.node_training import LOCAL_NODES_ENV
from yolo_kfp.params.run_parameters import defaults as parameter_defaults
from yolo_kfp.params.service_hosts import SERVICE_HOSTS_ENV, named_hosts
from yolo_kfp.params.validation import base_model_problems, check
from yolo_kfp.pipeline.compile_options import CompileOptions
from yolo_kfp.pipeline.pipeline import make_pipeline, yolo_pipeline

log = logging.getLogger(__name__)

# Each step's task folders under a run's folder (kfp.local puts ParallelFor iterations in for-loop-*).
STEPS = {"download": ("plan-download", "for-loop-*/download-shard", "merge-download"), "convert": ("convert",),
         "search": ("for-loop-*/train-trial", "choose-trial"), "train": ("train", "train-on-nodes"),
         "evaluate": ("evaluate",),
         "export": ("export",)}


def _task_seconds(executor_output: str) -> float | None:
    with open(executor_output) as f:
        outputs = json.load(f).get("artifacts", {})
    seconds = [a.get("metadata", {}).get("seconds") for o in outputs.values() for a in o["artifacts"]]
    return max((s for s in seconds if s is not None), default=None)


def _busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """The length of the union of ``intervals``: time in which at least one task was working."""
    busy, reached = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reached:
            busy += end - max(start, reached)
            reached = end
    return busy


def step_timings(run_dir: str, total: float) -> dict:
    """Seconds of work inside each step (from its artifacts' metadata; a fan-out's tasks added up) and the wall
    time in which no step was working (a task's work ends as it writes its executor output)."""
    steps, intervals = {}, []
    for step, tasks in STEPS.items():
        paths = [p for task in tasks for p in glob.glob(os.path.join(run_dir, task, "executor_output.json"))]
        if paths:
            seconds = [(path, _task_seconds(path) or 0) for path in paths]
            steps[step] = round(sum(s for _, s in seconds), 2)
            intervals += [(os.path.getmtime(path) - s, os.path.getmtime(path)) for path, s in seconds]
    return {"steps": steps, "total": round(total, 2), "outside_steps": round(total - _busy_seconds(intervals), 2)}


def execute(output_dir: str, params: dict, options: dict | None = None) -> dict:
    """Runs the pipeline with ``params`` and copies its outputs into ``output_dir``; returns the metrics, the
    step timings, the run's folder, the search's summary (None without a search) and what became of the model
    (``publication``: published where, not promoted and why, or not asked for). ``options``: the compile options
    the pipeline is made with (``--nodes``, ``--modelcar-base``), none by default."""
    from kfp import local

    from yolo_kfp.model.export import SERVING_NAME

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=os.path.join(output_dir, "pipeline-root"))
    started = time.monotonic()
    pipeline = make_pipeline(CompileOptions(**options)) if options else yolo_pipeline
    run = pipeline(**params)
    total = time.monotonic() - started
    model_dir, metrics_file = run.outputs["model"].path, run.outputs["metrics"].path
    shutil.copyfile(metrics_file, os.path.join(output_dir, "metrics.json"))
    shutil.copyfile(os.path.join(model_dir, "weights", "best.pt"), os.path.join(output_dir, "best.pt"))
    shutil.copyfile(run.outputs["report"].path, os.path.join(output_dir, "report.html"))
    shutil.copyfile(os.path.join(run.outputs["onnx_model"].path, SERVING_NAME, "1", "model.onnx"),
                    os.path.join(output_dir, "model.onnx"))
    search = gather_search(model_dir, output_dir)
    run_dir = os.path.dirname(os.path.dirname(model_dir))
    timings = step_timings(run_dir, total)
    with open(os.path.join(output_dir, "timings.json"), "w") as f:
        json.dump(timings, f, indent=2)
    with open(metrics_file) as f:
        metrics = json.load(f)
    return {"metrics": metrics, "timings": timings, "run_dir": run_dir, "search": search,
            "publication": publication(run_dir, params.get("publish_to", ""), bool(params.get("publish_oci")))}


def gather_search(model_dir: str, output_dir: str) -> dict | None:
    """A search's record (the model's search.json) and its trials' page in the output dir; None without a search."""
    from yolo_kfp.model.search_report import trials_html

    found = os.path.join(model_dir, "search.json")
    if not os.path.exists(found):
        return None
    shutil.copyfile(found, os.path.join(output_dir, "search.json"))
    with open(found) as f:
        search = json.load(f)
    with open(os.path.join(output_dir, "search.html"), "w") as f:
        f.write(trials_html(search["trials"], search["winner"]))
    return search


def _task_output(run_dir: str, task: str) -> dict | None:
    """A task's executor output, wherever kfp.local put the task (conditions nest it); None if it did not run."""
    paths = glob.glob(os.path.join(run_dir, "**", task, "executor_output.json"), recursive=True)
    if not paths:
        return None
    with open(paths[0]) as f:
        return json.load(f)


def publication(run_dir: str, publish_to: str, image: bool = False) -> str:
    """What became of the model: published where (and the image, with ``image``: its manifest's ``oci``), or not
    promoted and why, or not asked for."""
    if not publish_to:
        return "not published: publish_to is empty"
    published = _task_output(run_dir, "publish")
    if published:
        url = published["parameterValues"]["Output"]
        if not image:
            return f"published: {url}"
        from yolo_kfp.infra.storage import S3Url, Storage
        from yolo_kfp.release.publish import MANIFEST

        manifest = json.loads(Storage.from_env().get_bytes(S3Url.parse(url).join(MANIFEST)))
        return f"published: {url}, image {manifest['oci']['image']}"
    gate = _task_output(run_dir, "gate") or {}
    reports = [a for o in gate.get("artifacts", {}).values() for a in o["artifacts"]]
    reasons = [r for report in reports for r in report.get("metadata", {}).get("reasons", [])]
    return f"not promoted: {'; '.join(reasons) or 'see the gate step'}"


# -- the run's own process: kfp.local in a process group of its own, so that it can be stopped at once --------

LOCAL_LIBRARIES = ("pandas", "fiftyone", "ultralytics")  # what the steps import: the [local] extra
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TRACEBACK = "Traceback (most recent call last):"
# What to do about a failed step, by the exception that ended it.
ADVICE = {
    "ValueError": "fix the value it names and run again",
    "StorageError": "check the data connection (AWS_* variables: endpoint, keys, bucket) and run again",
    "FileNotFoundError": "check the path it names and run again",
    "PermissionError": "check the permissions of the path it names and run again",
    "MemoryError": "lower batch, imgsz or workers, or give the run more memory",
    "OutOfMemoryError": "lower batch or imgsz, or train on a larger GPU",
}
DEFAULT_ADVICE = "read its log; run again into the same --output-dir once fixed (training resumes)"
LOGS = "logs"


class LocalRunFailed(RuntimeError):
    """A step of a local run failed; the message is the one line that says which, why and what to do."""


def failed_step(message: str) -> str:
    """The innermost failed task of kfp.local's failure message."""
    found = re.search(r"Inner task failed: '([^']+)'", ANSI.sub("", message))
    return found.group(1) if found else "?"


def last_exception(lines: list[str]) -> str | None:
    """``Type: message`` of the last Python traceback in a task's log (kfp.local indents it), on one line."""
    starts = [i for i, line in enumerate(lines) if line.strip() == TRACEBACK]
    if not starts:
        return None
    indent = len(lines[starts[-1]]) - len(lines[starts[-1]].lstrip())
    text = []
    for line in lines[starts[-1] + 1:]:
        stripped = line.strip()
        if not text and (len(line) - len(line.lstrip()) > indent or not stripped):
            continue  # a frame of the traceback
        if text and (not stripped or stripped.startswith("[KFP") or len(line) - len(line.lstrip()) < indent):
            break
        text.append(stripped)
    return " ".join(text) or None


def failure_line(message: str, lines: list[str], log_path: str | None = None) -> str:
    step = failed_step(message)
    cause = last_exception(lines)
    where = f" (log: {log_path})" if log_path else ""
    if cause is None:
        return f"step {step!r} failed without a Python error (killed? out of memory?); {DEFAULT_ADVICE}{where}"
    kind = cause.split(":", 1)[0].rsplit(".", 1)[-1]
    if len(cause) > 600:
        cause = cause[:600] + "..."
    return f"step {step!r} failed: {cause} -- {ADVICE.get(kind, DEFAULT_ADVICE)}{where}"


def _latest_log(output_dir: str, step: str) -> str | None:
    """The step's log (of its latest loop iteration, if it is one), when no progress events named it."""
    logs = os.path.join(output_dir, LOGS)
    found = glob.glob(os.path.join(logs, f"{step}.log")) + glob.glob(os.path.join(logs, f"{step}-*.log"))
    return max(found, key=os.path.getmtime, default=None)


def _log_lines(path: str | None) -> list[str] | None:
    if not path or not os.path.isfile(path):
        return None
    with open(path, errors="replace") as f:
        return list(collections.deque((line.rstrip("\n") for line in f), maxlen=5000))


def _forward(source, sink, keep: collections.deque | None) -> None:
    """Copies the child's lines to ``sink`` if any (without colour codes unless it is a terminal), keeping the
    last ones."""
    plain = sink is None or not sink.isatty()
    for raw in iter(source.readline, b""):
        line = raw.decode(errors="replace")
        if keep is not None:
            keep.append(ANSI.sub("", line.rstrip("\n")))
        if sink is not None:
            sink.write(ANSI.sub("", line) if plain else line)
            sink.flush()


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the run's process group, SIGKILL if it is still there after a few seconds."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 30)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_in_child(output_dir: str, params: dict, variables: dict[str, str], progress: Progress | None = None,
                 options: dict | None = None) -> dict:
    """``execute`` in a child process, in a process group of its own that this process stops on any exit.
    With ``progress`` it renders the child's events, else the child's output is streamed as it comes."""
    request = os.path.join(tempfile.mkdtemp(prefix="request-"), "request.json")
    with open(request, "w") as f:
        json.dump({"output_dir": output_dir, "params": params, "options": options}, f)
    events = os.pipe() if progress else None  # the child writes its events to the second end
    events_fd = str(events[1]) if events else ""
    process = subprocess.Popen([sys.executable, "-m", "yolo_kfp.local.runner", request, events_fd],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                               env={**os.environ, **variables}, pass_fds=events[1:] if events else ())
    lines: collections.deque[str] = collections.deque(maxlen=5000)
    stdout, stderr = (None, None) if progress else (sys.stdout, sys.stderr)
    readers = [threading.Thread(target=_forward, args=(process.stdout, stdout, lines), daemon=True),
               threading.Thread(target=_forward, args=(process.stderr, stderr, None), daemon=True)]
    if progress and events:
        os.close(events[1])
        readers.append(threading.Thread(target=progress.follow, args=(events[0],), daemon=True))
    for thread in readers:
        thread.start()
    try:
        process.wait()
    finally:
        _stop_group(process)
        for thread in readers:
            thread.join(timeout=10)
        if progress:
            progress.close()
    with open(request) as f:
        answer = json.load(f)
    if "failed" in answer:
        step = failed_step(answer["failed"])
        log_path = progress.failed_logs.get(step) if progress else _latest_log(output_dir, step)
        raise LocalRunFailed(failure_line(answer["failed"], _log_lines(log_path) or list(lines), log_path))
    if "result" not in answer:
        raise LocalRunFailed(f"the local run ended with exit code {process.returncode} before it finished; "
                             f"{DEFAULT_ADVICE}")
    return answer["result"]


def _child(request: str, events_fd: str) -> int:
    with open(request) as f:
        asked = json.load(f)
    task_logs = TaskLogs(os.path.join(asked["output_dir"], LOGS), event_writer(int(events_fd) if events_fd else None))
    sys.stdout, sys.stderr = task_logs.stream(sys.stdout), task_logs.stream(sys.stderr)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        answer = {"result": execute(asked["output_dir"], asked["params"], asked.get("options"))}
    except RuntimeError as error:  # kfp.local: a task failed; its log says why
        answer = {"failed": str(error)}
    finally:
        task_logs.close()
    with open(request, "w") as f:
        json.dump(answer, f)
    return 1 if "failed" in answer else 0


def run_local(output_dir: str, params: dict, demo: bool = False, mlflow: bool = False, verbose: bool = False,
              nodes: int = 1, modelcar_base: str = "") -> dict:
    """The whole pipeline on this machine; ``demo`` first starts the offline Open Images mirror and takes the
    demo's base checkpoint (``yolo_kfp.local.demo_base``), ``mlflow`` an MLflow tracking server that the run logs
    to, its store kept in ``<output_dir>/mlflow``. Progress lines on stdout, each step's log in
    ``<output_dir>/logs/``; ``verbose`` streams everything instead.

    Whatever ends the run (success, a failed step, Ctrl-C, SIGKILL), no process of it stays and nothing
    of it is left in the temporary directory (``yolo_kfp.local.run_scope``). Epoch checkpoints are kept under
    ``<output_dir>/checkpoints``: a run into the same output dir after an interrupt resumes training. The
    output dir is new, empty or an earlier run's (``yolo_kfp.local.output_folder``): nothing else is touched.
    Returns what ``execute`` returns, with the demo's ``notice`` in demo mode."""
    missing = [name for name in LOCAL_LIBRARIES if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(f"run-local runs every step here and needs {', '.join(missing)}: "
                         "pip install 'yolo-kfp[local]' (the base install only compiles and submits)")
    if mlflow and params.get("mlflow_tracking_uri"):
        raise ValueError("--mlflow starts a tracking server for the run: leave out mlflow_tracking_uri, or --mlflow")
    if mlflow:
        mlflow_binary()  # present, before any work
    defaults = parameter_defaults()
    if demo:
        from yolo_kfp.local.synthetic import check_demo_classes

        check_demo_classes(params.get("classes", defaults["classes"]))  # before any work
    if not demo or "base_model" in params:  # the demo brings its own base checkpoint
        check(base_model_problems(params.get("base_model", defaults["base_model"]),
                                  params.get("freeze", defaults["freeze"])))
    options = {**({"nodes": nodes} if nodes > 1 else {}), **({"modelcar_base": modelcar_base} if modelcar_base else {})}
    CompileOptions(**options)  # checked before any work
    output_dir, reused = claim(output_dir)
    logs = os.path.join(output_dir, LOGS)
    shutil.rmtree(logs, ignore_errors=True)  # an earlier run's logs (claim refuses a folder it did not make)
    os.makedirs(logs)
    # run-local compiles the pipeline it runs: the hosts its run names are the ones it was compiled for
    run_variables = {CHECKPOINTS_ENV: os.path.join(output_dir, "checkpoints"),
                     SERVICE_HOSTS_ENV: ",".join(named_hosts(params)),
                     # --nodes: the job's nodes run here as torchrun processes, their logs beside the steps'
                     **({LOCAL_NODES_ENV: logs} if nodes > 1 else {})}
    say = log.info if verbose else functools.partial(print, flush=True)
    if reused:
        say(f"reusing {output_dir}, an earlier run's folder: its logs and outputs are replaced, its training resumes "
            "where that run's stopped, if it did")
    with RunScope(), contextlib.ExitStack() as servers:
        if mlflow:
            server = servers.enter_context(MlflowServer(os.path.join(output_dir, "mlflow")))
            say(f"MLflow's UI, while the run lasts: {server.url}")
            params = {**params, "mlflow_tracking_uri": server.url}
        if not demo:
            return run_in_child(output_dir, params, run_variables, _progress(params, defaults, verbose), options)
        from yolo_kfp.local.demo import DEMO_PUBLISH_TO, NOTICE, demo_environment

        started, demo_log = time.monotonic(), os.path.join(logs, "demo.log")
        say(f"demo: making a synthetic Open Images mirror, taking the base checkpoint (log: {demo_log})")
        with contextlib.nullcontext() if verbose else output_to(demo_log):
            variables, demo_params = servers.enter_context(
                demo_environment(os.path.join(output_dir, "demo"), params.get("split", defaults["split"]),
                                 data_connection=nodes > 1 and not os.environ.get("AWS_S3_BUCKET")
                                 or params.get("publish_to") == DEMO_PUBLISH_TO))
        say(f"demo: ready in {time.monotonic() - started:.1f} s")
        params = {**demo_params, **params}
        result = run_in_child(output_dir, params, {**variables, **run_variables}, _progress(params, defaults, verbose),
                              options)
    result["notice"] = NOTICE
    return result


def _progress(params: dict, defaults: dict, verbose: bool) -> Progress | None:
    return None if verbose else Progress(sys.stdout, int(params.get("epochs", defaults["epochs"])))


if __name__ == "__main__":
    sys.exit(_child(*sys.argv[1:3]))
