"""Evaluate: the trained model on the held-out test split (Ultralytics validation on split "test")."""

import base64
import logging
import os
import tempfile
import time

import numpy as np

from yolo_kfp.model.analysis import (
    CONFIDENCE,
    coco_files,
    confusion_matrix,
    draw_grid,
    html_report,
    plot_confusion,
    read_ground_truth,
)
from yolo_kfp.model.train import dataset_yaml
from yolo_kfp.params.run_parameters import BY_NAME

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


def evaluate_model(*, data_dir: str, weights: str, imgsz: int | None = None, batch: int = BY_NAME["batch"].default,
                   device: str = "", report_dir: str = "") -> dict:
    """Validates ``weights`` on the test split and returns the figures (the content of metrics.json),
    at ``imgsz`` or, without it, at the size the model was trained at (``yolo_kfp.model.image_size``).

    With ``report_dir`` it also writes ``report.html`` (PR curve, confusion matrix, per-class table,
    test images with true and predicted boxes) and the predictions as COCO JSON, and adds the
    confusion matrix to the figures.
    """
    from yolo_kfp.model.image_size import imgsz_for
    from yolo_kfp.model.ultralytics_env import configure_offline

    imgsz = imgsz_for(weights, imgsz)
    configure_offline()
    from ultralytics import YOLO

    started = time.monotonic()
    model = YOLO(weights)
    with tempfile.TemporaryDirectory(prefix="yolo-val-") as project:
        validation_started = time.monotonic()
        results = model.val(data=dataset_yaml(data_dir), split="test", imgsz=imgsz, batch=batch, project=project,
                            name="test", plots=bool(report_dir), **({"device": device} if device else {}))
        validation_seconds = round(time.monotonic() - validation_started, 2)
        box = results.box
        metrics = {"map50": _number(box.map50), "map50_95": _number(box.map), "precision": _number(box.mp),
                   "recall": _number(box.mr), "images": len(held_out_images(data_dir)), "imgsz": imgsz,
                   "per_class": per_class_metrics(box, results.names, results.nt_per_class)}
        if report_dir:
            pr_curve = os.path.join(results.save_dir, "BoxPR_curve.png")
            metrics["confusion_matrix"] = write_report(model, data_dir, imgsz, metrics, pr_curve, report_dir)
    metrics.update(seconds=round(time.monotonic() - started, 2), validation_seconds=validation_seconds)
    log.info("test split: mAP50 %.3f, mAP50-95 %.3f", metrics["map50"], metrics["map50_95"])
    return metrics


def held_out_images(data_dir: str) -> list[str]:
    folder = os.path.join(data_dir, "images", "test")
    return sorted(os.path.join(folder, name) for name in os.listdir(folder))


def predict_test_split(model, data_dir: str, imgsz: int) -> tuple[list, list]:
    """Per test image: (path, true rows (class, box), predicted rows (class, conf, box)), and its size."""
    samples, sizes = [], []
    images = held_out_images(data_dir)
    for result in model.predict(images, imgsz=imgsz, conf=CONFIDENCE, verbose=False, stream=True):
        boxes = result.boxes
        predicted = np.column_stack([boxes.cls.cpu().numpy(), boxes.conf.cpu().numpy(), boxes.xyxyn.cpu().numpy()])
        label = os.path.join(data_dir, "labels", "test", os.path.splitext(os.path.basename(result.path))[0] + ".txt")
        samples.append((result.path, read_ground_truth(label), predicted.reshape(-1, 6)))
        sizes.append(result.orig_shape[::-1])
    return samples, sizes


def write_report(model, data_dir: str, imgsz: int, metrics: dict, pr_curve: str, report_dir: str) -> dict:
    """Writes report.html and the COCO predictions; returns the confusion matrix with its labels."""
    names = list(model.names.values())
    samples, sizes = predict_test_split(model, data_dir, imgsz)
    matrix = confusion_matrix([(truth, predicted) for _, truth, predicted in samples], len(names))
    labels = [*names, "background"]
    images = {}
    if os.path.exists(pr_curve):
        with open(pr_curve, "rb") as f:
            images["Precision-recall curve (test split)"] = base64.b64encode(f.read()).decode()
    images[f"Confusion matrix (confidence >= {CONFIDENCE}, IoU >= 0.5)"] = plot_confusion(matrix, labels)
    images["Test images: true boxes green, predictions red"] = draw_grid(samples[:12], names)
    os.makedirs(report_dir, exist_ok=True)
    with open(os.path.join(report_dir, "report.html"), "w") as f:
        f.write(html_report(metrics, images))
    coco_files(samples, names, sizes, report_dir)
    return {"labels": labels, "matrix": matrix.tolist()}
