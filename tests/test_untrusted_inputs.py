"""What enters from the bucket or a user's value is checked before it is believed: planted pickles never run,
train_args cannot reach outside the run."""

import json
import os
import shutil
import subprocess
import time

import numpy as np
import pytest
from cli_process import CLI, REFUSED_WITHIN

from yolo_kfp.infra.storage import S3Url, Storage
from yolo_kfp.model import safe_checkpoint
from yolo_kfp.model.checkpoints import Checkpoints
from yolo_kfp.params.run_parameters import defaults as parameter_defaults
from yolo_kfp.params.validation import STEP_TRAINING_ARGS, base_model_problems, parameter_problems


class Payload:
    """Unpickled, it creates ``marker``: what a planted checkpoint would do with the pod's credentials."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def planted_checkpoint(path, marker) -> str:
    import torch

    torch.save({"epoch": 3, "model": Payload(marker), "train_args": {"batch": 8}}, path)
    return str(path)


@pytest.fixture
def on_bucket(storage, bucket, monkeypatch):
    """A fresh bucket, which every step's ``Storage.from_env`` reaches."""
    monkeypatch.setattr(Storage, "from_env", classmethod(lambda cls, env=None: storage))
    return storage, bucket


def test_the_payload_runs_when_unpickled_the_usual_way(tmp_path):
    """The planted file of the tests below is a real payload: loaded as Ultralytics would by default, it runs."""
    import torch

    marker = tmp_path / "ran"
    torch.load(planted_checkpoint(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.exists()


def test_a_planted_resume_checkpoint_never_runs(on_bucket, yolo_dataset, base_checkpoint, tmp_path):
    from yolo_kfp.model.train import train_yolo

    storage, name = on_bucket
    marker = tmp_path / "ran"
    prefix = f"s3://{name}/yolo-kfp/checkpoints/k1"
    storage.upload_file(planted_checkpoint(tmp_path / "last.pt", marker), S3Url.parse(prefix).join("last.pt"))
    checkpoints = Checkpoints(prefix).claim(wait=0)
    started = time.monotonic()
    with pytest.raises(safe_checkpoint.UnsafeCheckpoint, match=r"holds posix\.system, which no Ultralytics"):
        train_yolo(data_dir=yolo_dataset, output_dir=str(tmp_path / "model"), base_model=base_checkpoint, epochs=1,
                   batch=8, imgsz=64, workers=0, checkpoints=checkpoints)
    assert time.monotonic() - started < 30 and not marker.exists()
    assert Checkpoints(prefix).claim(wait=0).holds_lease, "the failed attempt let go of its lease"


def test_a_planted_checkpoint_with_other_arguments_is_not_resumed_from(on_bucket, yolo_dataset, base_checkpoint,
                                                                      tmp_path, caplog):
    """A genuine Ultralytics checkpoint whose recorded arguments select the test split: Ultralytics would resume
    with those, not the run's, and pick best.pt on the test split. The run starts over instead."""
    import torch

    from yolo_kfp.model.train import train_yolo

    storage, name = on_bucket
    tiny = {"batch": 8, "imgsz": 64, "workers": 0, "train_args": {"nbs": 8, "plots": False}}
    train_yolo(data_dir=yolo_dataset, output_dir=str(tmp_path / "first"), base_model=base_checkpoint, epochs=1,
               **tiny)
    checkpoint = torch.load(tmp_path / "first" / "weights" / "last.pt", weights_only=False)
    checkpoint["epoch"], checkpoint["train_args"]["epochs"] = 0, 2  # as if stopped after its first of two epochs
    checkpoint["train_args"]["split"] = "test"
    torch.save(checkpoint, tmp_path / "planted.pt")
    prefix = f"s3://{name}/yolo-kfp/checkpoints/k2"
    storage.upload_file(str(tmp_path / "planted.pt"), S3Url.parse(prefix).join("last.pt"))
    summary = train_yolo(data_dir=yolo_dataset, output_dir=str(tmp_path / "model"), base_model=base_checkpoint,
                         epochs=2, checkpoints=Checkpoints(prefix).claim(wait=0), **tiny)
    assert summary["resumed_at_epoch"] is None and summary["epochs"] == 2
    assert "not resumed from, its training arguments are not this run's: split='test' (this run: 'val')" in caplog.text
    trained = torch.load(tmp_path / "model" / "weights" / "best.pt", weights_only=False)
    assert trained["train_args"]["split"] == "val"


def test_a_planted_s3_base_model_never_runs(on_bucket, tmp_path):
    from yolo_kfp.infra.storage import StorageError
    from yolo_kfp.model.train import fetch_base_model
    from yolo_kfp.params.preflight import check_s3_inputs

    storage, name = on_bucket
    marker = tmp_path / "ran"
    storage.upload_file(planted_checkpoint(tmp_path / "evil.pt", marker), S3Url(name, "base/yolov5n.pt"))
    url = f"s3://{name}/base/yolov5n.pt"
    with pytest.raises(StorageError, match=r"names posix\.system, which no Ultralytics checkpoint does"):
        check_s3_inputs(base_model=url, freeze=10, storage=storage)  # preflight, before any GPU pod
    with pytest.raises(safe_checkpoint.UnsafeCheckpoint, match=r"base_model .* holds posix\.system"):
        fetch_base_model(url, "", str(tmp_path))  # the train step, had preflight been skipped
    assert not marker.exists()


def test_a_planted_local_base_model_is_refused_before_any_work(tmp_path):
    marker = tmp_path / "ran"
    evil = planted_checkpoint(tmp_path / "evil.pt", marker)
    (problem,) = base_model_problems(evil, 10)
    assert "names posix.system, which no Ultralytics checkpoint does" in problem
    assert not marker.exists()


def test_a_planted_published_model_never_runs_in_the_gate(on_bucket, yolo_dataset, tmp_path):
    from yolo_kfp.release.gate import promotion_gate

    storage, name = on_bucket
    marker = tmp_path / "ran"
    publish_to = S3Url(name, "models/yolo")
    version = "20261201-000000-aaaaaaaa"  # of the form a publish writes: the gate takes it as the published model
    storage.put_bytes(publish_to.join("latest"), json.dumps({"version": version}).encode())
    storage.put_bytes(publish_to.join(version, "manifest.json"), json.dumps({"version": version}).encode())
    planted = planted_checkpoint(tmp_path / "best.pt", marker)
    storage.upload_file(planted, publish_to.join(version, "weights", "best.pt"))
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"map50": 0.9}))
    with pytest.raises(safe_checkpoint.UnsafeCheckpoint, match="the published model .* holds posix.system"):
        promotion_gate(metrics_path=str(metrics), data_dir=yolo_dataset, publish_to=str(publish_to), min_map50=0.5,
                       max_map50_drop=0.05, imgsz=64, batch=8, storage=storage)
    assert not marker.exists()


