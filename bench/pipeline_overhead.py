"""What the pipeline costs beyond the work a user would do anyway: a local demo run (``kfp.local``, every
task a subprocess, artifacts packed and unpacked between steps), its wall time minus the time spent
inside Ultralytics' training (its ``train()`` call: the epochs with their validation and the final
validation of ``best.pt``, from ``train_summary.json``) and its test-split validation (the evaluate
step's ``val()`` call). Starting the demo's mirror and taking its base checkpoint happen before the run
and are not counted. The last line is ``RESULT pipeline_overhead <seconds>``.

    python bench/pipeline_overhead.py [--epochs 25]
"""

import argparse
import csv
import glob
import json
import os
import tempfile

from yolo_kfp.local import demo
from yolo_kfp.local.runner import run_local


def training_seconds(run_dir: str) -> tuple[float, float]:
    """Seconds inside Ultralytics' train() call, and in its epochs alone (its own clock, results.csv)."""
    (model_dir,) = glob.glob(os.path.join(run_dir, "train", "*", "results.csv"))
    model_dir = os.path.dirname(model_dir)
    with open(os.path.join(model_dir, "results.csv")) as f:
        epochs = float(list(csv.DictReader(f))[-1]["time"])
    with open(os.path.join(model_dir, "train_summary.json")) as f:
        return json.load(f)["training_seconds"], epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=demo.PARAMS["epochs"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as work:
        result = run_local(work, {"epochs": args.epochs}, demo=True)
        total = result["timings"]["total"]
        training, epochs = training_seconds(result["run_dir"])
        validation = result["metrics"]["validation_seconds"]
        print(f"demo pipeline, {args.epochs} epochs: wall {total:.1f} s; inside Ultralytics: training {training:.1f} s "
              f"(its epochs {epochs:.1f} s), test validation {validation:.1f} s")
        print("seconds inside each step:", json.dumps(result["timings"]["steps"]))
        print(f"RESULT pipeline_overhead {total - training - validation:.1f}")


if __name__ == "__main__":
    main()
