"""Pipeline parameters checked before any work: every problem named, with what to use instead.

The CLI checks a run's parameters before it starts or submits it, and the preflight step checks them
again on the cluster (a run started from the UI form never passed through the CLI).
"""

import difflib
import json
import math
import os
import re
import urllib.parse

from yolo_kfp.infra.storage import is_s3
from yolo_kfp.infra.urls import redact, shown
from yolo_kfp.params import data_rules, publish_rules, run_parameters
from yolo_kfp.params.run_parameters import BY_NAME, RunParameter
from yolo_kfp.params.search_rules import search_epochs_problems, search_trials_problems
from yolo_kfp.params.search_space import (
    MAX_LISTED,
    MAX_TRIALS,
    RANGE_KEYS,
    SEARCHABLE,
    grid_size,
    is_range,
    refused_search,
    searched_values,
    whole,
)
from yolo_kfp.params.train_arg_types import train_args_type_problems
from yolo_kfp.params.ultralytics_catalog import ARGUMENTS, MODEL_LAYERS, OPTIMIZERS

REGISTRY_URL = re.compile(r"(?P<scheme>https?)://(?P<host>[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
                          r"(:(?P<port>[0-9]{1,5}))?/?")
MAX_NAME = 250  # characters of a name a server shows (an MLflow experiment, a registered model, a run)
STRIDE = 32  # YOLOv5/v8 heads downsample by 32: image sizes must be multiples of it
# 4096 px a side is 16.8 Mpixel an image (the notebook trains at 640); beyond it a batch needs tens of GB.
MAX_IMGSZ = 4096
# Ultralytics arguments that would read files from elsewhere, move the run's outputs, or let another split in
# (each a key of the pinned Ultralytics' default.yaml): the train step sets them, or a parameter does the job.
STEP_TRAINING_ARGS = {
    "cfg": "set each value as a train_args key of its own (a config file would set values no parameter records)",
    "data": "the dataset is the convert step's: choose it with classes, max_samples_per_class and extra_data",
    "model": "set base_model", "pretrained": "set base_model (the checkpoint whose weights are fine-tuned)",
    "distill_model": "leave it out: a teacher checkpoint is not part of this pipeline",
    "resume": "leave it out: a retried or identical run resumes from its checkpoint by itself",
    "project": "leave it out: the train step writes to its output artifact",
    "name": "leave it out: the train step writes to its output artifact",
    "save_dir": "leave it out: the train step writes to its output artifact",
    "exist_ok": "leave it out: the train step writes to its output artifact",
    "save": "leave it out: the train step's output is the saved weights",
    "device": "set the GPU count with the compile option --gpus",
    "split": "leave it out: training validates on the val split; the test split is for the evaluate step",
    "source": "leave it out: it is a prediction argument", "tracker": "leave it out: it is a tracking argument",
    "mode": "leave it out: the train step trains", "task": "leave it out: the pipeline trains a detector",
}
# The Python types of the pipeline's parameters, as KFP declares them.
KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a JSON list",
         dict: "a JSON object"}


def named_training_args() -> tuple[str, ...]:
    """The Ultralytics arguments that are run parameters of their own: train_args may not set them a second time."""
    return tuple(name for name in run_parameters.TRAINING if name in ARGUMENTS)


def registry_url_problems(url: str) -> list[str]:
    """``model_registry_url`` must be empty or a registry's REST address: scheme, host, optional port."""
    if not url:
        return []
    found = REGISTRY_URL.fullmatch(str(url))
    if found and (not found["port"] or 0 < int(found["port"]) < 65536):
        return []
    return [f"model_registry_url must be empty or a Kubeflow Model Registry's REST address, http(s)://host[:port] "
            f"without a path (e.g. https://registry-rest.apps.example.com or http://model-registry.kubeflow.svc"
            f":8080), not {shown(url)}"]


