"""Training across nodes, on this machine: two ``torchrun`` node processes (CPU, gloo) meeting on 127.0.0.1,
each with its own copy of the dataset and its own output folder, as two pods would have."""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
from cli_process import CLI

from yolo_kfp.infra.packing import pack_in_place
from yolo_kfp.infra.storage import S3Url
from yolo_kfp.local.s3_server import free_ports
from yolo_kfp.model import safe_checkpoint
from yolo_kfp.model.job_launcher import ENGINES
from yolo_kfp.model.node_training import (
    data_connection_env,
    node_command,
    staging_url,
    train_across_nodes,
)
from yolo_kfp.model.nodes_here import job_plan, run_nodes, stop_node
from yolo_kfp.model.training_jobs import NodesJob, pytorch_job, train_job

pytestmark = pytest.mark.slow
NODE = os.path.join(os.path.dirname(__file__), "across_nodes_node.py")
EPOCHS = 3
EPOCHS_LOST = 10


def start_nodes(settings: dict, folder, env: dict | None = None, nodes: int = 2,
                program: list[str] | None = None) -> list[subprocess.Popen]:
    """Starts ``nodes`` torchrun node processes of one world (a process each), each in a session of its own,
    running ``program`` (with ``--no-python``), else the recording node script with ``settings``."""
    (port,) = free_ports(1)
    started = []
    for node in range(nodes):
        with open(folder / f"node-{node}.log", "a") as log:
            started.append(subprocess.Popen(
                [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nodes), "--nproc-per-node", "1",
                 "--node-rank", str(node), "--master-addr", "127.0.0.1", "--master-port", str(port),
                 *(["--no-python", *program] if program else [NODE, json.dumps(settings)])],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env=dict(os.environ, **(env or {}), OMP_NUM_THREADS="1", TMPDIR=str(folder))))  # torchrun's logs
    return started


def finish(started: list[subprocess.Popen], timeout: float = 600) -> list[int]:
    """Their exit codes; whatever still runs after ``timeout`` is killed, with its children."""
    try:
        return [process.wait(timeout=timeout) for process in started]
    finally:
        for process in started:
            if process.poll() is None:
                stop_node(process)


def node_settings(dataset: str, folder, run: str, epochs: int, base_checkpoint: str) -> dict:
    """Two nodes' settings: each its own copy of the dataset and its own output folder, as two pods have."""
    return {"data_dirs": [str(shutil.copytree(dataset, folder / f"{run}-data-{n}")) for n in range(2)],
            "output_dirs": [str(folder / f"{run}-out-{n}") for n in range(2)], "record_dir": str(folder / run),
            "training": {"base_model": base_checkpoint, "epochs": epochs, "batch": 8, "imgsz": 64, "workers": 0,
                         "seed": 0, "train_args": {"nbs": 8, "plots": False}}}


def records(folder, rank: int) -> list[dict]:
    with open(folder / f"rank-{rank}.jsonl") as f:
        return [json.loads(line) for line in f]


def test_two_nodes_train_one_model(yolo_dataset, base_checkpoint, tmp_path):
    """Both finish; after every epoch both ranks hold the same parameters (which do change); each loaded its
    own half of the training images; only rank 0 wrote checkpoints and results."""
    settings = node_settings(yolo_dataset, tmp_path, "run", EPOCHS, base_checkpoint)
    os.makedirs(settings["record_dir"])
    assert finish(start_nodes(settings, tmp_path)) == [0, 0], logs(tmp_path)
    first, second = records(tmp_path / "run", 0), records(tmp_path / "run", 1)
    assert [r["epoch"] for r in first] == [r["epoch"] for r in second] == list(range(EPOCHS))
    training_images = set(os.listdir(os.path.join(yolo_dataset, "images", "train")))
    for mine, theirs in zip(first, second, strict=True):
        assert mine["weights"] == theirs["weights"], mine["epoch"]
        assert not set(mine["images"]) & set(theirs["images"]) and len(mine["images"]) == len(theirs["images"])
        assert set(mine["images"]) | set(theirs["images"]) == training_images
    assert first[0]["weights"] != first[-1]["weights"], "the parameters never changed: nothing was trained"
    assert first[0]["images"] != first[1]["images"], "the shards are drawn anew each epoch"
    written = tmp_path / "run-out-0"
    assert {"last.pt", "best.pt"} <= set(os.listdir(written / "weights")) and (written / "results.csv").is_file()
    assert (written / "train_summary.json").is_file()
    assert [files for _, _, files in os.walk(tmp_path / "run-out-1") if files] == []  # rank 1 wrote no file


