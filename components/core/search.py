"""Search: which training settings to try (the trial plan), what one trial trains with, and which trial won.

A search space maps a training setting to a list of values or a range ``{"min": a, "max": b}`` (``"log":
true`` for a log-uniform one; integer bounds sample integers). ``search_trials`` 0 takes every
combination of the lists (a grid); more samples that many trials with the run's ``seed``. Each trial is
scored on the validation split only: it trains on a view of the dataset that holds no test split
(``trial_view``), so the test split stays untouched until the winner's final evaluation.
"""

import contextlib
import itertools
import math
import os
import random
import shutil
import tempfile
import time

# The training parameters a search may set besides train_args keys (each checked by its own rule).
SEARCHABLE = ("lr0", "epochs", "freeze", "imgsz", "optimizer", "batch")
INTEGER_PARAMETERS = ("epochs", "freeze", "imgsz", "batch")
RANGE_KEYS = ("min", "max", "log")
# A grid beyond this is more GPU time than a search should take by accident: sample it with search_trials.
MAX_TRIALS = 64
TRIAL_SPLITS = ("train", "val")  # what a trial may read of the dataset
# Set on the preflight task of a pipeline compiled without the search (a server without dsl.Collected,
# yolo_kfp.pipeline.servers): why a run that asks for one is refused there, before any work.
SEARCH_REFUSAL_ENV = "YOLO_KFP_SEARCH_REFUSAL"


def is_range(values) -> bool:
    return isinstance(values, dict)


def grid_size(search_space: dict) -> int:
    """Combinations of the lists (ranges count as one: they are only sampled)."""
    return math.prod(len(values) for values in search_space.values() if not is_range(values))


def _whole(value):
    """KFP hands integers inside lists and dicts over as floats: 3.0 is 3 again."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _sample_range(bounds: dict, rng: random.Random):
    low, high = bounds["min"], bounds["max"]
    integers = all(isinstance(_whole(v), int) and not isinstance(v, bool) for v in (low, high))
    if bounds.get("log"):
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    if integers:
        return min(int(high), max(int(low), round(value)))
    return min(high, max(low, float(f"{value:.4g}")))  # four digits: what a table shows and a person retypes


def _combination(search_space: dict, names: list[str], index: int) -> dict:
    """The grid's ``index``-th combination (mixed radix over the lists, the last name fastest)."""
    settings = {}
    for name in reversed(names):
        values = search_space[name]
        index, position = divmod(index, len(values))
        settings[name] = values[position]
    return {name: settings[name] for name in names}


def refused_search(search_space: dict) -> list[str]:
    """The problem of a search asked of a pipeline compiled without one (``SEARCH_REFUSAL_ENV``), if it is."""
    refusal = os.environ.get(SEARCH_REFUSAL_ENV, "")
    return [refusal] if search_space and refusal else []


def plan_trials(search_space: dict, search_trials: int, seed: int) -> list[dict]:
    """The trials, ``{"trial": i, "settings": {name: value}}`` each: every combination of a grid
    (``search_trials`` 0), else ``search_trials`` of them drawn with ``seed`` (distinct where the space
    is a grid). The same arguments give the same plan; an empty space gives none."""
    if not search_space:
        return []
    names = sorted(search_space)
    lists_only = not any(is_range(v) for v in search_space.values())
    if search_trials == 0:
        chosen = [_combination(search_space, names, i) for i in range(grid_size(search_space))]
    elif lists_only:
        rng = random.Random(seed)
        indexes = sorted(rng.sample(range(grid_size(search_space)), min(search_trials, grid_size(search_space))))
        chosen = [_combination(search_space, names, i) for i in indexes]
    else:
        rng = random.Random(seed)
        chosen = [{name: _sample_range(search_space[name], rng) if is_range(search_space[name])
                   else rng.choice(search_space[name]) for name in names} for _ in range(search_trials)]
    return [{"trial": i, "settings": {k: _whole(v) for k, v in settings.items()}} for i, settings in enumerate(chosen)]


