"""The test split's figures by name: Ultralytics' and COCO's, what sets them apart, and which of them are
recorded beside the run (KFP's metrics, MLflow, the Model Registry, the published manifest). No numpy here:
the CLI and the publish step import it."""

ULTRALYTICS_FIGURES = ("map50", "map50_95", "precision", "recall")  # metrics.json's top-level figures
# pycocotools' COCOeval.stats, in its order, under the names COCO's detection evaluation gives them
# (cocodataset.org/#detection-eval); areas in pixels of the original image.
COCO_FIGURES = {
    "AP": "AP at IoU=.50:.05:.95 (COCO's primary metric)",
    "AP50": "AP at IoU=.50",
    "AP75": "AP at IoU=.75",
    "APsmall": "AP for small objects: area < 32²",
    "APmedium": "AP for medium objects: 32² < area < 96²",
    "APlarge": "AP for large objects: area > 96²",
    "AR1": "AR given 1 detection per image",
    "AR10": "AR given 10 detections per image",
    "AR100": "AR given 100 detections per image",
    "ARsmall": "AR for small objects: area < 32²",
    "ARmedium": "AR for medium objects: 32² < area < 96²",
    "ARlarge": "AR for large objects: area > 96²",
}
WHY_THEY_DIFFER = (
    "Ultralytics' mAP and COCO's AP are computed from the same detections but differ in method: Ultralytics "
    "extends each precision-recall curve to recall 1 and integrates it, COCO averages the precision at 101 "
    "recall points and counts none beyond the highest recall reached, keeps at most 100 detections an image "
    "and matches them to boxes in order of confidence; so they agree closely at IoU .50 and less across "
    "IoU .50 to .95.")


def recorded_figures(metrics: dict) -> dict[str, float]:
    """The test-split figures KFP's metrics, MLflow, the Model Registry and the published manifest get from
    ``metrics.json``: Ultralytics' and, where the evaluation computed them, COCO's (``coco_`` names; none
    for a size no true box has)."""
    figures = {name: float(metrics[name]) for name in ULTRALYTICS_FIGURES if metrics.get(name) is not None}
    figures.update({f"coco_{name}": float(value) for name, value in (metrics.get("coco") or {}).items()
                    if value is not None})
    return figures
