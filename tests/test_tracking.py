"""MLflow tracking and registration against a real MLflow tracking server on 127.0.0.1."""

import os
import socket
import subprocess
import time
import uuid

import pytest
from cli_process import CLI
from mlflow import MlflowClient

from yolo_kfp.model import tracking

RESULTS = """epoch,time,train/box_loss,metrics/mAP50(B),metrics/mAP50-95(B)
1,3.1,1.9,0.10,0.05
2,6.0,1.5,0.40,0.20
3,9.2,1.2,0.60,0.30
"""


def training_output(folder):
    (folder / "weights").mkdir(parents=True)
    (folder / "weights" / "best.pt").write_bytes(b"weights")
    (folder / "results.csv").write_text(RESULTS)
    (folder / "args.yaml").write_text("epochs: 3\n")
    return folder


def test_a_training_is_logged_evaluated_and_registered(mlflow_server, tmp_path):
    experiment, key = f"exp-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:20]
    run_id = tracking.start_training_run(tracking_uri=mlflow_server.url, experiment=experiment, training=key,
                                         params={"epochs": 3, "train_args": {"cos_lr": True}},
                                         tags={tracking.DATASET_TAG: "d1"})
    assert tracking.start_training_run(tracking_uri=mlflow_server.url, experiment=experiment, training=key,
                                       params={}, tags={}) != run_id, "an identical run at once gets its own run"
    tracking.finish_training_run(tracking_uri=mlflow_server.url, run_id=run_id,
                                 output_dir=str(training_output(tmp_path / "model")))
    tracking.log_evaluation(tracking_uri=mlflow_server.url, run_id=run_id, tags={tracking.RUN_ID_TAG: "kfp-1"},
                            metrics={"map50": 0.7, "map50_95": 0.4, "precision": 0.8, "recall": 0.6,
                                     "per_class": {"Traffic sign": {"ap50": 0.5}, "Car": {"ap50": None}}})
    name = f"model-{uuid.uuid4().hex[:6]}"
    for kfp_run, expected in (("kfp-1", "1"), ("kfp-1", "1"), ("kfp-2", "2")):  # kfp-1's publish step retried
        assert tracking.register_model(tracking_uri=mlflow_server.url, run_id=run_id, name=name,
                                       source="s3://models/yolo-kfp/v1/serving",
                                       tags={"format": "onnx", tracking.RUN_ID_TAG: kfp_run}) == expected

    client = MlflowClient(mlflow_server.url)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"epochs": "3", "train_args": "{'cos_lr': True}"}
    assert [m.value for m in client.get_metric_history(run_id, "metrics/mAP50B")] == [0.1, 0.4, 0.6]
    assert [m.step for m in client.get_metric_history(run_id, "metrics/mAP50B")] == [1, 2, 3]
    assert run.data.metrics["test_map50"] == 0.7 and run.data.metrics["test_ap50_Traffic_sign"] == 0.5
    assert run.data.tags[tracking.RUN_ID_TAG] == "kfp-1" and run.data.tags[tracking.DATASET_TAG] == "d1"
    assert run.data.tags[tracking.TRAINING_TAG] == key
    assert {a.path for a in client.list_artifacts(run_id)} >= {"results.csv", "args.yaml", "weights"}
    version = client.get_model_version(name, "2")
    assert version.source == "s3://models/yolo-kfp/v1/serving" and version.run_id == run_id


def test_fiftyone_imports_after_mlflow_in_one_process():
    """mlflow installs importlib_metadata's finder for the whole process; a version of it that raises on
    the metadata field voxel51-eta reads but lacks breaks FiftyOne's import (a notebook, a test run)."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", "import mlflow, fiftyone"], check=True, timeout=300)


def test_preflight_reaches_the_mlflow_server_and_is_refused_in_one_line_where_it_does_not_answer(mlflow_server):
    tracking.check_access(mlflow_server.url)
    with socket.socket() as silent:  # listens, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        for uri, reason in ((f"http://127.0.0.1:{silent.getsockname()[1]}", "no answer within 10 s"),
                            ("http://127.0.0.1:9", "[Errno 111] Connection refused")):
            started = time.monotonic()
            with pytest.raises(ValueError, match="cannot be used") as refused:
                tracking.check_access(uri)
            assert time.monotonic() - started < 15 and reason in str(refused.value), refused.value
            assert f"mlflow_tracking_uri '{uri}' cannot be used" in str(refused.value)
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ, "the brief settings are the check's alone"


def test_a_run_whose_mlflow_server_does_not_answer_fails_in_preflight_before_any_download(tmp_path):
    result = subprocess.run([CLI, "run-local", "--output-dir", str(tmp_path / "out"), "--param",
                             "mlflow_tracking_uri=http://127.0.0.1:9"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("yolo-kfp: error:")]
    assert "step 'preflight' failed" in error and "mlflow_tracking_uri 'http://127.0.0.1:9' cannot be used" in error
    assert "Traceback" not in result.stdout + result.stderr
    assert sorted(os.listdir(tmp_path / "out" / "logs")) == ["pipeline.log", "preflight.log"], "no step after it"