def test_genuine_checkpoints_load_weights_only(base_checkpoint):
    checkpoint = safe_checkpoint.load(base_checkpoint, "base_model")
    assert type(checkpoint["model"]).__name__ == "DetectionModel"


def test_a_cut_off_checkpoint_is_unreadable_not_unsafe(base_checkpoint, tmp_path):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(open(base_checkpoint, "rb").read()[:20000])
    with pytest.raises(safe_checkpoint.UnreadableCheckpoint, match="does not load"):
        safe_checkpoint.load(str(cut), "the epoch checkpoint")


@pytest.mark.slow
def test_a_label_cache_that_came_with_the_data_is_never_unpickled(yolo_dataset, base_checkpoint, tmp_path):
    from yolo_kfp.model.train import train_yolo

    data = shutil.copytree(yolo_dataset, tmp_path / "data")
    marker = tmp_path / "ran"
    cache = data / "labels" / "train.cache"
    with open(cache, "wb") as f:  # Ultralytics' cache format: np.save of a dict, loaded with allow_pickle=True
        np.save(f, np.array({"version": "1.0.3", "payload": Payload(marker)}, dtype=object), allow_pickle=True)
    train_yolo(data_dir=str(data), output_dir=str(tmp_path / "model"), base_model=base_checkpoint, epochs=1, batch=8,
               imgsz=64, workers=0, train_args={"plots": False, "val": False})
    assert not marker.exists()
    assert cache.exists(), "Ultralytics wrote its own cache in its place"


@pytest.mark.parametrize("key", sorted(STEP_TRAINING_ARGS))
def test_train_args_that_reach_outside_the_run_are_refused(key):
    (problem,) = parameter_problems({**parameter_defaults(), "train_args": {key: "/some/file.yaml"}})
    assert problem.startswith(f"train_args may not set {key!r}: ")


def test_every_refused_train_arg_is_one_ultralytics_knows():
    from yolo_kfp.params.ultralytics_catalog import ARGUMENTS

    assert set(STEP_TRAINING_ARGS) - ARGUMENTS == {"save_dir"}  # not in default.yaml, but train() takes it


@pytest.mark.parametrize("key", ["cfg", "pretrained", "distill_model", "project", "device"])
def test_train_args_cfg_and_its_kind_stop_the_cli_within_seconds(key, tmp_path):
    started = time.monotonic()
    result = subprocess.run([CLI, "run-local", "--output-dir", str(tmp_path / "out"), "--param",
                             f'train_args={{"{key}": "/some/file.yaml"}}'], capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < REFUSED_WITHIN
    (last,) = result.stderr.strip().splitlines()
    assert result.returncode == 2 and f"train_args may not set {key!r}" in last
    assert not (tmp_path / "out").exists()
