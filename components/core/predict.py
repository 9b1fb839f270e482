"""Predict: boxes of an exported ONNX model on images, run here (onnxruntime or OpenVINO) or by a server
that speaks KServe's v2 REST inference protocol (OpenVINO Model Server on OpenShift AI).

The export step checks the ONNX model through Ultralytics' predictor; serving has no Ultralytics, so
this module prepares and decodes the tensors itself, the way that predictor does for a fixed-size
model: letterboxed (resized to fit, centred on grey 114), RGB, 0-1 floats in; ``[1, 4 + classes,
anchors]`` out (centre, size, one score per class), best class per anchor, class-aware NMS.
"""

import ast
import importlib.util
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass

import numpy as np
from yolo_kfp.components.core.analysis import CONFIDENCE, iou
from yolo_kfp.components.core.urls import redact, refuse_credentials_in, refuse_plain_http_token, urlopen

NMS_IOU = 0.7  # Ultralytics' predict default
MAX_DETECTIONS = 300  # per image, as Ultralytics
CLASS_OFFSET = 7680  # Ultralytics' max_wh: boxes of different classes never overlap in NMS
ENGINES = ("onnxruntime", "openvino")


@dataclass(frozen=True)
class Detection:
    class_id: int
    name: str
    confidence: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in the image's pixels


@dataclass(frozen=True)
class Letterboxed:
    tensor: np.ndarray  # [1, 3, height, width] float32
    scale: float
    offset: tuple[int, int]  # left, top padding
    shape: tuple[int, int]  # the image's height, width


