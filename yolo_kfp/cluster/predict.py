"""Predict: boxes of an exported ONNX model on images, run here (onnxruntime or OpenVINO) or by a server
that speaks KServe's v2 REST inference protocol (OpenVINO Model Server on OpenShift AI).

The export step checks the ONNX model through Ultralytics' predictor; serving has no Ultralytics, so
this module prepares and decodes the tensors itself, the way that predictor does for a fixed-size
model: letterboxed (resized to fit, centred on grey 114), RGB, 0-1 floats in; ``[1, 4 + classes,
anchors]`` out (centre, size, one score per class), best class per anchor, class-aware NMS.
"""

import ast
import glob
import http.client
import importlib.util
import json
import math
import os
import re
import ssl
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass

import numpy as np

from yolo_kfp.infra.image_files import readable, too_many_pixels
from yolo_kfp.infra.urls import redact, refuse_credentials_in, refuse_plain_http_token, urlopen
from yolo_kfp.model.analysis import CONFIDENCE, iou
from yolo_kfp.model.export import SERVING_NAME
from yolo_kfp.model.ultralytics_env import disable_onnxruntime_telemetry

NMS_IOU = 0.7  # Ultralytics' predict default
TIMEOUT = 10.0  # seconds a server may stay silent
GLOB_MAGIC = re.compile(r"[*?[]")
IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")  # in a folder or a glob's matches
# Where a folder holds its model: run-local's output, an export step's output, a published version
MODEL_PLACES = ("model.onnx", os.path.join(SERVING_NAME, "1", "model.onnx"),
                os.path.join("serving", SERVING_NAME, "1", "model.onnx"))
MAX_DETECTIONS = 300  # per image, as Ultralytics
CLASS_OFFSET = 7680  # Ultralytics' max_wh: boxes of different classes never overlap in NMS
ENGINES = ("onnxruntime", "openvino")


def check_settings(*, conf: float | None = None, nms_iou: float | None = None, timeout: float | None = None) -> None:
    """Thresholds are fractions and a server is waited for a while: those given are checked before any work."""
    for flag, value in (("--conf", conf), ("--iou", nms_iou)):
        if value is not None and not 0 <= value <= 1:
            raise ValueError(f"{flag} {value:g} is not between 0 and 1: give a fraction")
    if timeout is not None and not 0 < timeout < math.inf:
        raise ValueError(f"--timeout {timeout:g} is not a number of seconds above 0")


def image_paths(given: list[str]) -> list[str]:
    """The images that each of ``given`` names: a file, a folder (the images in it, by name) or a glob.
    Each must be whole: a truncated image would be decoded with a grey rest and give boxes of half an image."""
    paths = [path for item in given for path in _images_of(item)]
    for path in paths:  # before anything decodes one
        problem = too_many_pixels(path)
        if problem:
            raise ValueError(problem)
    broken = [path for path in paths if not readable(path)]
    if broken:
        raise ValueError(f"not a whole image (empty, truncated or corrupt): {', '.join(broken)}")
    return paths


def _images_of(item: str) -> list[str]:
    if os.path.isfile(item):
        return [item]
    if os.path.isdir(item):
        found = sorted(entry.path for entry in os.scandir(item)
                       if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES))
        if not found:
            raise ValueError(f"no images in the folder {item} (none of {' '.join(IMAGE_SUFFIXES)})")
        return found
    if GLOB_MAGIC.search(item):
        found = sorted(path for path in glob.glob(item, recursive=True)
                       if os.path.isfile(path) and path.lower().endswith(IMAGE_SUFFIXES))
        if not found:
            raise FileNotFoundError(f"no image matches {item} (none of {' '.join(IMAGE_SUFFIXES)})")
        return found
    raise FileNotFoundError(f"no such image: {item} (give an image, a folder of images or a glob)")


