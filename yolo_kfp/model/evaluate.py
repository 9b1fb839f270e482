"""Evaluate: the trained model on the held-out test split (Ultralytics validation on split "test")."""

import base64
import logging
import os
import tempfile
import time

from yolo_kfp.model.analysis import CONFIDENCE, IOU_MATCH, confusion_matrix, draw_grid, html_report, plot_confusion
from yolo_kfp.model.coco import coco_figures, write_coco_files
from yolo_kfp.model.seen_by_validation import SeenByValidation, recording_validator
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

    With ``report_dir`` it also writes the COCO files of every detection the mAP was computed from
    (``yolo_kfp.model.coco``) and ``report.html`` (PR curve, confusion matrix, per-class table, COCO's
    figures, test images with true and predicted boxes), and adds COCO's figures and the confusion matrix
    to the figures.
    """
    from yolo_kfp.model.image_size import imgsz_for
    from yolo_kfp.model.ultralytics_env import configure_offline

    imgsz = imgsz_for(weights, imgsz)
    configure_offline()
    from ultralytics import YOLO

    started = time.monotonic()
    model = YOLO(weights)
    seen = SeenByValidation()
    with tempfile.TemporaryDirectory(prefix="yolo-val-") as project:
        validation_started = time.monotonic()
        # save_json makes Ultralytics hand each image's detections to the recording validator
        recording = {"save_json": True, "validator": recording_validator(seen)} if report_dir else {}
        results = model.val(data=dataset_yaml(data_dir), split="test", imgsz=imgsz, batch=batch, project=project,
                            name="test", plots=bool(report_dir), **recording, **({"device": device} if device else {}))
        validation_seconds = round(time.monotonic() - validation_started, 2)
        box = results.box
        metrics = {"map50": _number(box.map50), "map50_95": _number(box.map), "precision": _number(box.mp),
                   "recall": _number(box.mr), "images": len(held_out_images(data_dir)), "imgsz": imgsz,
                   "per_class": per_class_metrics(box, results.names, results.nt_per_class)}
        if report_dir:
            pr_curve = os.path.join(results.save_dir, "BoxPR_curve.png")
            metrics.update(write_report(list(model.names.values()), seen, metrics, pr_curve, report_dir))
    metrics.update(seconds=round(time.monotonic() - started, 2), validation_seconds=validation_seconds)
    log.info("test split: mAP50 %.3f, mAP50-95 %.3f", metrics["map50"], metrics["map50_95"])
    return metrics


def held_out_images(data_dir: str) -> list[str]:
    folder = os.path.join(data_dir, "images", "test")
    return sorted(os.path.join(folder, name) for name in os.listdir(folder))


def write_report(names: list[str], seen: SeenByValidation, metrics: dict, pr_curve: str, report_dir: str) -> dict:
    """Writes the COCO files and report.html; returns COCO's figures, what the detections were, and the
    confusion matrix with its labels (for metrics.json)."""
    os.makedirs(report_dir, exist_ok=True)
    images = seen.evaluated_images()
    evaluated = write_coco_files(images, names, report_dir)
    shown = [(image.path, *image.normalized(CONFIDENCE)) for image in images]
    matrix = confusion_matrix([(truth, detected) for _, truth, detected in shown], len(names))
    added = {"coco": coco_figures(report_dir),
             "detections": {**seen.thresholds, "evaluated": evaluated, "shown_confidence": CONFIDENCE},
             "confusion_matrix": {"labels": [*names, "background"], "matrix": matrix.tolist(),
                                  "confidence": CONFIDENCE, "iou": IOU_MATCH}}
    figures = {}
    if os.path.exists(pr_curve):
        with open(pr_curve, "rb") as f:
            figures["Precision-recall curve (test split, every detection)"] = base64.b64encode(f.read()).decode()
    figures[f"Confusion matrix (confidence >= {CONFIDENCE}, IoU >= {IOU_MATCH})"] = plot_confusion(
        matrix, added["confusion_matrix"]["labels"])
    figures[f"Test images: true boxes green, detections at confidence >= {CONFIDENCE} red"] = draw_grid(
        shown[:12], names)
    with open(os.path.join(report_dir, "report.html"), "w") as f:
        f.write(html_report({**metrics, **added}, figures))
    return added
