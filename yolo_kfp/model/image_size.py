"""The image size a model is run at: the one it was trained at, unless told otherwise.

A YOLO model run at another size than it was trained at still runs and still reports figures, only
wrong ones (the demo's model, trained at 160 px, scores mAP50 0.36 at 640 instead of 0.76). So the
evaluate and export steps and ``predict`` take the size the model records: an Ultralytics checkpoint
its training arguments (``train_args["imgsz"]``), an exported ONNX model its metadata (``imgsz``).
A size asked for explicitly is honoured, with a warning when it differs from the recorded one.
"""

import ast
import logging

from yolo_kfp.params.validation import MAX_IMGSZ

log = logging.getLogger(__name__)

ULTRALYTICS_IMGSZ = 640  # what Ultralytics runs at when neither the model nor the caller says


def _square_size(value, model: str) -> int:
    """``value`` (an int, or Ultralytics' [height, width]) as one side; ValueError if it is no size to run at."""
    sides = value if isinstance(value, (list, tuple)) else [value]
    if not sides or any(not isinstance(s, int) or isinstance(s, bool) or not 0 < s <= MAX_IMGSZ for s in sides):
        raise ValueError(f"{model} records image size {value!r}, not a size from 1 to {MAX_IMGSZ}: it was not "
                         "written by Ultralytics; use a model that was")
    if len(set(sides)) != 1:
        raise ValueError(f"{model} records a non-square image size {value!r}: the steps run square images; "
                         "export it again with one imgsz")
    return sides[0]


def _onnx_imgsz(model: str):
    import onnx
    from google.protobuf.message import DecodeError

    try:
        metadata = {p.key: p.value for p in onnx.load(model, load_external_data=False).metadata_props}
    except DecodeError:
        raise ValueError(f"{model} is not an ONNX model (it does not parse as one)") from None
    if "imgsz" not in metadata:
        return None
    try:
        return ast.literal_eval(metadata["imgsz"])  # Ultralytics writes the list's repr, e.g. "[160, 160]"
    except (ValueError, SyntaxError):
        return metadata["imgsz"]  # refused by _square_size, with the text named


def trained_imgsz(model: str) -> int | None:
    """The image size the ``.pt`` checkpoint was trained at or the ``.onnx`` model was exported at;
    ``None`` where the file records none (a checkpoint that was never trained)."""
    if model.endswith(".onnx"):
        recorded = _onnx_imgsz(model)
    else:
        from yolo_kfp.infra.model_file import read_checkpoint  # no PyTorch, no code from the pickle run

        train_args = read_checkpoint(model).get("train_args")
        recorded = train_args.get("imgsz") if isinstance(train_args, dict) else None
    return None if recorded is None else _square_size(recorded, model)


def imgsz_for(model: str, requested: int | None) -> int:
    """The size to run ``model`` at: ``requested`` where given (warned about when the model was trained
    at another), else the size it was trained at (Ultralytics' 640 where it records none)."""
    trained = trained_imgsz(model)
    if requested is None:
        if trained is None:
            log.info("%s records no training image size: running it at Ultralytics' %d px", model, ULTRALYTICS_IMGSZ)
            return ULTRALYTICS_IMGSZ
        log.info("running %s at %d px, the size it was trained at", model, trained)
        return trained
    if trained is not None and requested != trained:
        log.warning("running %s at imgsz %d px as asked, but it was trained at %d px: its figures and boxes "
                    "can be far from the trained model's (leave imgsz out to run it at %d)",
                    model, requested, trained, trained)
    return requested
