"""Transfer learning versus training from scratch, on the demo's synthetic data and settings:

- transfer: a base checkpoint made as the demo's own is made (``yolo_kfp.local.demo_base``: YOLOv5n trained
            from scratch on *related* classes: cars, traffic lights, bicycle wheels, in other scenes), here for
            ``--base-epochs`` (40), fine-tuned with the first 10 layers frozen;
- scratch:  YOLOv5n from its architecture file, nothing frozen;

same data, epochs, image size and batch; both scored on the same test split, for each budget of
``--epochs``. The last line is ``RESULT transfer_vs_scratch <test mAP50 of transfer minus scratch>`` at
the first budget.

    python bench/transfer_vs_scratch.py [--epochs 10,25] [--base-epochs 40]
"""

import argparse
import os
import tempfile

from yolo_kfp.data.convert import convert_to_yolo
from yolo_kfp.local import demo, demo_base, synthetic
from yolo_kfp.model.evaluate import evaluate_model
from yolo_kfp.model.train import train_yolo

CLASSES = list(synthetic.TARGET_CLASSES)
ROUTES = {"transfer": ("base", 10), "scratch": ("yolov5n.yaml", 0)}  # base model, freeze


def train_and_score(data: str, run: str, model: str, freeze: int, epochs: int, settings: dict) -> tuple[dict, dict]:
    summary = train_yolo(data_dir=data, output_dir=run, base_model=model, epochs=epochs, freeze=freeze,
                         train_args=demo.PARAMS["train_args"],
                         **settings)
    metrics = evaluate_model(data_dir=data, weights=os.path.join(run, "weights", "best.pt"), imgsz=settings["imgsz"],
                             batch=settings["batch"])
    return metrics, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", default=f"10,{demo.PARAMS['epochs']}", help="budgets, comma-separated")
    parser.add_argument("--base-epochs", type=int, default=40, help="the base checkpoint's own training")
    args = parser.parse_args()
    settings = {k: demo.PARAMS[k] for k in ("batch", "imgsz", "workers")}
    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as work:
        base = demo_base.train_base_checkpoint(os.path.join(work, "base.pt"), args.base_epochs, 100)
        raw, data = os.path.join(work, "raw"), os.path.join(work, "data")
        synthetic.write_split(raw, "train", demo.PARAMS["max_samples_per_class"], demo.MIRROR_SEED)
        convert_to_yolo(raw_dir=raw, output_dir=data, classes=CLASSES, seed=42)
        budgets = [int(e) for e in args.epochs.split(",")]
        results = {(epochs, route): train_and_score(data, os.path.join(work, f"{route}-{epochs}"),
                                                    base if model == "base" else model, freeze, epochs, settings)
                   for epochs in budgets for route, (model, freeze) in ROUTES.items()}
        training_images = len(os.listdir(os.path.join(data, "images", "train")))
        print(f"base: {args.base_epochs} epochs on {demo_base.BASE_CLASSES}; {settings}, {len(CLASSES)} classes, "
              f"{training_images} training images; test split ({results[budgets[0], 'transfer'][0]['images']} images)")
        print(f"{'epochs':>6}  {'route':<10}{'mAP50':>8}{'mAP50-95':>10}{'trainable':>11}{'train s':>9}  "
              "AP50 per class")
        for (epochs, route), (metrics, summary) in results.items():
            per_class = ", ".join(f"{name} {v['ap50'] or 0:.3f}" for name, v in metrics["per_class"].items())
            print(f"{epochs:>6}  {route:<10}{metrics['map50']:8.3f}{metrics['map50_95']:10.3f}"
                  f"{summary['trainable_params']:11d}{summary['seconds']:9.1f}  {per_class}")
        difference = results[budgets[0], "transfer"][0]["map50"] - results[budgets[0], "scratch"][0]["map50"]
        print(f"RESULT transfer_vs_scratch {difference:.3f}")


if __name__ == "__main__":
    main()