def onnx_model(given: str) -> str:
    """The ONNX file ``given`` names: the file, or the model.onnx of a folder that run-local, the export step
    or publish wrote."""
    if os.path.isdir(given):
        for place in MODEL_PLACES:
            if os.path.isfile(os.path.join(given, place)):
                return os.path.join(given, place)
        raise FileNotFoundError(f"no model in the folder {given}: it holds none of {', '.join(MODEL_PLACES)} (give "
                                "a model.onnx, or the folder run-local or 'yolo-kfp step export' wrote)")
    if not os.path.isfile(given):
        raise FileNotFoundError(f"no such model: {given} (run-local leaves model.onnx in its --output-dir)")
    if not given.endswith(".onnx"):
        raise ValueError(f"predict --model runs an exported model.onnx, not {given}: export it first with "
                         "'yolo-kfp step export --model MODEL --output-dir DIR' (at the size it was trained at), "
                         "then predict --model DIR")
    return given


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


def decode(output: np.ndarray, image: Letterboxed, names: list[str], conf: float = CONFIDENCE,
           nms_iou: float = NMS_IOU) -> list[Detection]:
    """The model's ``[1, 4 + classes, anchors]`` output -> detections in the original image's pixels."""
    rows = np.asarray(output, dtype=np.float32).reshape(output.shape[-2], output.shape[-1]).T
    if rows.shape[1] != 4 + len(names):
        raise ValueError(f"the model scores {rows.shape[1] - 4} classes, but {len(names)} names were given: {names}")
    classes = rows[:, 4:].argmax(1)
    scores = rows[np.arange(len(rows)), 4 + classes]
    kept = scores > conf
    rows, classes, scores = rows[kept], classes[kept], scores[kept]
    centre, half = rows[:, :2], rows[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    chosen = _nms(boxes + classes[:, None] * CLASS_OFFSET, scores, nms_iou)[:MAX_DETECTIONS]
    left, top = image.offset
    height, width = image.shape
    boxes = (boxes[chosen] - [left, top, left, top]) / image.scale
    boxes = boxes.clip(0, [width, height, width, height])
    return [Detection(int(c), names[int(c)], float(s), _box(b))
            for c, s, b in zip(classes[chosen], scores[chosen], boxes, strict=True)]


def _box(row: np.ndarray) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in row)
    return x0, y0, x1, y1


def model_names_and_size(model: str) -> tuple[list[str], tuple[int, int]]:
    """Class names (Ultralytics writes them into the ONNX metadata as a dict's repr) and input height, width:
    the input's fixed size, or for a model exported with dynamic height and width the size it was exported at."""
    import onnx
    from google.protobuf.message import DecodeError

    from yolo_kfp.model.image_size import trained_imgsz

    if os.path.getsize(model) == 0:
        raise ValueError(f"{model} is empty (0 bytes): export the model again")
    try:
        proto = onnx.load(model, load_external_data=False)
    except DecodeError:
        raise ValueError(f"{model} is not an ONNX model (it does not parse): give the model.onnx that "
                         "'yolo-kfp step export' or run-local wrote") from None
    metadata = {p.key: p.value for p in proto.metadata_props}
    if "names" not in metadata:
        raise ValueError(f"{model} has no class names in its metadata: not an Ultralytics export")
    names = _class_names(model, metadata["names"])
    dims = proto.graph.input[0].type.tensor_type.shape.dim if proto.graph.input else []
    if len(dims) != 4:
        raise ValueError(f"{model} does not take a batch of images (its input is not [batch, 3, height, width])")
    height, width = (d.dim_value for d in dims[2:4])  # 0 where dynamic
    if not (height and width):
        exported = trained_imgsz(model)
        if exported is None:
            raise ValueError(f"{model} has a dynamic input size and records no imgsz: export it again with Ultralytics")
        height, width = exported, exported
    return names, (height, width)


