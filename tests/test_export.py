"""ONNX export: the serving layout, its metadata, and detections that match the PyTorch model's."""

import json
import os

import onnx
import pytest
from conftest import CLASSES

from yolo_kfp.components.evaluate import evaluate
from yolo_kfp.components.export import export
from yolo_kfp.model.evaluate import held_out_images
from yolo_kfp.model.export import OPSET, SERVING_NAME, _detections, compare_detections, export_onnx

pytestmark = pytest.mark.slow


def test_export_writes_the_serving_layout_and_matches_pytorch(trained_weights, tmp_path):
    weights, data = trained_weights
    images = held_out_images(data)
    info = export_onnx(weights=weights, output_dir=str(tmp_path / "onnx"), imgsz=128, check_images=images)
    model_path = tmp_path / "onnx" / SERVING_NAME / "1" / "model.onnx"
    model = onnx.load(str(model_path))
    assert model.opset_import[0].version == OPSET and info["opset"] == OPSET
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["names"] == str(dict(enumerate(CLASSES))) and metadata["imgsz"] == "[128, 128]"
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 128, 128]
    assert json.loads((tmp_path / "onnx" / "export.json").read_text())["checked_images"] == len(images)
    # the comparison itself, made on images where the model does detect things (the demo's cluttered scenes:
    # a small model finds fewer than one box an image, enough to compare box by box)
    assert sum(len(classes) for classes, _, _ in _detections(weights, images, 128)) >= len(images) // 2
    assert compare_detections(weights, str(model_path), images, 128) == []


def test_a_different_model_is_caught(trained_weights, base_checkpoint, tmp_path):
    weights, data = trained_weights
    export_onnx(weights=base_checkpoint, output_dir=str(tmp_path / "other"), imgsz=128)  # an untrained model's ONNX
    problems = compare_detections(weights, str(tmp_path / "other" / SERVING_NAME / "1" / "model.onnx"),
                                  held_out_images(data), 128)
    assert problems and any("only PyTorch has" in p for p in problems)


def test_evaluate_and_export_components_through_kfp_local(trained_weights, local_kfp):
    from kfp import dsl
    from kfp.dsl import Dataset, Model

    weights, data = trained_weights
    model_dir = os.path.dirname(os.path.dirname(weights))

    @dsl.pipeline
    def evaluate_and_export():
        dataset = dsl.importer(artifact_uri=data, artifact_class=Dataset, reimport=False)
        model = dsl.importer(artifact_uri=model_dir, artifact_class=Model, reimport=False)
        evaluate(dataset=dataset.output, model=model.output, imgsz=128, batch=8)
        export(model=model.output, dataset=dataset.output, imgsz=128)

    evaluate_and_export()
    (run,) = (local_kfp / "pipeline-root").iterdir()
    with open(run / "evaluate" / "executor_output.json") as f:
        artifacts = json.load(f)["artifacts"]
    confusion = artifacts["confusion"]["artifacts"][0]["metadata"]["confusionMatrix"]
    labels = [spec["displayName"] for spec in confusion["annotationSpecs"]]
    assert labels == [*CLASSES, "background"]
    rows = [row["row"] for row in confusion["rows"]]
    assert len(rows) == 4 and all(len(row) == 4 for row in rows)
    assert sum(rows[i][i] for i in range(3)) > 0, "a trained model gets some boxes right"
    report = (run / "evaluate" / "report").read_text()
    assert "Precision-recall curve" in report and "Confusion matrix" in report and 'id="per-class"' in report
    assert report.count("data:image/png;base64,") == 3
    predictions = json.loads((run / "evaluate" / "predictions" / "predictions.json").read_text())
    assert predictions and {"image_id", "category_id", "score", "bbox"} <= set(predictions[0])
    metrics = json.loads((run / "evaluate" / "metrics_json").read_text())
    assert len(predictions) == metrics["detections"]["evaluated"]
    assert min(p["score"] for p in predictions) >= metrics["detections"]["confidence"] == 0.001  # every detection
    logged = artifacts["metrics"]["artifacts"][0]["metadata"]
    assert logged["coco_AP50"] == metrics["coco"]["AP50"] and logged["map50"] == metrics["map50"]
    assert (run / "export" / "onnx_model" / SERVING_NAME / "1" / "model.onnx").is_file()
