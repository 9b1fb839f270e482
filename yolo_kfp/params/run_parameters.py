"""Every run parameter, declared once: its name, type, default, allowed range or choices, group and description.

The pipeline's signature and its ``Args:`` (so the Data Science Pipelines run form), the CLI's ``--param``
typing and ``--help``, the checks (``yolo_kfp.params.validation``) and the parameter table of
docs/parameters.md are derived from this table; preflight's inputs are checked equal to it by a test. Rules
that a range cannot say (an S3 URL, a class list, a multiple of 32) live in ``validation.RULES`` under the same
name.
Kept free of kfp and heavy libraries: the preflight step and a base install read it.
"""

import json
import math
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from yolo_kfp.infra.urls import shown

CACHE_MODES = ("", "ram", "disk")
SPLITS = ("train", "validation", "test")  # Open Images V7's splits (yolo_kfp.data.openimages reads them here)
# The formats of labelled exports extra_data reads (yolo_kfp.data.exports); "" tells one from its files.
EXPORT_FORMATS = ("", "coco", "voc", "cvat", "yolo", "openimages")


def _number(value: float | None) -> str | None:
    return None if value is None else str(int(value)) if float(value).is_integer() else f"{value:g}"


T = TypeVar("T")


@dataclass(frozen=True)
class RunParameter(Generic[T]):
    name: str
    kind: type[T]  # what KFP declares: int, float, bool, str, list or dict
    default: T
    group: str
    description: str
    minimum: float | None = None  # inclusive
    maximum: float | None = None  # inclusive
    above: float | None = None  # exclusive lower bound (a rate above 0)
    choices: tuple | None = None

    @property
    def doc(self) -> str:
        """The line of the pipeline's ``Args:`` (and so of the run form)."""
        return f"[{self.group}] {self.description}"

    @property
    def allowed(self) -> str:
        """The allowed values in words ("from 1 to 64", "above 0 and at most 1", "one of ..."), or ""."""
        low, high, above = (_number(v) for v in (self.minimum, self.maximum, self.above))
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if above is not None:
            return f"above {above}" + (f" and at most {high}" if high is not None else "")
        if low is not None and high is not None:
            return f"from {low} to {high}"
        if low is not None:
            return f"{low} or more"
        return f"at most {high}" if high is not None else ""

    def range_problem(self, value) -> str | None:
        """What is wrong with a ``value`` of the right type against the range or choices, or None."""
        if self.choices is not None:
            ok = value in self.choices
        else:
            ok = not (isinstance(value, float) and not math.isfinite(value)) and all((
                self.minimum is None or value >= self.minimum, self.maximum is None or value <= self.maximum,
                self.above is None or value > self.above))
        return None if ok else f"{self.name} must be {self.allowed}, not {shown(value)}"


