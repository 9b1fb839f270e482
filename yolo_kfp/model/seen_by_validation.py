"""What Ultralytics' validation computed its mAP from, kept for the COCO files: its ground truth (the labels
as its dataset read them), each image's size as it loaded it, and every detection it kept, per test image."""

import numpy as np

from yolo_kfp.model.coco import EvaluatedImage


class SeenByValidation:
    """Filled by the validator ``recording_validator`` makes, while it validates."""

    def __init__(self) -> None:
        self.detections: dict[str, np.ndarray] = {}  # image file -> rows (class, confidence, x0, y0, x1, y1), pixels
        self.sizes: dict[str, tuple[int, int]] = {}  # image file -> (height, width)
        self.labels: list[dict] = []  # Ultralytics' labels: im_file, cls, bboxes (normalized xywh)
        self.thresholds: dict[str, float | int] = {}  # the evaluation's own: confidence, NMS IoU, per-image maximum

    def evaluated_images(self) -> list[EvaluatedImage]:
        """Every validated image, by file name, with its true boxes and detections in pixels."""
        images = []
        for label in sorted(self.labels, key=lambda label: label["im_file"]):
            height, width = self.sizes[label["im_file"]]
            boxes = np.asarray(label["bboxes"], dtype=float).reshape(-1, 4) * [width, height, width, height]
            corners = np.column_stack([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2])
            truth = np.column_stack([np.asarray(label["cls"], dtype=float).reshape(-1), corners])
            found = self.detections.get(label["im_file"], np.zeros((0, 6)))
            images.append(EvaluatedImage(label["im_file"], width, height, truth, found))
        return images


def recording_validator(seen: SeenByValidation):
    """Ultralytics' detection validator, recording into ``seen``. With ``save_json`` set, Ultralytics hands
    each image's detections, scaled to the original image, to ``pred_to_json``; kept here instead of its own
    JSON (which only its COCO and LVIS datasets evaluate), so it writes no file and runs no COCO tool itself."""
    from ultralytics.models.yolo.detect import DetectionValidator

    class RecordingValidator(DetectionValidator):
        def update_metrics(self, preds, batch) -> None:
            super().update_metrics(preds, batch)
            for image, (height, width) in zip(batch["im_file"], batch["ori_shape"], strict=True):
                seen.sizes[image] = int(height), int(width)

        def pred_to_json(self, predn, pbatch) -> None:
            columns = (predn["cls"][:, None], predn["conf"][:, None], predn["bboxes"])
            seen.detections[pbatch["im_file"]] = np.column_stack([c.cpu().numpy() for c in columns]).astype(float)

        def finalize_metrics(self) -> None:
            super().finalize_metrics()
            assert self.dataloader is not None  # set by the validation that is ending
            seen.labels = list(self.dataloader.dataset.labels)
            seen.thresholds = {"confidence": float(self.args.conf), "nms_iou": float(self.args.iou),
                               "max_per_image": int(self.args.max_det)}

    return RecordingValidator