def trial_settings(run_settings: dict, values: dict, search_epochs: int = 0) -> dict:
    """The full training settings of a trial: the run's, with the trial's ``values`` over them (train_args keys
    merged into ``train_args``), trained for ``search_epochs`` (0: the run's epochs) unless epochs is searched."""
    settings = {**run_settings, "train_args": dict(run_settings.get("train_args") or {})}
    for name, value in values.items():
        value = _whole(value)
        if name in INTEGER_PARAMETERS:
            settings[name] = int(value)
        elif name == "lr0":
            settings[name] = float(value)
        elif name in SEARCHABLE:
            settings[name] = value
        else:
            settings["train_args"][name] = value
    if "epochs" not in values and search_epochs:
        settings["epochs"] = int(search_epochs)
    return settings


def trial_record(*, trial: int, settings: dict, epochs: int, val: dict, mlflow_run_id: str, seconds: float) -> dict:
    """One trial's record: what the train step and the trials table read."""
    return {"trial": int(trial), "settings": {k: _whole(v) for k, v in settings.items()}, "epochs": int(epochs),
            "val": {k: float(val[k]) for k in ("map50", "map50_95", "precision", "recall")},
            "mlflow_run_id": mlflow_run_id, "seconds": round(float(seconds), 2)}


def select_trial(records: list[dict]) -> dict:
    """The winner: the highest validation mAP50-95; a tie goes to the lowest trial index."""
    if not records:
        raise ValueError("no trial records to choose from: the search ran no trial")
    return min(records, key=lambda r: (-r["val"]["map50_95"], r["trial"]))


def _trial_member(name: str) -> bool:
    """A dataset file a trial may read: dataset.yaml, and images and labels of the train and val splits."""
    parts = name.split("/")
    return name == "dataset.yaml" or (len(parts) >= 2 and parts[0] in ("images", "labels")
                                      and parts[1] in TRIAL_SPLITS)


@contextlib.contextmanager
def trial_view(artifact_dir: str):
    """Yields a folder with the dataset's train and val splits and a ``dataset.yaml`` that names no test split.

    The test split is not extracted from the shards nor linked: a trial cannot read it, so choosing
    settings on it (and then reporting it as held out) is impossible by construction."""
    import yaml
    from yolo_kfp.components.core.packing import extract, link_or_copy, shards

    with tempfile.TemporaryDirectory(prefix="trial-data-") as view:
        packed = shards(artifact_dir)
        for archive in packed:
            extract(archive, view, selected=_trial_member)
        for kind in ("images", "labels"):
            for split in TRIAL_SPLITS:
                source = os.path.join(artifact_dir, kind, split)
                if not packed and os.path.isdir(source):
                    # linked file by file: Ultralytics' label cache is then written here, not into the dataset
                    shutil.copytree(source, os.path.join(view, kind, split), copy_function=link_or_copy)
        with open(os.path.join(artifact_dir, "dataset.yaml")) as f:
            described = yaml.safe_load(f)
        described.pop("test", None)
        with open(os.path.join(view, "dataset.yaml"), "w") as f:
            yaml.safe_dump(described, f, sort_keys=False)
        yield view


def score_on_validation(*, data_dir: str, weights: str, imgsz: int, batch: int, device: str = "") -> dict:
    """mAP50, mAP50-95, precision and recall of ``weights`` on the validation split of ``data_dir``."""
    from yolo_kfp.components.core.ultralytics_env import configure_offline

    configure_offline()
    from ultralytics import YOLO

    started = time.monotonic()
    project = tempfile.mkdtemp(prefix="trial-val-")
    try:
        box = YOLO(weights).val(data=os.path.join(data_dir, "dataset.yaml"), split="val", imgsz=imgsz,
                                batch=16 if batch == -1 else batch, project=project, name="val", plots=False,
                                **({"device": device} if device else {})).box
    finally:
        shutil.rmtree(project, ignore_errors=True)
    return {"map50": float(box.map50), "map50_95": float(box.map), "precision": float(box.mp),
            "recall": float(box.mr), "seconds": round(time.monotonic() - started, 2)}


def search_summary(search_space: dict, records: list[dict]) -> dict:
    """``search.json``: the space, the trials in trial order and the winner."""
    trials = sorted(records, key=lambda r: r["trial"])
    return {"space": search_space, "trials": trials, "winner": select_trial(trials)}


def searched_values(search_space: dict) -> list[tuple]:
    """Every (name, value) a search may train with, for checks: each list value and each range's bounds."""
    return list(itertools.chain.from_iterable(
        ((name, values["min"]), (name, values["max"])) if is_range(values) else ((name, v) for v in values)
        for name, values in search_space.items()))
