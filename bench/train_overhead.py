"""The train step's cost over plain Ultralytics, measured side by side on CPU:

- ours:   ``yolo-kfp step train`` (the train component's core: offline setup, pod sizing, freeze check,
          parameter counts, resumable checkpoints, summary);
- plain:  ``yolo train`` (Ultralytics' own CLI) with the same data, base checkpoint and arguments.

Both run as fresh processes with the same offline environment, alternating (ours, plain, plain, ours)
so that drift in the machine's speed hits both. The last line is
``RESULT train_overhead <our seconds / plain seconds>``.

    python bench/train_overhead.py [--epochs 5] [--rounds 2]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from yolo_kfp.data.convert import convert_to_yolo
from yolo_kfp.local import synthetic
from yolo_kfp.model.ultralytics_env import configure_offline

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

CLASSES = list(synthetic.TARGET_CLASSES)
ARGS = {"batch": 16, "imgsz": 160, "freeze": 10, "workers": 0, "seed": 42}
EXTRA = {"nbs": 16, "plots": False}


def make_data(work: str) -> str:
    raw, data = os.path.join(work, "raw"), os.path.join(work, "data")
    synthetic.write_split(raw, "validation", 100, seed=3)
    convert_to_yolo(raw_dir=raw, output_dir=data, classes=CLASSES, seed=42)
    return data


def make_base(work: str, data: str) -> str:
    """A base checkpoint: one epoch from scratch (the bench measures overhead, not accuracy)."""
    from ultralytics import YOLO

    run = os.path.join(work, "base")
    YOLO("yolov5n.yaml").train(data=os.path.join(data, "dataset.yaml"), epochs=1, save_dir=run, **ARGS, **EXTRA)
    return os.path.join(run, "weights", "last.pt")


def ours(data: str, base: str, out: str, epochs: int) -> list[str]:
    flags = [f"--{k}={v}" for k, v in ARGS.items()]
    return [os.path.join(os.path.dirname(sys.executable), "yolo-kfp"), "step", "train", "--data", data,
            "--output-dir", out, "--base-model", base, f"--epochs={epochs}", *flags,
            "--train-args", json.dumps(EXTRA)]


def plain(data: str, base: str, out: str, epochs: int) -> list[str]:
    settings = {**ARGS, **EXTRA, "epochs": epochs, "model": base, "data": os.path.join(data, "dataset.yaml"),
                "project": os.path.dirname(out), "name": os.path.basename(out)}
    return [os.path.join(os.path.dirname(sys.executable), "yolo"), "train",
            *(f"{k}={v}" for k, v in settings.items())]


def timed_run(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    configure_offline()  # sets YOLO_CONFIG_DIR (with the font) and YOLO_OFFLINE: the same for both
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as work:
        data = make_data(work)
        base = make_base(work, data)
        seconds = {"ours": [], "plain": []}
        order = [name for r in range(args.rounds) for name in (("ours", "plain") if r % 2 == 0 else ("plain", "ours"))]
        for i, name in enumerate(order):
            out = os.path.join(work, "runs", f"{name}-{i}")
            command = (ours if name == "ours" else plain)(data, base, out, args.epochs)
            seconds[name].append(timed_run(command, env))
            print(f"{name:<6} run {i}: {seconds[name][-1]:.1f} s", flush=True)
            shutil.rmtree(out)
        total = {name: sum(values) for name, values in seconds.items()}
        print(f"{args.epochs} epochs, {ARGS}, {args.rounds} runs each: ours {total['ours']:.1f} s, "
              f"plain yolo train {total['plain']:.1f} s")
        print(f"RESULT train_overhead {total['ours'] / total['plain']:.3f}")


if __name__ == "__main__":
    main()
