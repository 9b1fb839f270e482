"""Training throughput on a GPU node: our train step's settings versus the notebook's, and a 64 MB
``/dev/shm`` (a container's default) versus the node's.

Self-contained and offline: synthetic street scenes in Open Images layout (``yolo_kfp.local.synthetic``,
converted by the convert core), a base checkpoint trained here for one epoch. Each configuration
trains in a fresh process (``--config``), so DataLoader workers and shared memory do not carry over:

- notebook:        Ultralytics directly, batch 256, ``cache=disk``, its default 8 workers;
- ours:            the train step's core (``train_yolo``): workers fitted to the CPU quota and
                   /dev/shm, cache fitted to the memory limit, AMP without the network check;
- ours-autobatch:  the same with ``batch=-1`` (batch fitted to GPU memory);
- notebook-shm64, ours-shm64: the two with /dev/shm a 64 MB tmpfs (a private mount namespace).

Reported per configuration: whether it finished (the notebook's settings die with a bus error when
/dev/shm is small), training images/s after the first epoch (Ultralytics' clock, validation off),
the batch used, and the mean GPU utilisation (``nvidia-smi``, sampled every 0.5 s). The last line is
``RESULT gpu_train <ours images/s / notebook images/s>``.

    python bench/gpu_train.py [--epochs 10] [--images-per-class 300] [--imgsz 640]
    python bench/gpu_train.py --epochs 2 --images-per-class 10 --imgsz 160 --batch 8   # CPU smoke run
"""

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

CONFIGS = ("notebook", "ours", "ours-autobatch", "notebook-shm64", "ours-shm64")
SMALL_SHM = "64m"


def prepare(work: str, images_per_class: int, imgsz: int) -> tuple[str, str]:
    """The synthetic YOLO dataset and a one-epoch base checkpoint."""
    from yolo_kfp.data.convert import convert_to_yolo
    from yolo_kfp.local import synthetic
    from yolo_kfp.model.ultralytics_env import configure_offline

    configure_offline()
    from ultralytics import YOLO

    raw, data = os.path.join(work, "raw"), os.path.join(work, "data")
    synthetic.write_split(raw, "train", images_per_class, seed=5)
    convert_to_yolo(raw_dir=raw, output_dir=data, classes=list(synthetic.TARGET_CLASSES), seed=42)
    run = os.path.join(work, "base")
    YOLO("yolov5n.yaml").train(data=os.path.join(data, "dataset.yaml"), epochs=1, imgsz=imgsz, batch=16,
                               workers=0, save_dir=run, plots=False, val=False)
    return data, os.path.join(run, "weights", "last.pt")


def train_one(config: str, data: str, base: str, out: str, epochs: int, batch: int, imgsz: int) -> dict:
    """Trains with one configuration in this process; returns what it used."""
    from yolo_kfp.model.ultralytics_env import configure_offline

    configure_offline()
    common = {"epochs": epochs, "imgsz": imgsz, "freeze": 10, "seed": 42}
    extra = {"val": False, "plots": False}
    if config.startswith("notebook"):
        from ultralytics import YOLO

        model = YOLO(base)
        model.train(data=os.path.join(data, "dataset.yaml"), batch=batch, cache="disk", save_dir=out, **common,
                    **extra)
        return {"batch": model.trainer.batch_size}
    from yolo_kfp.model.train import train_yolo

    summary = train_yolo(data_dir=data, output_dir=out, base_model=base,
                         batch=-1 if config == "ours-autobatch" else batch, workers=8,
                         train_args=extra, **common)
    return {"batch": summary["batch"]}


def images_per_second(out: str, train_images: int) -> float | None:
    """Training throughput after the first epoch, from Ultralytics' own per-epoch clock."""
    path = os.path.join(out, "results.csv")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        seconds = [float(row["time"]) for row in csv.DictReader(f)]
    if len(seconds) < 2:
        return None
    return train_images * (len(seconds) - 1) / (seconds[-1] - seconds[0])


