"""Serving the exported model: OpenVINO (the engine of OpenVINO Model Server) detects what PyTorch
detects, and ``yolo-kfp predict`` prints the boxes of a local ONNX file or of a KServe v2 endpoint."""

import re

import numpy as np
import pytest
from conftest import CLASSES
from kserve_v2_standin import KServeV2Standin
from yolo_kfp.components.core.evaluate import held_out_images
from yolo_kfp.components.core.export import SERVING_NAME, _detections, _unmatched, export_onnx
from yolo_kfp.components.core.predict import predict_local

from yolo_kfp.cli import main

pytestmark = pytest.mark.slow
IMGSZ = 128
BOX_LINE = re.compile(r"\D.*\s\d\.\d{3}(\s+-?\d+\.\d){4}")


@pytest.fixture(scope="module")
def exported(trained_weights, tmp_path_factory):
    weights, data = trained_weights
    folder = tmp_path_factory.mktemp("onnx")
    export_onnx(weights=weights, output_dir=str(folder), imgsz=IMGSZ)
    return weights, str(folder / SERVING_NAME / "1" / "model.onnx"), held_out_images(data)


def as_arrays(detections) -> tuple:
    return (np.array([d.class_id for d in detections]), np.array([d.confidence for d in detections]),
            np.array([d.box for d in detections]).reshape(-1, 4))


@pytest.mark.parametrize("engine", ["openvino", "onnxruntime"])
def test_the_served_engines_detect_what_pytorch_detects(exported, engine):
    weights, model, images = exported
    pytorch = _detections(weights, images, IMGSZ)
    served = [as_arrays(d) for d in predict_local(model=model, images=images, engine=engine)]
    assert sum(len(classes) for classes, _, _ in pytorch) >= len(images), "images where the model detects things"
    for path, theirs, ours in zip(images, pytorch, served):
        assert _unmatched(theirs, ours) == [] and _unmatched(ours, theirs) == [], path


def test_a_different_decoding_is_caught(exported):
    weights, model, images = exported
    pytorch = _detections(weights, images, IMGSZ)
    shifted = [(c, s, b + 8) for c, s, b in (as_arrays(d) for d in predict_local(model=model, images=images))]
    assert any(_unmatched(theirs, ours) for theirs, ours in zip(pytorch, shifted))


def printed_boxes(output: str) -> list[str]:
    """The box lines (class, confidence, x0 y0 x1 y1), whatever else shares the captured output."""
    return [line.strip() for line in output.splitlines() if BOX_LINE.fullmatch(line.strip())]


def test_predict_prints_boxes_with_class_names_here_and_from_a_kserve_v2_endpoint(exported, capsys):
    _, model, images = exported
    assert main(["predict", "--model", model, "--engine", "openvino", *images[:3]]) == 0
    local = capsys.readouterr().out
    boxes = printed_boxes(local)
    assert boxes and all(line.split()[0] in " ".join(CLASSES) for line in boxes)
    assert f"{images[0]}: " in local
    with KServeV2Standin(model, SERVING_NAME, token="secret") as server:
        assert main(["predict", "--url", server.url, "--token", "secret", "--allow-plain-http-token", *images[:3]]) == 0
        assert printed_boxes(capsys.readouterr().out) == boxes, "the same engine behind v2 REST: the same boxes"
        assert main(["predict", "--url", server.url, images[0]]) == 1
        assert "answered 401" in capsys.readouterr().err
    assert {method for method, _, _ in server.requests} == {"GET", "POST"}


@pytest.mark.parametrize("args, message", [
    (["--model", "missing.onnx", "IMAGE"], "no such model: missing.onnx"),
    (["--url", "http://127.0.0.1:9/predict", "IMAGE"], "--url must be a KServe v2 model URL"),
    (["--model", "MODEL", "missing.jpg"], "no such image: missing.jpg"),
    (["--model", "MODEL", "--engine", "tensorrt", "IMAGE"], "invalid choice"),
])
def test_bad_predict_arguments_are_named(exported, args, message, capsys):
    _, model, images = exported
    args = [{"MODEL": model, "IMAGE": images[0]}.get(a, a) for a in args]
    if "choice" in message:
        with pytest.raises(SystemExit):
            main(["predict", *args])
    else:
        assert main(["predict", *args]) == 2
    assert message in capsys.readouterr().err
