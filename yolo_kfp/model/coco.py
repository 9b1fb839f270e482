"""The test split as COCO files, and COCO's own figures computed from them.

``ground_truth.json`` and ``predictions.json`` hold exactly what Ultralytics' validation computed its mAP
from: its ground truth and every detection it kept (confidence >= its evaluation threshold, up to its
per-image maximum), so that pycocotools, FiftyOne or any COCO tool reproduces the run's figures from them.
COCO's figures are computed by pycocotools, COCO's reference implementation, from those very files.
"""

import contextlib
import io
import json
import os
from dataclasses import dataclass

import numpy as np

from yolo_kfp.model.figures import COCO_FIGURES

GROUND_TRUTH, PREDICTIONS = "ground_truth.json", "predictions.json"


@dataclass
class EvaluatedImage:
    """One test image as Ultralytics' validation saw it: its size, its true boxes and its detections."""

    path: str
    width: int
    height: int
    truth: np.ndarray  # rows (class, x0, y0, x1, y1), pixels
    detections: np.ndarray  # rows (class, confidence, x0, y0, x1, y1), pixels

    def normalized(self, confidence: float) -> tuple[np.ndarray, np.ndarray]:
        """The true boxes and the detections at ``confidence`` or above, in fractions of the image's size."""
        scale = np.array([self.width, self.height] * 2)
        shown = self.detections[self.detections[:, 1] >= confidence]
        return (np.column_stack([self.truth[:, :1], self.truth[:, 1:5] / scale]),
                np.column_stack([shown[:, :2], shown[:, 2:6] / scale]))


def write_coco_files(images: list[EvaluatedImage], names: list[str], output_dir: str) -> int:
    """Writes ``ground_truth.json`` and ``predictions.json`` (ids from 1, as COCO numbers them), for
    pycocotools, FiftyOne's COCODetectionDataset and ``add_coco_labels``; returns how many detections."""
    truths, predictions = [], []
    for image_id, image in enumerate(images, 1):
        for row in image.truth:
            box = _coco_box(row[1:5])
            truths.append({"id": len(truths) + 1, "image_id": image_id, "category_id": int(row[0]) + 1,
                           "iscrowd": 0, "bbox": box, "area": round(box[2] * box[3], 4)})
        predictions.extend({"image_id": image_id, "category_id": int(row[0]) + 1, "score": round(float(row[1]), 5),
                            "bbox": _coco_box(row[2:6])} for row in image.detections)
    listed = [{"id": image_id, "file_name": os.path.basename(image.path), "width": image.width,
               "height": image.height} for image_id, image in enumerate(images, 1)]
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(names)]
    with open(os.path.join(output_dir, GROUND_TRUTH), "w") as f:
        json.dump({"images": listed, "annotations": truths, "categories": categories}, f)
    with open(os.path.join(output_dir, PREDICTIONS), "w") as f:
        json.dump(predictions, f)
    return len(predictions)


def _coco_box(box) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return [round(x0, 3), round(y0, 3), round(x1 - x0, 3), round(y1 - y0, 3)]


def coco_figures(folder: str) -> dict[str, float | None]:
    """COCO's figures (``figures.COCO_FIGURES``) by pycocotools from the COCO files in ``folder``; ``None``
    where COCO gives -1 (no true box of that size). pycocotools' own printing is kept out of the step's log."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(os.path.join(folder, GROUND_TRUTH))
        with open(os.path.join(folder, PREDICTIONS)) as f:
            found = json.load(f)
        # pycocotools' loadRes cannot take an empty list: no detection is a result with no annotation
        detections = truth.loadRes(found) if found else _no_detections(truth)
        evaluation = COCOeval(truth, detections, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = zip(COCO_FIGURES, evaluation.stats, strict=True)
    return {name: None if value < 0 else float(value) for name, value in stats}


def _no_detections(truth):
    from pycocotools.coco import COCO

    empty = COCO()
    empty.dataset = {"images": truth.dataset["images"], "categories": truth.dataset["categories"], "annotations": []}
    empty.createIndex()
    return empty
