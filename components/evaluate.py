"""The evaluate step's KFP component: a thin wrapper around ``yolo_kfp.model.evaluate``."""

from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from yolo_kfp.components.step_settings import TRAIN_IMAGE, Resources, component


# On a CPU node: a test batch of 256 images at 640 px, with the model's activations, takes a few GB.
@component(TRAIN_IMAGE, timeout_hours=4, resources=Resources(cpu="2", cpu_limit="4", memory="8Gi"))
def evaluate(dataset: Input[Dataset], model: Input[Model], imgsz: int, batch: int, metrics: Output[Metrics],
             metrics_json: Output[Artifact], confusion: Output[ClassificationMetrics], report: Output[HTML],
             predictions: Output[Dataset]):
    """Evaluates the trained model on the held-out test split.

    Logs Ultralytics' mAP50, mAP50-95, precision, recall and per-class AP50 and COCO's figures
    (pycocotools) as KFP metrics, the confusion matrix (classes plus background) as classification
    metrics, an HTML report (PR curve, confusion matrix, per-class table, COCO's figures, test images with
    true and predicted boxes), the figures as JSON, and the test split's ground truth and every detection
    the mAP was computed from as COCO JSON (pycocotools and FiftyOne load it).

    Args:
        dataset: The YOLO dataset (its test split is evaluated).
        model: The train step's model.
        metrics: mAP50, mAP50-95, precision, recall, per-class AP50 and COCO's figures (coco_AP, coco_AP50, ...)
            as KFP metrics.
        metrics_json: The same figures as metrics.json.
        confusion: The confusion matrix (classes and background).
        report: The HTML report.
        predictions: The test split's ground truth and every detection the mAP was computed from, as COCO JSON.
    """
    import json
    import logging
    import os
    import shutil
    import tempfile

    from yolo_kfp.infra.packing import materialized
    from yolo_kfp.model.coco import GROUND_TRUTH, PREDICTIONS
    from yolo_kfp.model.evaluate import evaluate_model
    from yolo_kfp.model.figures import recorded_figures

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with materialized(dataset.path) as data_dir, tempfile.TemporaryDirectory() as out:
        result = evaluate_model(data_dir=data_dir, weights=os.path.join(model.path, "weights", "best.pt"), imgsz=imgsz,
                                batch=batch, report_dir=out)
        shutil.copyfile(os.path.join(out, "report.html"), report.path)
        os.makedirs(predictions.path, exist_ok=True)
        for name in (GROUND_TRUTH, PREDICTIONS):
            shutil.copyfile(os.path.join(out, name), os.path.join(predictions.path, name))
    for name, value in recorded_figures(result).items():
        metrics.log_metric(name, value)
    for name, values in result["per_class"].items():
        if values["ap50"] is not None:
            metrics.log_metric(f"ap50_{name}", values["ap50"])
    confusion.log_confusion_matrix(result["confusion_matrix"]["labels"], result["confusion_matrix"]["matrix"])
    with open(metrics_json.path, "w") as f:
        json.dump(result, f, indent=2)
    metrics_json.metadata["seconds"] = result["seconds"]