P = RunParameter
# Each entry's default is of its kind; the table mixes kinds, so a lookup by name (BY_NAME) is of any kind.
PARAMETERS: tuple[RunParameter[Any], ...] = (
    P("classes", list, ["Bicycle", "Car", "Traffic sign"], "data",
      "Open Images display names to detect; YOLO class ids follow this order."),
    P("max_samples_per_class", int, 300, "data", "Images drawn from Open Images for each class.", minimum=1),
    P("download_shard_size", int, 1000, "data",
      "Images per download shard: a larger selection is fetched by several pods.", minimum=1),
    P("split", str, "train", "data", "The Open Images split to draw from: train, validation or test.",
      choices=SPLITS),
    P("seed", int, 42, "data", "Seed of the image draw, the train/val/test split and training.",
      minimum=0, maximum=2**32 - 1),
    P("split_ratios", list, [0.75, 0.125, 0.125], "data",
      "Shares of the images for train, val and test, e.g. [0.75, 0.125, 0.125]."),
    P("include_group_of", bool, True, "data", "Keep Open Images' group-of boxes (one box around several objects)."),
    P("allow_missing_classes", bool, False, "data",
      "Train even when a class ends up without any box (else the run fails)."),
    P("base_model", str, "yolov5nu.pt", "training",
      "Checkpoint to fine-tune: Ultralytics name (yolov5nu.pt), path or s3://bucket/key."),
    P("base_model_sha256", str, "", "training", "Expected SHA-256 of an s3:// base_model; empty: not checked."),
    P("epochs", int, 50, "training", "Epochs to train.", minimum=1, maximum=10000),
    P("batch", int, 256, "training", "Images per batch over all GPUs; -1 fits it to the GPU's memory (AutoBatch)."),
    P("imgsz", int, 640, "training", "Training and evaluation image size in pixels, a multiple of 32."),
    P("freeze", int, 10, "training", "Layers kept frozen from the first one; 10 is the YOLOv5 backbone.", minimum=0),
    P("workers", int, 8, "training",
      "DataLoader workers per GPU at most; fewer when the pod's CPUs or /dev/shm are few.", minimum=0, maximum=64),
    P("cache", str, "", "training", "Cache decoded images: empty (no), ram or disk.", choices=CACHE_MODES),
    P("patience", int, 100, "training", "Epochs without improvement before training stops early.", minimum=0),
    P("optimizer", str, "auto", "training", "Ultralytics optimizer: auto, SGD, AdamW, Adam, ..."),
    P("lr0", float, 0.01, "training", "Initial learning rate (optimizer=auto chooses its own).", above=0,
      maximum=1),
    P("train_args", dict, {}, "training",
      'Any other Ultralytics training argument, as JSON, e.g. {"cos_lr": true}.'),
    P("search_space", dict, {}, "search",
      'Settings to search before training, e.g. {"lr0": [0.001, 0.01], "freeze": {"min": 0, "max": 10}}: a list of '
      'values or a range {"min", "max"} (+ "log": true) for lr0, epochs, freeze, imgsz, optimizer, batch or a '
      "train_args key; empty: no search."),
    P("search_trials", int, 0, "search",
      "Trials of the search: 0 trains every combination of the lists; more samples that many with seed.",
      minimum=0, maximum=64),
    P("search_epochs", int, 0, "search",
      "Epochs each trial trains; 0: as many as epochs (unless epochs is searched).", minimum=0, maximum=10000),
    P("publish_to", str, "", "publishing",
      "s3://bucket/prefix to publish a promoted model to; empty: publish nothing."),
    P("publish_oci", str, "", "publishing",
      "A repository (e.g. quay.io/team/yolo-kfp-model) to push the published model to as an OCI image that KServe "
      "serves as a ModelCar; needs publish_to. Credentials: the Secret of the compile option --registry-secret."),
    P("extra_data", str, "", "data",
      "s3://bucket/prefix of your own labelled images: a COCO detection, Pascal VOC, CVAT for images 1.1, YOLO or "
      "Open Images export, or one such export in each of its sub-folders; a bad export fails the run before "
      "training, one line per problem."),
    P("extra_data_format", str, "", "data",
      "The format of the exports under extra_data; empty: told from the files each holds.", choices=EXPORT_FORMATS),
    P("class_map", dict, {}, "data",
      'The extra_data exports\' class names mapped onto classes, e.g. {"bike": "Bicycle"}; a name that is one of '
      "classes maps to itself, boxes of any other name are dropped and counted."),
    P("open_images_cache", str, "", "data", "s3://bucket/prefix keeping Open Images' metadata CSVs between runs."),
    P("min_map50", float, 0.25, "gate", "A model below this test-split mAP50 is not published.",
      minimum=0, maximum=1),
    P("max_map50_drop", float, 0.01, "gate", "How far below the published model's mAP50 a new one may fall.",
      minimum=0, maximum=1),
    P("mlflow_tracking_uri", str, "", "tracking",
      "An MLflow tracking server (http(s)://) to log the run to; empty: none. Credentials: the Secret of the "
      "compile option --mlflow-connection."),
    P("mlflow_experiment", str, "yolo-kfp", "tracking", "The MLflow experiment the training's run goes to."),
    P("registered_model_name", str, "yolo-kfp", "tracking",
      "The registered model (MLflow, Model Registry) a published model joins."),
    P("model_registry_url", str, "", "tracking",
      "A Kubeflow Model Registry (http(s)://host[:port]) to register it in."),
)
del P

BY_NAME = {p.name: p for p in PARAMETERS}
# The train step's settings, which preflight hands to the train and trial steps as one dict: the training group
# and the seed (which draws and splits the data too).
TRAINING = tuple(p.name for p in PARAMETERS if p.group == "training") + ("seed",)


def defaults() -> dict:
    """Each parameter's default (a fresh copy of lists and dicts)."""
    return {p.name: type(p.default)(p.default) if isinstance(p.default, (list, dict)) else p.default
            for p in PARAMETERS}


def training_settings(given: dict) -> dict:
    """The train step's settings: ``given`` (training parameters by name) over the table's defaults, integers as
    integers again (KFP hands a dict's numbers over as floats: 64.0)."""
    unknown = sorted(set(given) - set(TRAINING))
    if unknown:
        raise ValueError(f"{unknown[0]} is not a training parameter; they are: {', '.join(TRAINING)}")
    settings = {**{name: value for name, value in defaults().items() if name in TRAINING}, **given}
    return {name: int(value) if BY_NAME[name].kind is int and isinstance(value, float) and value.is_integer()
            else dict(value) if isinstance(value, dict) else value for name, value in settings.items()}


def types() -> dict[str, type]:
    return {p.name: p.kind for p in PARAMETERS}


def help_text() -> str:
    """The parameters for the CLI's ``--help``: one line each, by group."""
    lines = []
    for p in PARAMETERS:
        allowed = f"; {p.allowed}" if p.allowed else ""
        lines.append(f"  {p.name} ({p.kind.__name__}, default {json.dumps(p.default)}{allowed}): [{p.group}] "
                     f"{p.description}")
    return "\n".join(lines)


def markdown_table() -> str:
    """The parameter table of docs/parameters.md."""
    rows = ["| parameter | type | default | allowed | what it is |", "|---|---|---|---|---|"]
    for p in PARAMETERS:
        cells = [f"`{p.name}`", p.kind.__name__, f"`{json.dumps(p.default)}`", p.allowed, p.doc]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # docs/parameters.md's table: python -m yolo_kfp.params.run_parameters
    print(markdown_table(), end="")