def convert_parameter(name: str, value, kind: type):
    """``value`` as the ``kind`` the pipeline declares for ``name``: ``0`` for a float is ``0.0``, ``"3"`` for an
    integer is 3. Strings are taken as the CLI's ``--param`` text (JSON for lists, objects and numbers)."""
    given = value
    if isinstance(value, str) and (kind is not str or value.startswith('"')):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    if kind is bool and isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    elif kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif kind is int and isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        value = int(value)
    elif kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ValueError(f"{name} must be {KINDS[kind]}, not {shown(given)}")
    return value


def plain_numbers(args: dict) -> dict:
    """KFP hands integers over as floats in some places (3.0, numbers inside dicts): make them ints again."""
    return {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in args.items()}


def _classes_problems(classes, p) -> list[str]:
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c.strip() for c in classes):
        return [f"classes must be a non-empty list of Open Images class names, not {shown(classes)}"]
    if len(set(classes)) != len(classes):
        return [f"classes lists {sorted({c for c in classes if classes.count(c) > 1})} more than once"]
    return []


def _split_ratios_problems(ratios, p) -> list[str]:
    if (len(ratios) != 3 or not all(isinstance(r, (int, float)) and math.isfinite(r) for r in ratios)
            or any(r < 0 for r in ratios) or not math.isclose(sum(ratios), 1.0, abs_tol=1e-6)
            or ratios[1] == 0 or ratios[2] == 0):
        return [f"split_ratios must be three non-negative numbers (train, val, test) summing to 1 with val and test "
                f"above 0, e.g. {BY_NAME['split_ratios'].default}, not {shown(ratios)}"]
    return []


def _batch_problems(batch, p) -> list[str]:
    if batch > 0 or batch == -1:
        return []
    return [f"batch must be a positive integer or -1 (Ultralytics fits it to the GPU's memory), not {shown(batch)}"]


def _imgsz_problems(imgsz, p) -> list[str]:
    if imgsz <= 0:
        return [f"imgsz must be a positive integer, not {shown(imgsz)}"]
    if imgsz > MAX_IMGSZ:
        return [f"imgsz {imgsz} is beyond {MAX_IMGSZ}: each image would take "
                f"{imgsz * imgsz * 3 * 4 / 2**30:.0f} GiB as a float tensor; the notebook trains at 640"]
    if imgsz % STRIDE:
        up, down = math.ceil(imgsz / STRIDE) * STRIDE, imgsz // STRIDE * STRIDE
        return [f"imgsz {imgsz} is not a multiple of {STRIDE}: Ultralytics would train at {up}; use "
                + (f"that or {down}" if down else "that")]
    return []


def _freeze_problems(freeze, p) -> list[str]:
    base_model = p.get("base_model")
    return freeze_problems(freeze, MODEL_LAYERS[base_model], base_model) if base_model in MODEL_LAYERS else []


def _optimizer_problems(optimizer, p) -> list[str]:
    if optimizer.lower() in {o.lower() for o in OPTIMIZERS}:
        return []
    return [f"optimizer must be one of Ultralytics' {', '.join(OPTIMIZERS)}, not {shown(optimizer)}"]


def _s3_problems(name: str):
    def problems(value, p) -> list[str]:
        if value and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?", value):
            return [f"{name} must be empty or an S3 URL like s3://bucket/prefix, not {shown(value)}"]
        return []
    return problems


def _sha256_problems(value, p) -> list[str]:
    return ["base_model_sha256 must be empty or 64 hexadecimal digits"] if value and not re.fullmatch(
        r"[0-9a-fA-F]{64}", value) else []


def is_shown_name(text: str) -> bool:
    """A name a server shows in its UI and our terminals repeat (an experiment, a run, a model, a version): some
    text, no control characters (which recolour or rewrite a terminal), at most MAX_NAME characters."""
    return bool(text.strip()) and text.isprintable() and len(text) <= MAX_NAME


