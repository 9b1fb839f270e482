"""Export: the trained model as ONNX in the layout serving platforms read, checked against PyTorch.

``<output>/<name>/1/model.onnx`` is what OpenVINO Model Server (``<base path>/<version>/model.onnx``)
and KServe's ONNX runtimes (``<repository>/<model>/1/model.onnx``) load. The image size is fixed,
the opset recorded, the class names are in the ONNX metadata (``names``). Before the step succeeds,
the ONNX model runs under onnxruntime on test images and its detections must match PyTorch's.
"""

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence

from yolo_kfp.model.analysis import CONFIDENCE, iou

log = logging.getLogger(__name__)

OPSET = 17
SERVING_NAME = "yolo-kfp"
CONF_TOLERANCE = 0.02  # a detection this close to the threshold may appear on one side only
IOU_TOLERANCE = 0.9


def _detections(weights: str, images: list[str], imgsz: int) -> list:
    from ultralytics import YOLO

    results = YOLO(weights, task="detect").predict(images, imgsz=imgsz, conf=CONFIDENCE, verbose=False)
    # Ultralytics types predict() as list[Results] | Tensor, Results.boxes as optional and a box field as Tensor |
    # ndarray: a detection model's predictions are Results whose boxes hold tensors.
    return [(r.boxes.cls.cpu().numpy(), r.boxes.conf.cpu().numpy(), r.boxes.xyxy.cpu().numpy())  # pyright: ignore[reportAttributeAccessIssue, reportOptionalMemberAccess]
            for r in results]


def _unmatched(mine, theirs) -> list[str]:
    """Confident detections of ``mine`` without a same-class, overlapping, equally confident twin in ``theirs``."""
    cls_a, conf_a, box_a = mine
    cls_b, conf_b, box_b = theirs
    overlaps = iou(box_a, box_b) if len(box_a) and len(box_b) else None
    problems = []
    for i in range(len(cls_a)):
        if conf_a[i] < CONFIDENCE + CONF_TOLERANCE:
            continue
        twins = [] if overlaps is None else [j for j in range(len(cls_b)) if cls_b[j] == cls_a[i]
                                             and overlaps[i, j] >= IOU_TOLERANCE
                                             and abs(conf_b[j] - conf_a[i]) <= CONF_TOLERANCE]
        if not twins:
            problems.append(f"class {int(cls_a[i])} conf {conf_a[i]:.3f} at {box_a[i].round(1).tolist()}")
    return problems


def compare_detections(weights: str, onnx_path: str, images: list[str], imgsz: int) -> list[str]:
    """Differences between the PyTorch and the ONNX model's detections on ``images`` (empty: they agree)."""
    problems = []
    pytorch, onnx = _detections(weights, images, imgsz), _detections(onnx_path, images, imgsz)
    for path, pt, ox in zip(images, pytorch, onnx, strict=True):
        problems += [f"{os.path.basename(path)}: only PyTorch has {p}" for p in _unmatched(pt, ox)]
        problems += [f"{os.path.basename(path)}: only ONNX has {p}" for p in _unmatched(ox, pt)]
    return problems


def export_onnx(*, weights: str, output_dir: str, imgsz: int | None = None, check_images: Sequence[str] = ()) -> dict:
    """Writes ``<output_dir>/yolo-kfp/1/model.onnx`` and ``export.json``, at ``imgsz`` or, without it, at the
    size the model was trained at; fails if the check finds differences."""
    from yolo_kfp.model.image_size import imgsz_for
    from yolo_kfp.model.ultralytics_env import configure_offline

    imgsz = imgsz_for(weights, imgsz)
    configure_offline()
    import onnx
    from ultralytics import YOLO

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="onnx-") as work:
        local = shutil.copyfile(weights, os.path.join(work, "model.pt"))  # Ultralytics writes beside its input
        exported = YOLO(local).export(format="onnx", imgsz=imgsz, opset=OPSET, simplify=True, dynamic=False)
        target = os.path.join(output_dir, SERVING_NAME, "1", "model.onnx")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.move(exported, target)
    metadata = {p.key: p.value for p in onnx.load(target, load_external_data=False).metadata_props}
    problems = compare_detections(weights, target, list(check_images), imgsz) if check_images else []
    if problems:
        raise ValueError(f"the ONNX model's detections differ from PyTorch's on {len(problems)} boxes: "
                         + "; ".join(problems[:10]))
    info = {"path": f"{SERVING_NAME}/1/model.onnx", "opset": OPSET, "imgsz": imgsz, "names": metadata.get("names"),
            "checked_images": len(check_images), "confidence": CONFIDENCE,
            "seconds": round(time.monotonic() - started, 2)}
    with open(os.path.join(output_dir, "export.json"), "w") as f:
        json.dump(info, f, indent=2)
    log.info("exported %s (opset %d, %d px); detections match PyTorch on %d test images", target, OPSET, imgsz,
             len(check_images))
    return info
