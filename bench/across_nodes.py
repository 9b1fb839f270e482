"""Training across two nodes against one, on this machine's CPU, side by side on the same data:

- one node:  ``train_yolo`` in one process (2 threads: the machine's cores), batch 16;
- two nodes: two ``torchrun`` node processes meeting on 127.0.0.1 (gloo, 1 thread each), the same global
             batch 16 (8 each), each with its own copy of the dataset and its own output folder.

Per run: seconds per epoch (the mean over the epochs after the first, from each epoch's end), and the time
from start to the first epoch's end (start-up: imports, the rendezvous, the dataset). For the two-node run
also what one gradient reduction costs: rank 0 times gloo's all-reduce of the trainable parameters' size.
The last line is ``RESULT across_nodes <two-node epoch seconds / one-node epoch seconds>``.

    python bench/across_nodes.py [--epochs 6] [--images 200]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

TRAINING = {"batch": 16, "imgsz": 160, "freeze": 10, "workers": 0, "seed": 42,
            "train_args": {"nbs": 16, "plots": False}}


def node(settings: dict) -> None:
    """One node's process (also the one-node run): trains and appends each epoch's end to its timings file."""
    from ultralytics.utils.callbacks import base

    from yolo_kfp.model.train import train_yolo

    rank = os.environ.get("RANK", "0")
    times = os.path.join(settings["work"], f"{settings['run']}-rank-{rank}.json")
    ends: list[float] = []

    def epoch_end(trainer) -> None:
        ends.append(time.time())
        with open(times, "w") as f:
            json.dump({"start": settings["start"], "ends": ends}, f)

    base.default_callbacks["on_train_epoch_end"].append(epoch_end)
    node_rank = int(os.environ.get("GROUP_RANK", "0"))
    trainer_settings = {**TRAINING, "epochs": settings["epochs"], "base_model": settings["base"]}
    summary = train_yolo(data_dir=settings["data"][node_rank], output_dir=settings["out"][node_rank],
                         **trainer_settings)
    if os.environ.get("WORLD_SIZE", "1") != "1":
        reduction_seconds(times, summary.get("trainable_params", 0))


def reduction_seconds(times: str, trainable: int, rounds: int = 20) -> None:
    """One all-reduce of the trainable parameters (what DDP reduces each step), timed; rank 0 records it."""
    import torch
    import torch.distributed as dist

    size = torch.tensor([trainable])
    dist.broadcast(size, src=0)  # rank 0's count: the others' summaries hold only their rank
    buffer = torch.zeros(int(size.item()))
    dist.barrier()
    started = time.perf_counter()
    for _ in range(rounds):
        dist.all_reduce(buffer)
    seconds = (time.perf_counter() - started) / rounds
    if os.environ["RANK"] == "0":
        with open(times) as f:
            recorded = json.load(f)
        with open(times, "w") as f:
            json.dump({**recorded, "all_reduce": seconds, "parameters": int(size.item())}, f)


def run(run_name: str, nodes: int, work: str, data: str, base: str, epochs: int) -> dict:
    copies = [shutil.copytree(data, os.path.join(work, f"{run_name}-data-{n}")) for n in range(nodes)]
    settings = {"work": work, "run": run_name, "epochs": epochs, "base": base, "data": copies, "start": time.time(),
                "out": [os.path.join(work, f"{run_name}-out-{n}") for n in range(nodes)]}
    script = [os.path.abspath(__file__), "--as-node", json.dumps(settings)]
    if nodes == 1:
        commands = [[sys.executable, *script]]
        env = dict(os.environ, OMP_NUM_THREADS="2")
    else:
        port = 29000 + os.getpid() % 1000
        commands = [[sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nodes), "--nproc-per-node", "1",
                     "--node-rank", str(n), "--master-addr", "127.0.0.1", "--master-port", str(port), *script]
                    for n in range(nodes)]
        env = dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=work)  # torchrun's log folders go with the work
    logs = [os.path.join(work, f"{run_name}-{n}.log") for n in range(nodes)]
    processes = []
    for command, log in zip(commands, logs, strict=True):
        with open(log, "w") as out:
            processes.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT))
    if [p.wait() for p in processes] != [0] * nodes:
        with open(logs[0]) as f:
            raise SystemExit(f"{run_name} failed: {f.read()[-2000:]}")
    with open(os.path.join(work, f"{run_name}-rank-0.json")) as f:
        recorded = json.load(f)
    ends = recorded["ends"]
    return {"epoch_seconds": (ends[-1] - ends[0]) / (len(ends) - 1), "first_epoch_end": ends[0] - recorded["start"],
            "all_reduce": recorded.get("all_reduce"), "parameters": recorded.get("parameters")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--as-node", help="(internal) run as one node with these settings")
    args = parser.parse_args()
    if args.as_node:
        return node(json.loads(args.as_node))
    from yolo_kfp.data.convert import convert_to_yolo
    from yolo_kfp.local import synthetic
    from yolo_kfp.model.ultralytics_env import configure_offline

    configure_offline()
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory(prefix="bench-nodes-") as work:
        raw, data = os.path.join(work, "raw"), os.path.join(work, "data")
        synthetic.write_split(raw, "validation", args.images, seed=3)
        convert_to_yolo(raw_dir=raw, output_dir=data, classes=list(synthetic.TARGET_CLASSES), seed=42)
        base = os.path.join(work, "base.pt")
        YOLO("yolov5n.yaml").save(base)
        one = run("one", 1, work, data, base, args.epochs)
        two = run("two", 2, work, data, base, args.epochs)
    steps = -(-int(args.images * 0.75) // TRAINING["batch"])  # optimizer steps an epoch (nbs = batch)
    print(f"one node : {one['epoch_seconds']:.2f} s an epoch, first epoch ends {one['first_epoch_end']:.1f} s in")
    print(f"two nodes: {two['epoch_seconds']:.2f} s an epoch, first epoch ends {two['first_epoch_end']:.1f} s in")
    print(f"all-reduce of {two['parameters']:,} parameters (gloo, loopback): {two['all_reduce'] * 1000:.1f} ms, about "
          f"{two['all_reduce'] * steps:.2f} s of {steps} steps an epoch")
    print(f"RESULT across_nodes {two['epoch_seconds'] / one['epoch_seconds']:.2f}")


if __name__ == "__main__":
    main()
