"""Serving the exported model: OpenVINO (the engine of OpenVINO Model Server) detects what PyTorch
detects, and ``yolo-kfp predict`` prints the boxes of a local ONNX file or of a KServe v2 endpoint."""

import json
import os
import re
import shutil

import numpy as np
import pytest
from conftest import CLASSES
from kserve_v2_standin import KServeV2Standin

from yolo_kfp.cli import main
from yolo_kfp.cluster.predict import predict_local
from yolo_kfp.model.evaluate import held_out_images
from yolo_kfp.model.export import SERVING_NAME, _detections, _unmatched, export_onnx

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
    assert sum(len(classes) for classes, _, _ in pytorch) >= len(images) // 2, "boxes enough to compare"
    for path, theirs, ours in zip(images, pytorch, served, strict=True):
        assert _unmatched(theirs, ours) == [] and _unmatched(ours, theirs) == [], path


def test_a_different_decoding_is_caught(exported):
    weights, model, images = exported
    pytorch = _detections(weights, images, IMGSZ)
    shifted = [(c, s, b + 8) for c, s, b in (as_arrays(d) for d in predict_local(model=model, images=images))]
    assert any(_unmatched(theirs, ours) for theirs, ours in zip(pytorch, shifted, strict=True))


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
    assert main(["predict", *args]) == 2
    assert message in capsys.readouterr().err


def predicted(capsys, *args) -> str:
    assert main(["predict", *args]) == 0
    return capsys.readouterr().out


@pytest.fixture
def photos(exported, tmp_path):
    """Three held-out images in a folder of their own."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for image in exported[2][:3]:
        shutil.copy(image, folder)
    return folder


def test_images_come_as_files_a_folder_or_a_glob_and_the_model_as_a_folder(exported, photos, tmp_path, capsys):
    _, model, _ = exported
    files = sorted(str(p) for p in photos.iterdir())
    by_files = predicted(capsys, "--model", model, *files)
    assert len(printed_boxes(by_files)) > 0
    assert predicted(capsys, "--model", model, str(photos)) == by_files
    assert predicted(capsys, "--model", model, str(photos / "*.jpg")) == by_files
    published = tmp_path / "v1" / "serving" / SERVING_NAME / "1"
    published.mkdir(parents=True)
    shutil.copy(model, published)
    run_local = tmp_path / "run-local"
    run_local.mkdir()
    shutil.copy(model, run_local)
    export_dir = os.path.dirname(os.path.dirname(os.path.dirname(model)))
    for folder in (export_dir, str(tmp_path / "v1"), str(run_local)):
        assert predicted(capsys, "--model", folder, *files) == by_files, folder


def test_save_draws_each_image_and_json_holds_the_boxes_coco_style(exported, photos, tmp_path, capsys):
    from PIL import Image, ImageChops

    _, model, _ = exported
    files = sorted(str(p) for p in photos.iterdir())
    namesake = tmp_path / "elsewhere" / os.path.basename(files[0])
    namesake.parent.mkdir()
    shutil.copy(files[0], namesake)
    images = [*files, str(namesake)]
    found_in = predict_local(model=model, images=images)
    expected = [(image, d) for image, found in zip(images, found_in, strict=True) for d in found]
    saved = tmp_path / "drawn"
    results = json.loads(predicted(capsys, "--model", model, "--json", "--save", str(saved), *images))
    assert len(results) == len(expected) > 0
    for entry, (image, detection) in zip(results, expected, strict=True):
        x0, y0, x1, y1 = detection.box
        assert (entry["file_name"], entry["category_name"], entry["category_id"]) == (image, detection.name,
                                                                                      detection.class_id + 1)
        assert entry["category_name"] in CLASSES
        assert entry["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=0.01)
        assert entry["score"] == pytest.approx(detection.confidence, abs=1e-5)
    stem, suffix = os.path.splitext(os.path.basename(files[0]))
    drawings = [saved / os.path.basename(f) for f in files] + [saved / f"{stem}-2{suffix}"]
    assert sorted(saved.iterdir()) == sorted(drawings)
    with_boxes = {entry["file_name"] for entry in results}
    for image, drawing in zip(images, drawings, strict=True):
        with Image.open(image) as original, Image.open(drawing) as drawn:
            assert drawn.size == original.size
            changed = ImageChops.difference(original.convert("RGB"), drawn.convert("RGB")).getbbox() is not None
            assert changed == (image in with_boxes), "boxes drawn where there are boxes, and only there"


def test_classes_with_a_local_model_are_checked_against_its_own(exported, capsys):
    _, model, images = exported
    assert main(["predict", "--model", model, "--classes", ",".join(CLASSES), images[0]]) == 0
    capsys.readouterr()
    assert main(["predict", "--model", model, "--classes", "Dog", images[0]]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert f"--classes Dog: not a class of {model}, whose classes are {', '.join(CLASSES)}" in line
