"""What ``yolo-kfp run-local`` prints while it runs: a line per step as it starts and ends, training's epochs,
and at the end a summary of the outputs; the steps' full logs are in ``<output dir>/logs/``.

It follows the events of the child process's ``TaskLogs`` (``yolo_kfp.local.task_logs``). Training's epochs
come from the ``results.csv`` that Ultralytics appends to in the train task's output folder as each epoch
ends (losses and validation mAP50): a file with named columns, not console text drawn for a terminal. On
a terminal they move a tqdm bar (the library Ultralytics draws its own with); elsewhere (a pipe, CI's log)
a plain line per quarter of the epochs, so that nothing but whole lines, without colour codes, is written.
"""

import contextlib
import csv
import glob
import json
import os
import select
import shutil
import sys
import time

POLL_SECONDS = 1.0
NAME_WIDTH = 17
LOSSES = ("box", "cls", "dfl")
SUMMARY_COCO = ("AP", "AP50", "AP75", "AR100")  # of COCO's figures, those the closing summary shows


def _plain_number(value) -> str:
    return f"{value:,.0f}"


def _settings(settings: dict) -> str:
    return ", ".join(f"{name} {value}" for name, value in settings.items())


def _winner(winner: dict) -> str:
    return f"trial {winner['trial']} ({_settings(winner['settings'])}, val mAP50-95 {winner['val']['map50_95']:.3f})"


# The figure that matters, per task, from the values of its executor output (parameters and artifacts' metadata).
def _trained(v: dict) -> str:
    return (f"{_plain_number(v['epochs'])} epochs, {_plain_number(v['trainable_params'])} of "
            f"{_plain_number(v['total_params'])} parameters trained")


FIGURES = {
    "preflight": lambda v: "parameters and connections checked",
    "plan-download": lambda v: f"{_plain_number(v['images'])} images to fetch in {len(v['Output'])} shard(s)",
    "download-shard": lambda v: f"{_plain_number(v['images'])} images fetched"
                                + (f" ({_plain_number(v['reused_images'])} reused)" if v.get("reused_images") else ""),
    "merge-download": lambda v: f"{_plain_number(v['images'])} images from {_plain_number(v['shards'])} shard(s)",
    "convert": lambda v: f"{_plain_number(v['images'])} images, {_plain_number(v['boxes'])} boxes -> "
                         f"train/val/test {'/'.join(_plain_number(n) for n in v['split_images'].values())}",
    "train-trial": lambda v: f"val mAP50-95 {v['val_map50_95']:.3f} ({_settings(v['settings'])}, "
                             f"{_plain_number(v['epochs'])} epochs)",
    "choose-trial": lambda v: "winner: " + _winner(json.loads(v["Output"])["winner"]),
    "no-search": lambda v: "no search_space: no trial",
    "train": _trained,
    "train-on-nodes": _trained,
    "evaluate": lambda v: f"test mAP50 {v['map50']:.3f}, mAP50-95 {v['map50_95']:.3f}"
                          + (f"; COCO AP50 {v['coco_AP50']:.3f}, AP {v['coco_AP']:.3f}" if "coco_AP" in v else ""),
    "export": lambda v: f"ONNX opset {_plain_number(v['opset'])}, {_plain_number(v['imgsz'])} px, "
                        f"checked on {_plain_number(v['checked_images'])} images",
    "track": lambda v: "logged to MLflow",
    "gate": lambda v: f"decision: {v['Output']}" + (f" ({'; '.join(v['reasons'])})" if v.get("reasons") else ""),
    "publish": lambda v: f"published {v['Output']}",
}


def step_figure(task: str, executor_output: dict) -> str:
    """The figure that matters of a finished task ('' when its outputs do not hold it)."""
    values = dict(executor_output.get("parameterValues", {}))
    for output in executor_output.get("artifacts", {}).values():
        for artifact in output.get("artifacts", []):
            values.update(artifact.get("metadata", {}))
    try:
        return FIGURES[task](values)
    except (KeyError, TypeError, ValueError, AttributeError):
        return ""