def _class_names(model: str, text: str) -> list[str]:
    """Ultralytics' ``{0: 'Bicycle', ...}``, read as a literal (never run), in class order."""
    try:
        names = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        names = None
    if not (isinstance(names, dict) and sorted(names) == list(range(len(names)))):
        raise ValueError(f"{model}'s class names are not an Ultralytics export's ({{0: 'name', ...}}): {text[:200]!r}")
    return [str(names[i]) for i in range(len(names))]


def check_classes(classes: list[str], names: list[str], model: str) -> None:
    """``classes`` (predict's ``--classes``) must be the model's own, in its order: they name its outputs."""
    unknown = [name for name in classes if name not in names]
    if unknown:
        raise ValueError(f"--classes {', '.join(unknown)}: not a class of {model}, whose classes are "
                         f"{', '.join(names)} (with --model leave --classes out: the model names its classes)")
    if classes != names:
        raise ValueError(f"--classes {', '.join(classes)} are not {model}'s classes in its order: "
                         f"{', '.join(names)} (with --model leave --classes out: the model names its classes)")


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
    """``model`` loaded by ``engine``: a function from the input tensor to the model's output."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if importlib.util.find_spec(engine) is None:
        raise ValueError(f"the {engine} engine needs its package: pip install {engine}")
    try:
        if engine == "onnxruntime":
            disable_onnxruntime_telemetry()
            import onnxruntime

            session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
            input_name = session.get_inputs()[0].name
            return lambda tensor: session.run(None, {input_name: tensor})[0]
        openvino = import_openvino()
        # f32: on CPUs with bf16 (AMX) OpenVINO would otherwise compute in bf16, not what export checked
        compiled = openvino.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return lambda tensor: compiled(tensor)[compiled.output(0)]
    except Exception as error:  # onnxruntime's errors (InvalidGraph, Fail, ...) derive from Exception alone
        raise ValueError(f"{engine} cannot load {model}, which parses as ONNX but is no model it runs: "
                         f"{' '.join(str(error).split())[:300]}") from None


def predict_local(*, model: str, images: list[str], engine: str = "onnxruntime", conf: float = CONFIDENCE,
                  nms_iou: float = NMS_IOU, classes: list[str] | None = None) -> list[list[Detection]]:
    """Detections per image of the ONNX file ``model`` (its class names and input size from its metadata);
    ``classes``, if given, must be those names."""
    check_settings(conf=conf, nms_iou=nms_iou)
    names, size = model_names_and_size(model)
    if classes is not None:
        check_classes(classes, names, model)
    return _detect_each(_local_runner(model, engine), images, size, names, conf, nms_iou)


def _detect_each(run, images: list[str], size: tuple[int, int], names: list[str], conf: float,
                 nms_iou: float) -> list[list[Detection]]:
    """Each image letterboxed to ``size``, through ``run`` (a tensor in, the model's output out), decoded."""
    results = []
    for path in images:
        image = letterbox(path, size)
        results.append(decode(run(image.tensor), image, names, conf, nms_iou))
    return results


def _request(url: str, token: str, context: ssl.SSLContext | None, timeout: float, body: dict | None = None) -> dict:
    """The JSON object ``url`` answers; else one line naming the URL and what answered, or that nothing did."""
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    data = None if body is None else json.dumps(body).encode()
    shown = redact(url)
    try:
        with urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=timeout,
                     context=context) as answer:
            status, kind, text = answer.status, answer.headers.get_content_type(), answer.read()
    except urllib.error.HTTPError as error:  # the server's reason is in the body ({"error": ...} in KServe v2)
        raise ConnectionError(f"{shown} answered {error.code} {error.reason}: {_excerpt(error)}") from None
    except urllib.error.URLError as error:  # before a request was sent: refused, no such host, TLS
        if isinstance(error.reason, TimeoutError):
            raise _silent(shown, timeout) from None
        reason = getattr(error.reason, "strerror", None) or error.reason
        raise ConnectionError(f"cannot reach {shown}: {redact(reason)}") from None
    except TimeoutError:
        raise _silent(shown, timeout) from None
    except (OSError, http.client.HTTPException) as error:  # closed, or answered something that is not HTTP
        raise ConnectionError(f"{shown} gave no HTTP answer: {type(error).__name__} {redact(error)}") from None
    try:
        answer = json.loads(text)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise ConnectionError(f"{shown} answered {status} with no JSON object ({kind}): "
                              f"{redact(text[:300].decode(errors='replace'))}")
    return answer


