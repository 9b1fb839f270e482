"""Search: a trial's view of the dataset, its validation score, and which trial won.

Each trial is scored on the validation split only: it trains on a view of the dataset that holds no test
split (``trial_view``), so the test split stays untouched until the winner's final evaluation. Which trials
to run, and with which settings, is ``yolo_kfp.params.search_space``.
"""

import contextlib
import os
import shutil
import tempfile
import time

from yolo_kfp.params.search_space import whole

TRIAL_SPLITS = ("train", "val")  # what a trial may read of the dataset


def trial_record(*, trial: int, settings: dict, epochs: int, val: dict, mlflow_run_id: str, seconds: float) -> dict:
    """One trial's record: what the train step and the trials table read."""
    return {"trial": int(trial), "settings": {k: whole(v) for k, v in settings.items()}, "epochs": int(epochs),
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

    from yolo_kfp.infra.packing import extract, link_or_copy, shards

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
    from yolo_kfp.model.ultralytics_env import configure_offline

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