class GpuSampler:
    """Mean GPU utilisation over a run, from ``nvidia-smi`` (None without one)."""

    def __init__(self):
        self.samples, self.stop = [], threading.Event()
        self.available = shutil.which("nvidia-smi") is not None

    def __enter__(self):
        if self.available:
            threading.Thread(target=self._sample, daemon=True).start()
        return self

    def _sample(self):
        while not self.stop.wait(0.5):
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True).stdout.split()
            if out:
                self.samples.append(sum(map(float, out)) / len(out))

    def __exit__(self, *exc):
        self.stop.set()

    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def small_shm_prefix() -> list[str]:
    """A command prefix that runs its command with /dev/shm a 64 MB tmpfs, in a private mount namespace."""
    mount = f"mount -t tmpfs -o size={SMALL_SHM} tmpfs /dev/shm && exec \"$@\""
    for unshare in (["unshare", "--mount"], ["unshare", "--mount", "--map-root-user"]):
        probe = subprocess.run([*unshare, "sh", "-c", mount, "sh", "true"], capture_output=True, text=True)
        if probe.returncode == 0:
            return [*unshare, "sh", "-c", mount, "sh"]
    raise RuntimeError(f"cannot mount a small /dev/shm here: {probe.stderr.strip()}")


def run_config(config: str, args, data: str, base: str, work: str) -> dict:
    out = os.path.join(work, "runs", config)
    command = [sys.executable, os.path.abspath(__file__), "--config", config, "--data", data, "--base", base,
               "--out", out, "--epochs", str(args.epochs), "--batch", str(args.batch), "--imgsz", str(args.imgsz)]
    if config.endswith("shm64"):
        try:
            command = small_shm_prefix() + command
        except RuntimeError as e:
            return {"status": f"skipped: {e}"}
    log = os.path.join(work, f"{config}.log")
    with GpuSampler() as gpu, open(log, "w") as f:
        started = time.perf_counter()
        process = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - started
    used = {}
    if os.path.exists(out + ".json"):
        with open(out + ".json") as f, open(os.path.join(out, "args.yaml")) as a:
            used = {**json.load(f), "workers": yaml.safe_load(a)["workers"]}
    status = "ok" if process.returncode == 0 else f"failed (exit {process.returncode}, see {config}.log)"
    if process.returncode and "bus error" in open(log, errors="replace").read().lower():
        status = "failed: bus error (shared memory)"
    train_images = len(os.listdir(os.path.join(data, "images", "train")))
    return {"status": status, "images_per_s": images_per_second(out, train_images), "gpu_util": gpu.mean(),
            "wall_s": wall, **used}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--images-per-class", type=int, default=300)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--config", help=argparse.SUPPRESS)  # one run, in a child process
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.config:
        used = train_one(args.config, args.data, args.base, args.out, args.epochs, args.batch, args.imgsz)
        with open(args.out + ".json", "w") as f:
            json.dump(used, f)
        return
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (no GPU)"
    shm = shutil.disk_usage("/dev/shm").total >> 20
    print(f"{device}; {os.cpu_count()} CPUs; /dev/shm {shm} MiB; {args.epochs} epochs at {args.imgsz} px")
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as work:
        data, base = prepare(work, args.images_per_class, args.imgsz)
        results = {config: run_config(config, args, data, base, work) for config in args.configs.split(",")}
        print(f"{'config':<16}{'images/s':>10}{'GPU %':>7}{'batch':>7}{'workers':>9}{'wall s':>8}  status")
        for config, r in results.items():
            rate = "-" if r.get("images_per_s") is None else f"{r['images_per_s']:.0f}"
            util = "-" if r.get("gpu_util") is None else f"{r['gpu_util']:.0f}"
            print(f"{config:<16}{rate:>10}{util:>7}{r.get('batch', '-')!s:>7}{r.get('workers', '-')!s:>9}"
                  f"{r.get('wall_s', 0):8.0f}  {r['status']}")
    ours, notebook = results.get("ours", {}).get("images_per_s"), results.get("notebook", {}).get("images_per_s")
    print(f"RESULT gpu_train {ours / notebook:.2f}" if ours and notebook else "RESULT gpu_train nan")


if __name__ == "__main__":
    main()