def _name_problems(name: str):
    def problems(value, p) -> list[str]:
        if not is_shown_name(value):
            return [f"{name} must be a name of 1 to {MAX_NAME} printable characters, not {shown(value)}"]
        return []
    return problems


def _search_values_problems(name: str, values, p) -> list[str]:
    """One searched setting's values: a non-empty list or a numeric range, each value as its parameter takes it."""
    if is_range(values):
        if set(values) - set(RANGE_KEYS) or not {"min", "max"} <= set(values):
            return [f"search_space {name}: a range is {{\"min\": a, \"max\": b}} (+ \"log\": true), not "
                    f"{json.dumps(values)}"]
        low, high = values["min"], values["max"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)):
            return [f"search_space {name}: a range's min and max must be numbers, not {json.dumps(values)}"]
        if name in ("imgsz", "optimizer"):
            return [f"search_space {name}: give a list of values, not a range (imgsz must be a multiple of "
                    f"{STRIDE}, optimizer a name)"]
        if not low < high:
            return [f"search_space {name}: the range's min {low} must be below its max {high}"]
        if not isinstance(values.get("log", False), bool) or (values.get("log") and low <= 0):
            return [f"search_space {name}: \"log\" is true or false, and a log range needs a min above 0"]
        if name == "batch" and low < 1:
            return [f"search_space batch: a range of batch sizes starts at 1 or more, not {low}"]
        if p.get("search_trials", BY_NAME["search_trials"].default) == 0:
            return [f"search_space {name} is a range, which is sampled: set search_trials to how many trials to draw"]
    elif not isinstance(values, list) or not values:
        return [f"search_space {name} must be a non-empty list of values or a range {{\"min\": a, \"max\": b}}, "
                f"not {json.dumps(values)}"]
    elif len(values) > MAX_LISTED:
        return [f"search_space {name} lists {len(values)} values, more than {MAX_LISTED}: give fewer, or a range "
                "{\"min\": a, \"max\": b} to sample from"]
    elif len({json.dumps(whole(v), sort_keys=True) for v in values}) != len(values):  # 10 and 10.0 train alike
        return [f"search_space {name} lists a value more than once: {json.dumps(values)[:200]}"]
    return []


def _search_value_problems(name: str, value, p) -> list[str]:
    """A value a trial trains with, checked as the parameter (or train_args key) it sets."""
    if name in SEARCHABLE:
        parameter = BY_NAME[name]
        if parameter.kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        problems = parameter_problems({name: value, "base_model": p.get("base_model", BY_NAME["base_model"].default)})
    else:
        problems = train_args_problems({name: value})
    return [f"search_space {name}: {problem}" for problem in problems]


def _search_space_problems(space, p) -> list[str]:
    if refused_search(space):  # a pipeline compiled without the search: nothing else about it matters
        return refused_search(space)
    unknown = [name for name in space if name not in SEARCHABLE and (
        name in named_training_args() or name in STEP_TRAINING_ARGS or name not in ARGUMENTS)]
    if unknown:
        return [f"search_space has {unknown[0]!r}, which is not searched: give {', '.join(SEARCHABLE)} or an "
                "Ultralytics training argument train_args may set (e.g. mosaic, cos_lr, weight_decay)"]
    problems = [problem for name, values in space.items() for problem in _search_values_problems(name, values, p)]
    if problems:
        return problems
    problems = [problem for name, value in searched_values(space) for problem in _search_value_problems(name, value, p)]
    optimizers = [v.lower() for v in space.get("optimizer", [p.get("optimizer", BY_NAME["optimizer"].default)])
                  if isinstance(v, str)]
    if "lr0" in space and "auto" in optimizers:
        problems.append("search_space lr0 has no effect with optimizer auto (Ultralytics then chooses its own "
                        "learning rate): set optimizer, e.g. SGD or AdamW, or search it without auto")
    trials = p.get("search_trials", BY_NAME["search_trials"].default)
    size = grid_size(space)
    if space and not trials and size > MAX_TRIALS:
        problems.append(f"search_space is a grid of {size} combinations, more than {MAX_TRIALS} trials: set "
                        f"search_trials to sample at most {MAX_TRIALS} of them, or list fewer values")
    elif space and trials > size and not any(is_range(v) for v in space.values()):
        problems.append(f"search_trials {trials} is more than the {size} combinations of search_space: use 0 (all "
                        f"of them) or at most {size}")
    return problems


