"""Training across nodes, on this machine: two ``torchrun`` node processes (CPU, gloo) meeting on 127.0.0.1,
each with its own copy of the dataset and its own output folder, as two pods would have."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from yolo_kfp.infra.storage import S3Url
from yolo_kfp.local.s3_server import free_ports
from yolo_kfp.model import safe_checkpoint
from yolo_kfp.model.nodes_here import job_plan, stop_node
from yolo_kfp.model.training_jobs import NodesJob, pytorch_job, train_job

pytestmark = pytest.mark.slow
NODE = os.path.join(os.path.dirname(__file__), "across_nodes_node.py")
EPOCHS = 4


def start_nodes(settings: dict, folder, env: dict | None = None) -> list[subprocess.Popen]:
    """Starts two torchrun node processes of one world (a process each), each in a session of its own,
    running the recording node script with ``settings``."""
    (port,) = free_ports(1)
    started = []
    for node in range(2):
        with open(folder / f"node-{node}.log", "a") as log:
            started.append(subprocess.Popen(
                [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                 "--node-rank", str(node), "--master-addr", "127.0.0.1", "--master-port", str(port),
                 NODE, json.dumps(settings)],
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


def test_two_nodes_train_one_model_and_a_lost_node_costs_only_its_epoch(yolo_dataset, base_checkpoint, tmp_path, s3,
                                                                        storage, bucket):
    """Node 1 is killed once rank 0 has kept an epoch's checkpoint in S3: node 0 fails too. Both started again
    on fresh pods (empty output folders) resume from the S3 checkpoint at the next epoch and finish. After every
    epoch both ranks hold the same parameters (which do change), each loaded its own half of the training
    images, drawn anew each epoch; only rank 0 wrote checkpoints and results."""
    place = f"s3://{bucket}/checkpoints/two-nodes"
    # rank 0 pauses after each epoch: the copy to S3, a thread beside the training, then comes within the run
    settings = {**node_settings(yolo_dataset, tmp_path, "lost", EPOCHS, base_checkpoint), "checkpoints": place,
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
    with tempfile.TemporaryDirectory() as folder:
        copy = storage.download_file(kept, os.path.join(folder, "last.pt"))
        resumed_at = safe_checkpoint.load(copy, "the kept checkpoint")["epoch"] + 1
    assert resumed_at <= EPOCHS - 2, "the run came too near its end before its node was lost"

    again = {**node_settings(yolo_dataset, tmp_path, "again", EPOCHS, base_checkpoint), "checkpoints": place}
    os.makedirs(again["record_dir"])
    assert finish(start_nodes(again, tmp_path, s3.data_connection())) == [0, 0], logs(tmp_path)
    first, second = records(tmp_path / "again", 0), records(tmp_path / "again", 1)
    assert [r["epoch"] for r in first] == [r["epoch"] for r in second] == list(range(resumed_at, EPOCHS))
    training_images = set(os.listdir(os.path.join(yolo_dataset, "images", "train")))
    for mine, theirs in zip(first, second, strict=True):
        assert mine["weights"] == theirs["weights"], mine["epoch"]
        assert not set(mine["images"]) & set(theirs["images"]) and len(mine["images"]) == len(theirs["images"])
        assert set(mine["images"]) | set(theirs["images"]) == training_images
    assert first[0]["weights"] != first[-1]["weights"], "the parameters never changed: nothing was trained"
    assert first[0]["images"] != first[1]["images"], "the shards are drawn anew each epoch"
    written = tmp_path / "again-out-0"
    assert {"last.pt", "best.pt"} <= set(os.listdir(written / "weights")) and (written / "results.csv").is_file()
    assert (written / "train_summary.json").is_file()
    for rank_1 in ("lost-out-1", "again-out-1"):
        assert [files for _, _, files in os.walk(tmp_path / rank_1) if files] == [], f"{rank_1} holds a file"
    assert not storage.exists(kept), "a finished training leaves no checkpoint behind"


def logs(folder) -> dict:
    return {n: (folder / f"node-{n}.log").read_text()[-3000:] for n in range(2)}


def test_both_engines_manifests_read_alike():
    job = NodesJob(name="j", namespace="n", image="i", command=["yolo-kfp", "step", "train-node"], nodes=3,
                   gpus_per_node=2, shm_size="1Gi", env=[{"name": "A", "value": "1"}])
    assert job_plan(train_job(job)) == job_plan(pytorch_job(job)) == (
        ["torchrun", "--no-python", "yolo-kfp", "step", "train-node"], 3, 2, [{"name": "A", "value": "1"}])
