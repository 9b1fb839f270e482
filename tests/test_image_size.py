"""Models run at the image size they were trained at unless told otherwise, and a different size is
warned about: read from a checkpoint's training arguments or an ONNX model's metadata."""

import json
import logging
import os
import subprocess

import pytest
from cli_process import CLI

from yolo_kfp.cli import main
from yolo_kfp.model.image_size import ULTRALYTICS_IMGSZ, imgsz_for, trained_imgsz


def checkpoint(path, **content) -> str:
    """A .pt file as torch.save writes it (a zip with data.pkl), holding ``content``."""
    import torch

    torch.save(content, path)
    return str(path)


def onnx_model(path, metadata: dict, height=160, width=160) -> str:
    """A one-node ONNX model with Ultralytics-style metadata and an input of ``height`` x ``width``
    (``"h"``/``"w"``: dynamic)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["output0"])], "g",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, height, width])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 3, height, width])])
    model = helper.make_model(graph)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return str(path)


def test_the_trained_size_is_read_from_a_checkpoint(tmp_path):
    assert trained_imgsz(checkpoint(tmp_path / "a.pt", train_args={"imgsz": 160, "epochs": 3})) == 160
    assert trained_imgsz(checkpoint(tmp_path / "b.pt", train_args={"imgsz": [96, 96]})) == 96
    assert trained_imgsz(checkpoint(tmp_path / "c.pt", model=None)) is None, "never trained: nothing recorded"


def test_the_exported_size_is_read_from_an_onnx_model(tmp_path):
    assert trained_imgsz(onnx_model(tmp_path / "a.onnx", {"imgsz": "[224, 224]", "names": "{0: 'Car'}"})) == 224
    assert trained_imgsz(onnx_model(tmp_path / "b.onnx", {})) is None


@pytest.mark.parametrize("recorded, message", [
    (0, "records image size 0, not a size from 1 to 4096"),
    (99999, "records image size 99999"),
    ("160", "records image size '160'"),
    (True, "records image size True"),
    ([160, 320], "records a non-square image size [160, 320]"),
])
def test_a_recorded_size_that_is_no_size_is_refused(tmp_path, recorded, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        trained_imgsz(checkpoint(tmp_path / "m.pt", train_args={"imgsz": recorded}))


def test_what_is_not_a_model_is_named(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="m.onnx is not an ONNX model"):
        trained_imgsz(str(tmp_path / "m.onnx"))
    with pytest.raises(ValueError, match="names posix.system"):  # the checkpoint reader's own refusal
        trained_imgsz(checkpoint(tmp_path / "evil.pt", train_args=os.system))


def test_the_trained_size_is_used_and_another_one_warned_about(tmp_path, caplog):
    trained = checkpoint(tmp_path / "m.pt", train_args={"imgsz": 160})
    caplog.set_level(logging.INFO, logger="yolo_kfp.model.image_size")
    assert imgsz_for(trained, None) == 160
    assert imgsz_for(trained, 160) == 160
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert imgsz_for(trained, 640) == 640, "an explicit size is honoured"
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "imgsz 640 px as asked, but it was trained at 160 px" in warning
    untrained = checkpoint(tmp_path / "u.pt", model=None)
    assert imgsz_for(untrained, None) == ULTRALYTICS_IMGSZ and imgsz_for(untrained, 320) == 320


def test_predict_sizes_a_dynamic_onnx_model_as_exported(tmp_path):
    from yolo_kfp.cluster.predict import model_names_and_size

    names = "{0: 'Car', 1: 'Bus'}"
    assert model_names_and_size(onnx_model(tmp_path / "fixed.onnx", {"names": names}, 96, 128)) == (["Car", "Bus"],
                                                                                                      (96, 128))
    dynamic = onnx_model(tmp_path / "dynamic.onnx", {"names": names, "imgsz": "[160, 160]"}, "h", "w")
    assert model_names_and_size(dynamic) == (["Car", "Bus"], (160, 160))
    unsized = onnx_model(tmp_path / "unsized.onnx", {"names": names}, "h", "w")
    with pytest.raises(ValueError, match="has a dynamic input size and records no imgsz"):
        model_names_and_size(unsized)


def test_predict_refuses_a_checkpoint_and_says_how_to_export_it(tmp_path, capsys):
    image = tmp_path / "a.jpg"
    image.write_bytes(b"")
    assert main(["predict", "--model", checkpoint(tmp_path / "m.pt", model=None), str(image)]) == 2
    assert "predict --model runs an exported model.onnx" in capsys.readouterr().err


def run_cli(*args) -> tuple[dict, str]:
    """A ``yolo-kfp step`` command's JSON result (all of stdout) and its stderr."""
    result = subprocess.run([CLI, "step", *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout), result.stderr


@pytest.mark.slow
def test_step_evaluate_and_export_run_the_model_at_its_trained_size(trained_weights, tmp_path):
    """Without --imgsz, ``step evaluate`` reports what the pipeline's evaluate step (which passes the run's
    imgsz, the trained one) reports; with another --imgsz it is honoured and warned about."""
    from yolo_kfp.model.evaluate import evaluate_model

    weights, data = trained_weights
    assert trained_imgsz(weights) == 128
    pipeline = evaluate_model(data_dir=data, weights=weights, imgsz=128, batch=8)

    metrics, log = run_cli("evaluate", "--data", data, "--model", weights, "--output-dir", str(tmp_path / "eval"),
                           "--batch", "8")
    assert metrics["imgsz"] == 128 and metrics["map50"] == pipeline["map50"]
    assert "at 128 px, the size it was trained at" in log and "WARNING" not in log
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["imgsz"] == 128

    metrics, log = run_cli("evaluate", "--data", data, "--model", os.path.dirname(os.path.dirname(weights)),
                           "--output-dir", str(tmp_path / "eval-256"), "--batch", "8", "--imgsz", "256")
    assert metrics["imgsz"] == 256
    (warning,) = [line for line in log.splitlines() if "WARNING" in line]
    assert "imgsz 256 px as asked, but it was trained at 128 px" in warning

    info, log = run_cli("export", "--model", weights, "--output-dir", str(tmp_path / "onnx"))
    assert info["imgsz"] == 128 and "WARNING" not in log
    assert trained_imgsz(str(tmp_path / "onnx" / info["path"])) == 128