def deepest_freeze(p: dict) -> int:
    """The most layers any training of the run freezes (the run's freeze, or a searched one): what the base
    model's depth is checked against."""
    space = p.get("search_space") or {}
    searched = [int(v) for name, v in searched_values(space) if name == "freeze"] if isinstance(space, dict) else []
    return max([int(p.get("freeze", BY_NAME["freeze"].default)), *searched])


# The rules a range in the table cannot say, by parameter: each gets the value (of the declared type) and all
# the parameters given, and returns what is wrong.
RULES = {
    "classes": _classes_problems, "split_ratios": _split_ratios_problems, "batch": _batch_problems,
    "imgsz": _imgsz_problems, "freeze": _freeze_problems, "optimizer": _optimizer_problems,
    "train_args": lambda value, p: train_args_problems(value),
    "publish_to": _s3_problems("publish_to"), "publish_oci": publish_rules.publish_oci_problems,
    "extra_data": _s3_problems("extra_data"), "open_images_cache": _s3_problems("open_images_cache"),
    "base_model_sha256": _sha256_problems,
    "mlflow_tracking_uri": lambda value, p: mlflow_uri_problems(value),
    "mlflow_experiment": _name_problems("mlflow_experiment"),
    "registered_model_name": _name_problems("registered_model_name"),
    "model_registry_url": lambda value, p: registry_url_problems(value),
    "search_space": _search_space_problems, "search_trials": search_trials_problems,
    "search_epochs": search_epochs_problems, "class_map": data_rules.class_map_problems,
}


def _type_problem(parameter: RunParameter, value) -> str | None:
    """A value of another type than the table's (an integer counts as a float; true and false as neither)."""
    kind = parameter.kind
    if kind is bool:
        fits = isinstance(value, bool)
    else:
        fits = not isinstance(value, bool) and (isinstance(value, kind) or kind is float and isinstance(value, int))
    return None if fits else f"{parameter.name} must be {KINDS[kind]}, not {shown(value)}"


# Where the credentials a value must not hold go instead (any other parameter: S3's).
CREDENTIALS_INSTEAD = {
    "mlflow_tracking_uri": "MLflow's go in the Secret of the compile option --mlflow-connection "
                           "(MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)",
    "model_registry_url": "the registry is sent the pod's service-account token, nothing else",
}
S3_CREDENTIALS = "S3 keys come from the data connection (the compile option --data-connection)"


