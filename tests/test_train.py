"""Transfer learning for real: frozen backbone, adapted head, offline, through kfp.local too."""

import csv
import json
import os

import pytest
import torch
from conftest import CLASSES

from components.evaluate import evaluate, evaluate_model
from components.train import train, train_yolo
from components.validation import plain_numbers

pytestmark = pytest.mark.slow
TINY = {"epochs": 1, "batch": 8, "imgsz": 64, "workers": 0, "overrides": {"nbs": 8, "plots": False}}


def layer_tensors(checkpoint: str) -> dict[int, dict[str, torch.Tensor]]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"].float().state_dict()
    layers: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        layers.setdefault(int(key.split(".")[1]), {})[key] = value
    return layers


def test_freeze_keeps_the_backbone_and_trains_the_head(yolo_dataset, base_checkpoint, tmp_path):
    summary = train_yolo(yolo_dataset, str(tmp_path / "model"), base_checkpoint, freeze=10, **TINY)
    before, after = layer_tensors(base_checkpoint), layer_tensors(str(tmp_path / "model" / "weights" / "last.pt"))
    for layer in range(10):
        for key, value in before[layer].items():
            assert torch.equal(value, after[layer][key]), f"frozen {key} changed"
    head = max(after)
    changed = [k for k, v in after[head].items() if k in before[head] and v.shape == before[head][k].shape
               and v.is_floating_point() and not torch.equal(v, before[head][k])]
    assert changed, "the detection head did not train"
    assert summary["names"] == CLASSES  # the head now predicts the dataset's classes, not the base's 80
    assert 0 < summary["trainable_params"] < summary["total_params"]
    backbone = sum(v.numel() for layer in range(10) for k, v in before[layer].items() if "running" not in k
                   and "num_batches" not in k)
    assert summary["total_params"] - summary["trainable_params"] >= backbone


def test_train_writes_the_model_artifact(yolo_dataset, base_checkpoint, tmp_path):
    out = tmp_path / "model"
    train_yolo(yolo_dataset, str(out), base_checkpoint, freeze=10, **TINY)
    for name in ("weights/best.pt", "weights/last.pt", "args.yaml", "results.csv", "train_summary.json"):
        assert (out / name).is_file(), name
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == 1  # one row per epoch
    metrics = evaluate_model(yolo_dataset, str(out / "weights" / "best.pt"), imgsz=64, batch=8)
    assert set(metrics["per_class"]) == set(CLASSES)
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("map50", "map50_95", "precision", "recall"))
    assert metrics["images"] == len(os.listdir(os.path.join(yolo_dataset, "images", "test")))


def test_numbers_from_kfp_dicts_become_ints():
    assert plain_numbers({"nbs": 16.0, "lr0": 0.5, "cos_lr": True}) == {"nbs": 16, "lr0": 0.5, "cos_lr": True}


def test_train_and_evaluate_components_through_kfp_local(yolo_dataset, base_checkpoint, local_kfp):
    from kfp import dsl
    from kfp.dsl import Dataset

    @dsl.pipeline
    def train_then_evaluate():
        data = dsl.importer(artifact_uri=yolo_dataset, artifact_class=Dataset, reimport=False)
        trained = train(dataset=data.output, base_model=base_checkpoint, base_model_sha256="", epochs=1, batch=8,
                        imgsz=64, freeze=10, workers=0, cache="", patience=100, optimizer="auto", lr0=0.01, seed=0,
                        train_args={"nbs": 8, "plots": False}, run_id="")
        evaluate(dataset=data.output, model=trained.outputs["model"], imgsz=64, batch=8)

    train_then_evaluate()
    run_dir = local_kfp / "pipeline-root"
    (run_root,) = [p for p in run_dir.iterdir() if p.is_dir()]
    model_dir = run_root / "train" / "model"
    assert (model_dir / "weights" / "best.pt").is_file()
    with open(run_root / "train" / "executor_output.json") as f:
        metadata = json.load(f)["artifacts"]["model"]["artifacts"][0]["metadata"]
    assert metadata["names"] == CLASSES and metadata["trainable_params"] < metadata["total_params"]
    with open(run_root / "evaluate" / "metrics_json") as f:
        metrics = json.load(f)
    with open(run_root / "evaluate" / "executor_output.json") as f:
        logged = json.load(f)["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert logged["map50"] == metrics["map50"] and set(metrics["per_class"]) == set(CLASSES)
