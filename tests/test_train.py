"""Transfer learning for real: frozen backbone, adapted head, offline, through kfp.local too."""

import csv
import json
import os

import pytest
import torch
from conftest import CLASSES

from yolo_kfp.components.evaluate import evaluate
from yolo_kfp.components.train import train
from yolo_kfp.model.evaluate import evaluate_model
from yolo_kfp.model.figures import COCO_FIGURES
from yolo_kfp.model.train import fit_batch, train_yolo, ultralytics_device
from yolo_kfp.params.validation import plain_numbers

TINY = {"epochs": 1, "batch": 8, "imgsz": 64, "workers": 0, "train_args": {"nbs": 8, "plots": False}}


def layer_tensors(checkpoint: str) -> dict[int, dict[str, torch.Tensor]]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"].float().state_dict()
    layers: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        layers.setdefault(int(key.split(".")[1]), {})[key] = value
    return layers


@pytest.mark.slow
def test_freeze_keeps_the_backbone_and_trains_the_head(yolo_dataset, base_checkpoint, tmp_path, monkeypatch):
    from ultralytics.utils.callbacks import base as callbacks  # what get_default_callbacks copies

    seen = {}  # Ultralytics' own count, where the trainer has frozen the layers
    monkeypatch.setitem(callbacks.default_callbacks, "on_train_start", [lambda trainer: seen.update(
        total=sum(p.numel() for p in trainer.model.parameters()),
        trainable=sum(p.numel() for p in trainer.model.parameters() if p.requires_grad))])
    summary = train_yolo(data_dir=yolo_dataset, output_dir=str(tmp_path / "model"), base_model=base_checkpoint,
                         freeze=10, **TINY)
    assert (summary["total_params"], summary["trainable_params"]) == (seen["total"], seen["trainable"])
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


@pytest.mark.slow
def test_train_writes_the_model_artifact(yolo_dataset, base_checkpoint, tmp_path):
    out = tmp_path / "model"
    train_yolo(data_dir=yolo_dataset, output_dir=str(out), base_model=base_checkpoint, freeze=10, **TINY)
    for name in ("weights/best.pt", "weights/last.pt", "args.yaml", "results.csv", "train_summary.json"):
        assert (out / name).is_file(), name
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == 1  # one row per epoch
    metrics = evaluate_model(data_dir=yolo_dataset, weights=str(out / "weights" / "best.pt"), imgsz=64, batch=8)
    assert set(metrics["per_class"]) == set(CLASSES)
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("map50", "map50_95", "precision", "recall"))
    assert metrics["images"] == len(os.listdir(os.path.join(yolo_dataset, "images", "test")))


def test_mlflow_callback_of_ultralytics_stays_off(yolo_dataset, base_checkpoint, tmp_path, monkeypatch):
    """With MLflow's client installed, Ultralytics would log every training to ./mlruns (its callback runs
    under pytest only in tests named test_mlflow*): tracking here is explicit, never that."""
    from ultralytics.utils import SETTINGS

    monkeypatch.chdir(tmp_path)
    train_yolo(data_dir=yolo_dataset, output_dir=str(tmp_path / "model"), base_model=base_checkpoint, freeze=10,
               **TINY)
    assert SETTINGS["mlflow"] is False
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()


def test_numbers_from_kfp_dicts_become_ints():
    assert plain_numbers({"nbs": 16.0, "lr0": 0.5, "cos_lr": True}) == {"nbs": 16, "lr0": 0.5, "cos_lr": True}


def test_several_gpus_train_on_all_of_them_and_one_lets_ultralytics_choose():
    assert ultralytics_device(2) == "0,1" and ultralytics_device(4) == "0,1,2,3"
    assert ultralytics_device(1) == "" and ultralytics_device(0) == ""


def test_two_gpus_reach_ultralytics_as_two_devices(yolo_dataset, base_checkpoint, tmp_path, ultralytics_arguments):
    args = ultralytics_arguments(data_dir=yolo_dataset, output_dir=str(tmp_path / "model"), base_model=base_checkpoint,
                                 device=ultralytics_device(2), **TINY)
    assert args["device"] == "0,1" and args["batch"] == TINY["batch"]  # the run's batch: Ultralytics splits it


def test_auto_batch_is_resolved_before_training_and_scaled_to_the_gpus(base_checkpoint, monkeypatch):
    from ultralytics import YOLO
    from ultralytics.utils import autobatch

    model = YOLO(base_checkpoint)
    assert fit_batch(model, 32, 640, gpus=2) == 32  # a given batch is the run's, whatever the GPUs
    assert fit_batch(model, -1, 64, gpus=0) == 16  # no GPU: Ultralytics' default
    monkeypatch.setattr(autobatch, "check_train_batch_size", lambda *args, **kwargs: 40)
    assert fit_batch(model, -1, 640, gpus=2) == 80  # 40 fit one GPU; DDP splits 80 over two


def test_auto_batch_reaches_ultralytics_as_a_number(yolo_dataset, base_checkpoint, tmp_path, ultralytics_arguments):
    args = ultralytics_arguments(data_dir=yolo_dataset, output_dir=str(tmp_path / "model"), base_model=base_checkpoint,
                                 **{**TINY, "batch": -1})
    assert args["batch"] == 16