def credentials_problem(name: str, value) -> str | None:
    """A run parameter's value is shown on the run's page, logged and stored with the run and in MLflow: it may
    hold no credentials in any form (``has_credentials``: user-info with or without a scheme, secret query keys),
    whatever the parameter."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    masked = redact(text)
    if masked == text:
        return None
    return (f"{name} {masked[:200]!r} has credentials in it, which the run's page, its logs and MLflow would "
            f"show and keep: leave them out; {CREDENTIALS_INSTEAD.get(name, S3_CREDENTIALS)}")


def parameter_problems(p: dict) -> list[str]:
    """What is wrong with the parameters ``p`` (any subset of the pipeline's): credentials in a value, each value's
    type, its range or choices from the table, then its rule; empty when nothing is."""
    integers = {name: value for name, value in p.items() if name in BY_NAME and BY_NAME[name].kind is int}
    p = {**p, **plain_numbers(integers)}  # KFP hands integers over as floats
    wrong: dict[str, str | None] = {}
    for name, value in p.items():
        parameter = BY_NAME.get(name)
        if parameter is not None:
            wrong[name] = (credentials_problem(name, value) or _type_problem(parameter, value)
                           or parameter.range_problem(value))
    problems = [problem for problem in wrong.values() if problem]
    usable = {name: BY_NAME[name].default if wrong.get(name) else value for name, value in p.items()}
    for name in wrong:  # each rule sees the others' values where they are usable, their defaults where not
        if not wrong[name] and name in RULES:
            problems += RULES[name](p[name], usable)
    return problems


def _parses(url: str) -> bool:
    try:
        port = urllib.parse.urlsplit(url).port  # a bracket left open or a port out of range raise here
    except ValueError:
        return False
    return port is None or port > 0


def mlflow_uri_problems(uri) -> list[str]:
    """An MLflow tracking server's http(s):// URL (``credentials_problem`` has refused credentials in it)."""
    if not uri:
        return []
    if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", str(uri)) or not _parses(str(uri)):
        return [f"mlflow_tracking_uri must be empty or an MLflow tracking server's http(s):// URL, not {shown(uri)}"]
    return []


def train_args_problems(train_args) -> list[str]:
    """Ultralytics arguments it knows, and none that a parameter or the step itself already sets."""
    if not isinstance(train_args, dict):
        return [f"train_args must be a JSON object of Ultralytics training arguments, not {shown(train_args)}"]
    problems = []
    for key in train_args:
        if key in named_training_args():
            problems.append(f"train_args sets {shown(key)}, which is a parameter of its own: set {key} instead "
                            "(else the recorded parameter would not be what was trained)")
        elif key in STEP_TRAINING_ARGS:
            problems.append(f"train_args may not set {shown(key)}: {STEP_TRAINING_ARGS[key]}")
        elif key not in ARGUMENTS:
            close = difflib.get_close_matches(key, sorted(ARGUMENTS), n=1)
            problems.append(f"train_args has {shown(key)}, which is not an Ultralytics training argument"
                            + (f" (did you mean {close[0]!r}?)" if close else ""))
    allowed = {k: v for k, v in train_args.items() if k not in named_training_args() and k not in STEP_TRAINING_ARGS}
    return problems + train_args_type_problems(allowed)


def freeze_problems(freeze: int, layers: int, model_name: str) -> list[str]:
    """Freezing every layer leaves nothing to learn: ``freeze`` must stay below the model's depth."""
    if freeze < layers:
        return []
    return [f"freeze {freeze} is beyond {model_name}'s {layers} layers (0-{layers - 1}); freezing them all leaves "
            "nothing to train. The YOLOv5 backbone is freeze=10"]


def base_model_problems(base_model: str, freeze: int) -> list[str]:
    """A named Ultralytics checkpoint, or a file here that is a checkpoint deep enough for ``freeze``.

    ``s3://`` models are checked where the data connection is (preflight), after fetching them."""
    from yolo_kfp.infra.model_file import checkpoint_layers

    if base_model in MODEL_LAYERS or is_s3(base_model):
        return []
    if not os.path.isfile(base_model):
        close = difflib.get_close_matches(base_model, sorted(MODEL_LAYERS), n=1)
        return [f"base_model {shown(base_model)} is neither a checkpoint Ultralytics publishes (e.g. "
                f"{close[0] if close else 'yolov5nu.pt'}), a file here, nor an s3:// URL"]
    try:
        return freeze_problems(freeze, checkpoint_layers(base_model), base_model)
    except ValueError as error:
        return [f"base_model: {error}"]


def check(problems: list[str]) -> None:
    if problems:
        raise ValueError(f"bad parameter{'s' if len(problems) > 1 else ''}: " + "; ".join(problems))


def check_parameters(p: dict) -> None:
    check(parameter_problems(p))


def check_freeze(freeze: int, layers: int, model_name: str) -> None:
    check(freeze_problems(freeze, layers, model_name))