def read_epochs(results_csv: str) -> list[dict]:
    """The finished epochs of Ultralytics' results.csv: epoch, the three training losses and val mAP50."""
    try:
        with open(results_csv, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return []
    epochs = []
    for row in rows:
        row = {(key or "").strip(): (value or "").strip() for key, value in row.items()}
        try:
            epochs.append({"epoch": int(float(row["epoch"])), "mAP50": float(row["metrics/mAP50(B)"]),
                           **{loss: float(row[f"train/{loss}_loss"]) for loss in LOSSES}})
        except (KeyError, ValueError):
            continue  # a row being written
    return epochs


def epoch_text(epoch: dict) -> str:
    return "  ".join(f"{loss} {epoch[loss]:.3f}" for loss in LOSSES) + f"  val mAP50 {epoch['mAP50']:.3f}"


class EpochLines:
    """Training's epochs as plain lines: one each time another quarter of the epochs is done."""

    def __init__(self, out, total: int):
        self.out, self.total, self.shown = out, max(total, 1), 0

    def update(self, epochs: list[dict]) -> None:
        if not epochs or epochs[-1]["epoch"] <= self.shown:
            return
        last = epochs[-1]
        if last["epoch"] * 4 // self.total > self.shown * 4 // self.total or last["epoch"] >= self.total:
            print(f"{'train':<{NAME_WIDTH}} epoch {last['epoch']:>3}/{self.total}  {epoch_text(last)}",
                  file=self.out, flush=True)
            self.shown = last["epoch"]

    def close(self) -> None:
        pass


class EpochBar:
    """Training's epochs as a tqdm bar on a terminal, the last epoch's losses and val mAP50 beside it."""

    def __init__(self, out, total: int):
        from tqdm import tqdm

        # the size from shutil (80x24 when unknown): tqdm leaves its bar empty on a terminal that reports 0x0
        columns, rows = shutil.get_terminal_size()
        self.bar = tqdm(total=total, file=out, desc="train epoch", unit="epoch", leave=True, ncols=columns, nrows=rows,
                        bar_format="{desc} {bar:8} {n_fmt}/{total_fmt} [{remaining}]{postfix}")  # 80 columns

    def update(self, epochs: list[dict]) -> None:
        if epochs and epochs[-1]["epoch"] > self.bar.n:
            last = epochs[-1]
            self.bar.set_postfix_str(" ".join(f"{loss} {last[loss]:.2f}" for loss in LOSSES)
                                     + f" val mAP50 {last['mAP50']:.3f}", refresh=False)
            self.bar.update(epochs[-1]["epoch"] - self.bar.n)

    def close(self) -> None:
        self.bar.close()


class Progress:
    """Renders the child's events on ``out``; ``epochs``: the run's, for training's bar."""

    def __init__(self, out, epochs: int, clock=time.monotonic):
        self.out, self.epochs, self.clock = out, epochs, clock
        self.running: dict[int, tuple[str, float]] = {}
        self.announced: set[str] = set()
        self.failed_logs: dict[str, str] = {}
        self.training = None  # (results.csv pattern, EpochLines or EpochBar)

    def line(self, text: str) -> None:
        if self.training and isinstance(self.training[1], EpochBar):
            self.training[1].bar.write(text, file=self.out)
        else:
            print(text, file=self.out, flush=True)

    def handle(self, event: dict) -> None:
        task = event["task"]
        if event["event"] == "start":
            self.running[event["id"]] = (task, self.clock())
            if task not in self.announced:  # not again for a retry or another loop iteration
                self.announced.add(task)
                self.line(f"{task:<{NAME_WIDTH}} started" + (f" ({self.epochs} epochs)" if task == "train" else ""))
        elif event["event"] == "folder" and task == "train":
            lines = EpochBar if self.out.isatty() else EpochLines
            self.training = (os.path.join(event["folder"], "*", "results.csv"), lines(self.out, self.epochs))
        elif event["event"] == "end":
            self._ended(event)
        elif event["event"] == "cached":
            self.line(f"{task:<{NAME_WIDTH}} cached")
        elif event["event"] == "note":
            self.line(f"{task:<{NAME_WIDTH}} {event['text']}")

    def _ended(self, event: dict) -> None:
        task, started = self.running.pop(event["id"], (event["task"], self.clock()))
        name = os.path.splitext(os.path.basename(event["log"]))[0]
        if task == "train" and self.training:
            self.tick()
            self.training[1].close()
            self.training = None
        seconds = f"{self.clock() - started:6.1f} s"
        if event["status"] != "SUCCESS":
            self.failed_logs[task] = event["log"]
            self.line(f"{name:<{NAME_WIDTH}} FAILED {seconds}  log: {event['log']}")
            return
        figure = ""
        if event.get("outputs"):
            with open(event["outputs"]) as f:
                figure = step_figure(task, json.load(f))
        self.line(f"{name:<{NAME_WIDTH}} done   {seconds}  {figure}".rstrip())

    def tick(self) -> None:
        """Training's epochs so far, from its results.csv."""
        if self.training:
            found = glob.glob(self.training[0])
            if found:
                self.training[1].update(read_epochs(found[0]))

    def close(self) -> None:
        if self.training:
            self.training[1].close()
            self.training = None

    def follow(self, fd: int) -> None:
        """Renders the JSON events read from the pipe ``fd`` until it closes; polls training meanwhile."""
        pending = b""
        with os.fdopen(fd, "rb", buffering=0) as pipe:
            while True:
                readable, _, _ = select.select([pipe], [], [], POLL_SECONDS)
                if readable:
                    chunk = pipe.read(65536)
                    if not chunk:
                        break
                    *lines, pending = (pending + chunk).split(b"\n")
                    for line in lines:
                        self.handle(json.loads(line))
                self.tick()


@contextlib.contextmanager
def output_to(path: str):
    """This process's stdout and stderr (file descriptors 1 and 2: libraries' handlers and subprocesses
    included) go to ``path`` for the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(path, "a") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)


def search_lines(search: dict | None) -> list[str]:
    """The summary's lines on a search: where its trials are and which won."""
    if not search:
        return []
    return [f"  search.html    the search's {len(search['trials'])} trials, table and picture; won by "
            + _winner(search["winner"]),
            "  search.json    every trial's settings and validation figures"]


def summary_lines(result: dict, output_dir: str) -> list[str]:
    """The closing summary: the test metrics, then each output and where it is."""
    metrics, timings = result["metrics"], result["timings"]
    lines = [f"mAP50 {metrics['map50']:.3f}  mAP50-95 {metrics['map50_95']:.3f}  precision {metrics['precision']:.3f}"
             f"  recall {metrics['recall']:.3f}  (test split, {metrics['images']} images)"]
    for name, values in metrics["per_class"].items():
        ap50 = "-" if values["ap50"] is None else f"{values['ap50']:.3f}"
        lines.append(f"  {name:<20} AP50 {ap50}  ({values['instances']} boxes)")
    if metrics.get("coco"):
        lines.append("COCO (pycocotools): " + "  ".join(
            f"{name} {'-' if value is None else format(value, '.3f')}" for name, value in metrics["coco"].items()
            if name in SUMMARY_COCO))
    steps = ", ".join(f"{step} {seconds:.1f}" for step, seconds in timings["steps"].items())
    lines += [f"outputs in {output_dir}:",
              "  metrics.json   the test split's metrics, Ultralytics' and COCO's",
              "  report.html    the evaluation report: curves, confusion matrix, per-class table, COCO's figures",
              "  best.pt        the trained weights",
              f"  model.onnx     the model to serve (yolo-kfp predict --model {output_dir}/model.onnx IMAGE)",
              f"  timings.json   seconds: {steps}; total {timings['total']:.1f}",
              "  logs/          each step's full log",
              *search_lines(result.get("search")),
              f"model {result['publication']}"]
    return lines
