"""Evaluate: the trained model on the held-out test split (Ultralytics validation on split "test")."""

import logging
import os
import tempfile
import time

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.images import TRAIN_IMAGE, component
from components.train import dataset_yaml

log = logging.getLogger(__name__)


def _number(value) -> float | None:
    return None if value is None else round(float(value), 6)


def per_class_metrics(box, names: dict, instances) -> dict:
    """AP, precision and recall of every class; ``None`` where the test split has no instance of it."""
    index = {int(c): i for i, c in enumerate(box.ap_class_index)}
    result = {}
    for class_id, name in names.items():
        i = index.get(int(class_id))
        result[name] = {"ap50": _number(box.ap50[i]) if i is not None else None,
                        "ap50_95": _number(box.ap[i]) if i is not None else None,
                        "precision": _number(box.p[i]) if i is not None else None,
                        "recall": _number(box.r[i]) if i is not None else None,
                        "instances": int(instances[int(class_id)])}
    return result


def evaluate_model(data_dir: str, weights: str, imgsz: int = 640, batch: int = 16, device: str = "") -> dict:
    """Validates ``weights`` on the test split and returns the figures (the content of metrics.json)."""
    from components.ultralytics_env import configure_offline

    configure_offline()
    from ultralytics import YOLO

    started = time.monotonic()
    model = YOLO(weights)
    with tempfile.TemporaryDirectory(prefix="yolo-val-") as project:
        results = model.val(data=dataset_yaml(data_dir), split="test", imgsz=imgsz, batch=batch, project=project,
                            name="test", plots=False, **({"device": device} if device else {}))
    box = results.box
    metrics = {"map50": _number(box.map50), "map50_95": _number(box.map), "precision": _number(box.mp),
               "recall": _number(box.mr), "images": len(os.listdir(os.path.join(data_dir, "images", "test"))),
               "per_class": per_class_metrics(box, results.names, results.nt_per_class),
               "seconds": round(time.monotonic() - started, 2)}
    log.info("test split: mAP50 %.3f, mAP50-95 %.3f", metrics["map50"], metrics["map50_95"])
    return metrics


@component(TRAIN_IMAGE)
def evaluate(dataset: Input[Dataset], model: Input[Model], imgsz: int, batch: int, metrics: Output[Metrics],
             metrics_json: Output[Artifact]):
    """Evaluates the trained model on the held-out test split.

    Logs mAP50, mAP50-95, precision, recall and per-class AP50 as KFP metrics and writes the same
    figures (with per-class AP50-95, precision, recall and instance counts) as JSON.
    """
    import json
    import logging
    import os

    from components.evaluate import evaluate_model
    from components.packing import materialized

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with materialized(dataset.path) as data_dir:
        result = evaluate_model(data_dir, os.path.join(model.path, "weights", "best.pt"), imgsz, batch)
    for key in ("map50", "map50_95", "precision", "recall"):
        metrics.log_metric(key, result[key])
    for name, values in result["per_class"].items():
        if values["ap50"] is not None:
            metrics.log_metric(f"ap50_{name}", values["ap50"])
    with open(metrics_json.path, "w") as f:
        json.dump(result, f, indent=2)
    metrics_json.metadata["seconds"] = result["seconds"]