def test_a_lost_node_costs_only_the_epoch_it_was_in(yolo_dataset, base_checkpoint, tmp_path, s3, storage, bucket):
    """Node 1 is killed once rank 0 has kept an epoch's checkpoint in S3: node 0 fails too. Both started again
    on fresh pods (empty output folders) resume from the S3 checkpoint at the next epoch and finish."""
    place = f"s3://{bucket}/checkpoints/two-nodes"
    # rank 0 pauses after each epoch: the copy to S3, a thread beside the training, then comes within the run
    settings = {**node_settings(yolo_dataset, tmp_path, "lost", EPOCHS_LOST, base_checkpoint), "checkpoints": place,
                "epoch_pause": 1.0}
    os.makedirs(settings["record_dir"])
    started = start_nodes(settings, tmp_path, s3.data_connection())
    kept = S3Url.parse(f"{place}/last.pt")
    deadline = time.monotonic() + 300
    while not storage.exists(kept) and time.monotonic() < deadline and started[0].poll() is None:
        time.sleep(0.2)
    stop_node(started[1])  # as a lost pod
    codes = finish(started)
    assert codes[0] != 0 and storage.exists(kept), logs(tmp_path)
    epochs_seen = [r["epoch"] for r in records(tmp_path / "lost", 0)]
    assert epochs_seen[-1] < EPOCHS_LOST - 1, "the run finished before its node was lost"

    with tempfile.TemporaryDirectory() as folder:
        copy = storage.download_file(kept, os.path.join(folder, "last.pt"))
        resumed_at = safe_checkpoint.load(copy, "the kept checkpoint")["epoch"] + 1
    again = {**node_settings(yolo_dataset, tmp_path, "again", EPOCHS_LOST, base_checkpoint), "checkpoints": place}
    os.makedirs(again["record_dir"])
    assert finish(start_nodes(again, tmp_path, s3.data_connection())) == [0, 0], logs(tmp_path)
    first, second = records(tmp_path / "again", 0), records(tmp_path / "again", 1)
    assert [r["epoch"] for r in first] == [r["epoch"] for r in second] == list(range(resumed_at, EPOCHS_LOST))
    assert [r["weights"] for r in first] == [r["weights"] for r in second]
    assert not storage.exists(kept), "a finished training leaves no checkpoint behind"


def logs(folder) -> dict:
    return {n: (folder / f"node-{n}.log").read_text()[-3000:] for n in range(2)}


def test_a_job_manifest_runs_here_as_torchrun_nodes(yolo_dataset, base_checkpoint, tmp_path, s3, storage, bucket,
                                                   monkeypatch):
    """run-local's proof: the launcher's whole round with the TrainJob the cluster would get. The step stages its
    packed dataset in S3; the nodes, run here from that manifest (its command, `yolo-kfp step train-node` after
    torchrun, its nodes, the data connection's Secret resolved from this environment), fetch and unpack it and
    train; rank 0 hands the model back. The staging prefix and the training's S3 checkpoint go, and no node
    process or torchrun folder is left."""
    for key, value in {**s3.data_connection(), "AWS_S3_BUCKET": bucket}.items():
        monkeypatch.setenv(key, value)
    training = {**node_settings(yolo_dataset, tmp_path, "here", EPOCHS, base_checkpoint)["training"], "gpus": 0}
    staging = staging_url(bucket, "yolo-kfp-train-here")
    job = NodesJob(name="yolo-kfp-train-here", namespace="local", image="unused-here",
                   command=node_command(staging, training, "", ""), nodes=2, gpus_per_node=0, shm_size="1Gi",
                   env=data_connection_env("yolo-kfp-s3"))
    (port,) = free_ports(1)
    torchrun_logs = os.path.join(tempfile.gettempdir(), "torchelastic_*")
    before = set(glob.glob(torchrun_logs))
    packed = shutil.copytree(yolo_dataset, tmp_path / "artifact")
    assert pack_in_place(str(packed), ("images", "labels")), "a dataset artifact as the convert step makes it"
    summary = train_across_nodes(dataset_dir=str(packed), model_dir=str(tmp_path / "model"), job=job,
                                 engine="trainer", run=lambda job, engine: run_nodes(ENGINES[engine].build(job), port,
                                                                                      str(tmp_path)),
                                 storage=storage, staging=staging)
    assert summary["epochs"] == EPOCHS and summary["names"] == ["Bicycle", "Car", "Traffic sign"]
    assert {"best.pt", "last.pt"} <= set(os.listdir(tmp_path / "model" / "weights"))
    assert storage.list_objects(staging) == []
    assert storage.list_objects(S3Url(bucket, "yolo-kfp/checkpoints")) == [], "a finished training keeps none"
    assert not [p for p in glob.glob("/proc/[0-9]*/cmdline") if str(staging).encode() in _read(p)], "a node is left"
    assert set(glob.glob(torchrun_logs)) == before, "torchrun's log folders are left"


def test_both_engines_manifests_read_alike():
    job = NodesJob(name="j", namespace="n", image="i", command=["yolo-kfp", "step", "train-node"], nodes=3,
                   gpus_per_node=2, shm_size="1Gi", env=[{"name": "A", "value": "1"}])
    assert job_plan(train_job(job)) == job_plan(pytorch_job(job)) == (
        ["torchrun", "--no-python", "yolo-kfp", "step", "train-node"], 3, 2, [{"name": "A", "value": "1"}])


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def test_run_local_demo_on_two_nodes_gives_what_one_node_gives(tmp_path):
    """run-local --demo --nodes 2: the train-on-nodes step runs its job's two nodes here; the run ends with the
    one-node run's outputs (how well it trained is not asserted), the nodes' logs beside the steps', and no node
    process or torchrun folder is left."""
    out = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # the demo brings its own S3
    result = subprocess.run([CLI, "run-local", "--demo", "--nodes", "2", "--output-dir", str(out)],
                            capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train-on-nodes    done" in result.stdout and "25 epochs" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"Bicycle", "Car", "Traffic sign"} and len(metrics["coco"]) == 12
    assert {"best.pt", "model.onnx", "report.html", "timings.json"} <= set(os.listdir(out))
    assert {"node-0.log", "node-1.log"} <= set(os.listdir(out / "logs"))
    assert "train" in json.loads((out / "timings.json").read_text())["steps"]
    assert not [p for p in glob.glob("/proc/[0-9]*/cmdline") if str(out).encode() in _read(p)], "a process is left"
    assert not glob.glob(os.path.join(tempfile.gettempdir(), "torchelastic_*"))