def _excerpt(error: urllib.error.HTTPError) -> str:
    try:
        return redact(error.read()[:500].decode(errors="replace"))
    except OSError:  # the body never came
        return "(no body)"


def _silent(shown_url: str, timeout: float) -> TimeoutError:
    return TimeoutError(f"{shown_url} did not answer within {timeout:g} s (--timeout)")


def _model_input(metadata: dict, url: str) -> tuple[str, tuple[int, int], str]:
    """The input's name and height, width and the output's name from KServe v2 model metadata."""
    try:
        (model_input,) = metadata["inputs"]
        name, shape = str(model_input["name"]), [int(d) for d in model_input["shape"]]
        output_name = str(metadata["outputs"][0]["name"])
    except (KeyError, IndexError, TypeError, ValueError):
        raise ConnectionError(f"{redact(url)} answered JSON that is not a KServe v2 model's metadata (one input "
                              f"with a name and a shape, outputs): {redact(json.dumps(metadata)[:300])}") from None
    if len(shape) != 4 or min(shape[2:]) < 1:
        raise ConnectionError(f"{redact(url)} serves a model whose input {shape} is not [batch, 3, height, width] "
                              "of a fixed size: not an export of this project")
    return name, (shape[2], shape[3]), output_name


def check_url(url: str, token: str, allow_plain_http_token: bool) -> None:
    """A KServe v2 model URL, without credentials in it, that a token goes to over TLS unless allowed otherwise."""
    if not url.startswith(("http://", "https://")) or "/v2/models/" not in url:
        raise ValueError(f"--url must be a KServe v2 model URL, http(s)://HOST/v2/models/NAME, not {redact(url)!r}")
    refuse_credentials_in("--url", url, "pass a token by --token-file")
    refuse_plain_http_token(url, token, allow_plain_http_token)


def predict_remote(*, url: str, images: list[str], names: list[str], token: str = "", ca_bundle: str = "",
                   conf: float = CONFIDENCE, nms_iou: float = NMS_IOU, timeout: float = TIMEOUT,
                   allow_plain_http_token: bool = False) -> list[list[Detection]]:
    """Detections per image from the KServe v2 model at ``url`` (``http://host/v2/models/<name>``).

    The server's model metadata gives the input's name and size; v2 metadata has no class names, so
    they are given (in the order the model was trained with: the pipeline's ``classes``). A token goes
    over TLS only, unless ``allow_plain_http_token``, and never to another origin. Each request waits
    ``timeout`` seconds at most for the server to say something.
    """
    check_settings(conf=conf, nms_iou=nms_iou, timeout=timeout)
    check_url(url, token, allow_plain_http_token)
    context = ssl.create_default_context(cafile=ca_bundle or None) if url.startswith("https://") else None
    url = url.rstrip("/")
    input_name, size, output_name = _model_input(_request(url, token, context, timeout), url)

    def infer(tensor: np.ndarray) -> np.ndarray:
        answer = _request(f"{url}/infer", token, context, timeout, {"inputs": [
            {"name": input_name, "shape": list(tensor.shape), "datatype": "FP32", "data": tensor.ravel().tolist()}]})
        try:
            (output,) = [o for o in answer["outputs"] if o["name"] == output_name]
            return np.array(output["data"], dtype=np.float32).reshape(output["shape"])
        except (KeyError, TypeError, ValueError):
            raise ConnectionError(f"{redact(url)}/infer answered without the output {output_name!r} as KServe v2 "
                                  f"describes it: {redact(json.dumps(answer)[:300])}") from None

    return _detect_each(infer, images, size, names, conf, nms_iou)