@pytest.mark.slow
def test_train_and_evaluate_components_through_kfp_local(yolo_dataset, base_checkpoint, local_kfp, monkeypatch):
    """Run twice on the same data (the second time an identical copy at another path, as a re-run gets a new
    artifact): both trainings keep their checkpoints under the same key, so KFP can cache the step and a
    re-run after a failure resumes where the first one stopped."""
    import shutil

    from kfp import dsl
    from kfp.dsl import Dataset

    from yolo_kfp.model.checkpoints import CHECKPOINTS_ENV
    from yolo_kfp.params.run_parameters import training_settings

    monkeypatch.setenv(CHECKPOINTS_ENV, str(local_kfp / "checkpoints"))
    copy = shutil.copytree(yolo_dataset, local_kfp / "dataset-copy")

    @dsl.pipeline
    def train_then_evaluate(dataset_uri: str):
        data = dsl.importer(artifact_uri=dataset_uri, artifact_class=Dataset, reimport=False)
        training = training_settings({"base_model": base_checkpoint, "epochs": 1, "batch": 8, "imgsz": 64,
                                      "workers": 0, "seed": 0, "train_args": {"nbs": 8, "plots": False}})
        trained = train(dataset=data.output, training=training, gpus=1, mlflow_tracking_uri="",
                        mlflow_experiment="", search="").set_caching_options(False)
        evaluate(dataset=data.output, model=trained.outputs["model"], imgsz=64, batch=8)

    train_then_evaluate(dataset_uri=yolo_dataset)
    train_then_evaluate(dataset_uri=str(copy))
    run_roots = sorted(p for p in (local_kfp / "pipeline-root").iterdir() if p.is_dir())
    assert len(run_roots) == 2
    checkpoints = []
    for run_root in run_roots:
        assert (run_root / "train" / "model" / "weights" / "best.pt").is_file()
        with open(run_root / "train" / "executor_output.json") as f:
            metadata = json.load(f)["artifacts"]["model"]["artifacts"][0]["metadata"]
        assert metadata["names"] == CLASSES and metadata["trainable_params"] < metadata["total_params"]
        checkpoints.append(metadata["checkpoints"])
    assert checkpoints[0] == checkpoints[1] and checkpoints[0].startswith(str(local_kfp / "checkpoints"))
    with open(run_roots[-1] / "evaluate" / "metrics_json") as f:
        metrics = json.load(f)
    with open(run_roots[-1] / "evaluate" / "executor_output.json") as f:
        logged = json.load(f)["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert logged["map50"] == metrics["map50"] and set(metrics["per_class"]) == set(CLASSES)
    assert set(metrics["coco"]) == set(COCO_FIGURES) and logged.get("coco_AP") == metrics["coco"]["AP"]


def test_training_key_follows_the_dataset_and_the_settings(yolo_dataset, tmp_path):
    import shutil

    from yolo_kfp.model.train import training_key

    settings = {"epochs": 3, "imgsz": 64, "train_args": {"nbs": 8}}
    copy = shutil.copytree(yolo_dataset, tmp_path / "copy")
    assert training_key(yolo_dataset, settings) == training_key(str(copy), dict(reversed(settings.items())))
    assert training_key(str(copy), {**settings, "epochs": 4}) != training_key(str(copy), settings)
    (copy / "stats.json").write_text('{"seconds": 12.5}')  # the report's timings differ from run to run
    assert training_key(str(copy), settings) == training_key(yolo_dataset, settings)
    label = next((copy / "labels" / "train").iterdir())
    label.write_text(label.read_text() + "0 0.5 0.5 0.1 0.1\n")
    assert training_key(str(copy), settings) != training_key(yolo_dataset, settings)


def test_checkpoints_go_to_the_local_folder_else_the_bucket(monkeypatch):
    from yolo_kfp.model.checkpoints import CHECKPOINTS_ENV, checkpoint_location

    monkeypatch.delenv(CHECKPOINTS_ENV, raising=False)
    monkeypatch.delenv("AWS_S3_BUCKET", raising=False)
    assert checkpoint_location("k1") == ""
    monkeypatch.setenv("AWS_S3_BUCKET", "pipelines")
    assert checkpoint_location("k1") == "s3://pipelines/yolo-kfp/checkpoints/k1"
    monkeypatch.setenv(CHECKPOINTS_ENV, "/out/checkpoints")
    assert checkpoint_location("k1") == "/out/checkpoints/k1"


def test_a_resumed_training_lists_each_epoch_once(tmp_path):
    from yolo_kfp.model.train import trim_results

    (tmp_path / "results.csv").write_text("epoch,time,loss\n1,2.5,0.9\n2,5.1,0.8\n3,7.7,0.7\n")
    trim_results(str(tmp_path), 2)  # last.pt holds epoch 2: epoch 3 is trained again, its row written again
    assert (tmp_path / "results.csv").read_text() == "epoch,time,loss\n1,2.5,0.9\n2,5.1,0.8\n"
