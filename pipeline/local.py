"""``yolo-kfp run-local``: the whole pipeline through ``kfp.local`` on this machine.

Each task runs as a subprocess of this Python (``SubprocessRunner(use_venv=False)``), with the
artifacts under ``<output dir>/pipeline-root``. At the end the final outputs are gathered in the
output dir: ``metrics.json``, ``best.pt``, ``model.onnx``, ``report.html`` and ``timings.json``.
"""

import contextlib
import glob
import json
import logging
import os
import shutil
import time

from components.download import check_classes
from components.export import SERVING_NAME
from components.validation import check_parameters
from pipeline.pipeline import parameter_defaults, yolo_pipeline

log = logging.getLogger(__name__)

# Each step's task folders under a run's folder (kfp.local puts ParallelFor iterations in for-loop-*).
STEPS = {"download": ("plan-download", "for-loop-*/download-shard", "merge-download"), "convert": ("convert",),
         "train": ("train",), "evaluate": ("evaluate",), "export": ("export",)}


def parse_param(text: str, known: dict) -> tuple[str, object]:
    """``KEY=VALUE``; VALUE is JSON when it parses as JSON, else a string."""
    key, sep, raw = text.partition("=")
    if not sep:
        raise ValueError(f"--param wants KEY=VALUE, not {text!r}")
    if key not in known:
        raise ValueError(f"unknown parameter {key!r}; known: {', '.join(known)}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def parse_params(items: list[str]) -> dict:
    """``--param`` values, checked together with the defaults they join."""
    known = parameter_defaults()
    params = dict(parse_param(item, known) for item in items or [])
    check_parameters({**known, **params})
    return params


@contextlib.contextmanager
def environment(variables: dict[str, str]):
    """Sets variables for this process and the task subprocesses it starts, then restores them."""
    saved = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _task_seconds(executor_output: str) -> float | None:
    with open(executor_output) as f:
        outputs = json.load(f).get("artifacts", {})
    seconds = [a.get("metadata", {}).get("seconds") for o in outputs.values() for a in o["artifacts"]]
    return max((s for s in seconds if s is not None), default=None)


def step_timings(run_dir: str, total: float) -> dict:
    """Seconds spent inside each step (from its artifacts' metadata) and the rest of the wall time."""
    steps = {}
    for step, tasks in STEPS.items():
        paths = [p for task in tasks for p in glob.glob(os.path.join(run_dir, task, "executor_output.json"))]
        if paths:
            steps[step] = round(sum(_task_seconds(path) or 0 for path in paths), 2)
    inside = sum(s for s in steps.values() if s)
    return {"steps": steps, "total": round(total, 2), "outside_steps": round(total - inside, 2)}


def execute(output_dir: str, params: dict) -> dict:
    """Runs the pipeline with ``params`` and gathers its outputs; returns the metrics."""
    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=os.path.join(output_dir, "pipeline-root"))
    started = time.monotonic()
    run = yolo_pipeline(**params)
    total = time.monotonic() - started
    model_dir, metrics_file = run.outputs["model"].path, run.outputs["metrics"].path
    shutil.copyfile(metrics_file, os.path.join(output_dir, "metrics.json"))
    shutil.copyfile(os.path.join(model_dir, "weights", "best.pt"), os.path.join(output_dir, "best.pt"))
    shutil.copyfile(run.outputs["report"].path, os.path.join(output_dir, "report.html"))
    shutil.copyfile(os.path.join(run.outputs["onnx_model"].path, SERVING_NAME, "1", "model.onnx"),
                    os.path.join(output_dir, "model.onnx"))
    run_dir = os.path.dirname(os.path.dirname(model_dir))
    timings = step_timings(run_dir, total)
    with open(os.path.join(output_dir, "timings.json"), "w") as f:
        json.dump(timings, f, indent=2)
    with open(metrics_file) as f:
        metrics = json.load(f)
    return {"metrics": metrics, "timings": timings, "run_dir": run_dir}


def run_local(output_dir: str, params: dict, demo: bool = False) -> dict:
    """The whole pipeline on this machine; ``demo`` first starts the offline Open Images mirror."""
    if demo:
        from pipeline.synthetic import ALL_CLASSES

        check_classes(params.get("classes", parameter_defaults()["classes"]), list(ALL_CLASSES))  # before any work
    output_dir = os.path.abspath(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    if not demo:
        return execute(output_dir, params)
    from pipeline.demo import NOTICE, demo_environment

    split = params.get("split", parameter_defaults()["split"])
    with demo_environment(os.path.join(output_dir, "demo"), split) as (variables, demo_params):
        with environment(variables):
            result = execute(output_dir, {**demo_params, **params})
    result["notice"] = NOTICE
    return result