def letterbox(image_path: str, size: tuple[int, int]) -> Letterboxed:
    """As Ultralytics' ``LetterBox(auto=False)``: same rounding, OpenCV's bilinear resize, padding split evenly."""
    import cv2

    image = cv2.imread(image_path)  # BGR, as Ultralytics reads it
    if image is None:
        raise ValueError(f"not an image OpenCV reads: {image_path}")
    height, width = image.shape[:2]
    scale = min(size[0] / height, size[1] / width)
    new_width, new_height = max(round(width * scale), 1), max(round(height * scale), 1)
    if (new_width, new_height) != (width, height):
        image = cv2.resize(image, (new_width, new_height), interpolation=cv2.INTER_LINEAR)
    left, top = round((size[1] - new_width) / 2 - 0.1), round((size[0] - new_height) / 2 - 0.1)
    image = cv2.copyMakeBorder(image, top, size[0] - new_height - top, left, size[1] - new_width - left,
                               cv2.BORDER_CONSTANT, value=(114, 114, 114))
    tensor = np.ascontiguousarray(image[..., ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255
    return Letterboxed(tensor, scale, (left, top), (height, width))


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Greedy NMS, highest score first (torchvision's ``nms``)."""
    order, keep = np.argsort(-scores, kind="stable"), []
    while len(order):
        best, order = order[0], order[1:]
        keep.append(int(best))
        order = order[iou(boxes[[best]], boxes[order])[0] <= threshold]
    return keep


def decode(output: np.ndarray, image: Letterboxed, names: list[str], conf: float = CONFIDENCE) -> list[Detection]:
    """The model's ``[1, 4 + classes, anchors]`` output -> detections in the original image's pixels."""
    rows = np.asarray(output, dtype=np.float32).reshape(output.shape[-2:]).T
    if rows.shape[1] != 4 + len(names):
        raise ValueError(f"the model scores {rows.shape[1] - 4} classes, but {len(names)} names were given: {names}")
    classes = rows[:, 4:].argmax(1)
    scores = rows[np.arange(len(rows)), 4 + classes]
    kept = scores > conf
    rows, classes, scores = rows[kept], classes[kept], scores[kept]
    centre, half = rows[:, :2], rows[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    chosen = _nms(boxes + classes[:, None] * CLASS_OFFSET, scores, NMS_IOU)[:MAX_DETECTIONS]
    left, top = image.offset
    height, width = image.shape
    boxes = (boxes[chosen] - [left, top, left, top]) / image.scale
    boxes = boxes.clip(0, [width, height, width, height])
    return [Detection(int(c), names[int(c)], float(s), tuple(float(v) for v in b))
            for c, s, b in zip(classes[chosen], scores[chosen], boxes)]


def model_names_and_size(model: str) -> tuple[list[str], tuple[int, int]]:
    """Class names (Ultralytics writes them into the ONNX metadata as a dict's repr) and input height, width:
    the input's fixed size, or for a model exported with dynamic height and width the size it was exported at."""
    import onnx
    from yolo_kfp.components.core.image_size import trained_imgsz

    proto = onnx.load(model, load_external_data=False)
    metadata = {p.key: p.value for p in proto.metadata_props}
    if "names" not in metadata:
        raise ValueError(f"{model} has no class names in its metadata: not an Ultralytics export")
    names = ast.literal_eval(metadata["names"])
    height, width = (d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim[2:4])  # 0 where dynamic
    if not (height and width):
        exported = trained_imgsz(model)
        if exported is None:
            raise ValueError(f"{model} has a dynamic input size and records no imgsz: export it again with Ultralytics")
        height, width = exported, exported
    return [names[i] for i in sorted(names)], (height, width)


def import_openvino():
    """``openvino``, imported without its usage telemetry: on import its converter reports to Google
    Analytics unless a consent file in the home folder opts out or ``CI`` is set, which it honours."""
    if "openvino" not in sys.modules:
        previous = os.environ.get("CI")
        os.environ["CI"] = "true"
        try:
            import openvino  # noqa: F401
        finally:
            if previous is None:
                del os.environ["CI"]
            else:
                os.environ["CI"] = previous
    return sys.modules["openvino"]


def _local_runner(model: str, engine: str):
    if engine in ENGINES and importlib.util.find_spec(engine) is None:
        raise ValueError(f"the {engine} engine needs its package: pip install {engine}")
    if engine == "onnxruntime":
        import onnxruntime

        session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name
        return lambda tensor: session.run(None, {input_name: tensor})[0]
    if engine == "openvino":
        openvino = import_openvino()
        # f32: on CPUs with bf16 (AMX) OpenVINO would otherwise compute in bf16, not what export checked
        compiled = openvino.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return lambda tensor: compiled(tensor)[compiled.output(0)]
    raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")


def predict_local(*, model: str, images: list[str], engine: str = "onnxruntime",
                  conf: float = CONFIDENCE) -> list[list[Detection]]:
    """Detections per image of the ONNX file ``model`` (its class names and input size from its metadata)."""
    names, size = model_names_and_size(model)
    return _detect_each(_local_runner(model, engine), images, size, names, conf)


def _detect_each(run, images: list[str], size: tuple[int, int], names: list[str], conf: float) -> list[list[Detection]]:
    """Each image letterboxed to ``size``, through ``run`` (a tensor in, the model's output out), decoded."""
    results = []
    for path in images:
        image = letterbox(path, size)
        results.append(decode(run(image.tensor), image, names, conf))
    return results


def _request(url: str, token: str, context: ssl.SSLContext | None, body: dict | None = None) -> dict:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    data = None if body is None else json.dumps(body).encode()
    try:
        with urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=60, context=context) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as error:  # the server's reason is in the body ({"error": ...} in KServe v2)
        raise ConnectionError(f"{url} answered {error.code} {error.reason}: "
                              f"{redact(error.read()[:500].decode(errors='replace'))}") from None
    except urllib.error.URLError as error:
        raise ConnectionError(f"cannot reach {url}: {redact(error.reason)}") from None


def predict_remote(*, url: str, images: list[str], names: list[str], token: str = "", ca_bundle: str = "",
                   conf: float = CONFIDENCE, allow_plain_http_token: bool = False) -> list[list[Detection]]:
    """Detections per image from the KServe v2 model at ``url`` (``http://host/v2/models/<name>``).

    The server's model metadata gives the input's name and size; v2 metadata has no class names, so
    they are given (in the order the model was trained with: the pipeline's ``classes``). A token goes
    over TLS only, unless ``allow_plain_http_token``, and never to another origin.
    """
    if not url.startswith(("http://", "https://")) or "/v2/models/" not in url:
        raise ValueError(f"--url must be a KServe v2 model URL, http(s)://HOST/v2/models/NAME, not {redact(url)!r}")
    refuse_credentials_in("--url", url, "pass a token by --token-file")
    refuse_plain_http_token(url, token, allow_plain_http_token)
    context = ssl.create_default_context(cafile=ca_bundle or None) if url.startswith("https://") else None
    url = url.rstrip("/")
    metadata = _request(url, token, context)
    (model_input,), output_name = metadata["inputs"], metadata["outputs"][0]["name"]
    size = tuple(int(d) for d in model_input["shape"][2:])

    def infer(tensor: np.ndarray) -> np.ndarray:
        answer = _request(f"{url}/infer", token, context, {"inputs": [
            {"name": model_input["name"], "shape": list(tensor.shape), "datatype": "FP32",
             "data": tensor.ravel().tolist()}]})
        (output,) = [o for o in answer["outputs"] if o["name"] == output_name]
        return np.array(output["data"], dtype=np.float32).reshape(output["shape"])

    return _detect_each(infer, images, size, names, conf)
