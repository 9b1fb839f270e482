"""Train: Ultralytics transfer learning from a base checkpoint with the backbone frozen.

The base checkpoint's head is adapted to the dataset's classes by Ultralytics (rows of classes with
the same name are kept), layers ``0..freeze-1`` are frozen, and the number of trainable parameters is
recorded. Ultralytics' own defaults apply to every argument not given; ``overrides`` passes any other
Ultralytics training argument through, as ``yolo train`` would take it.
"""

import json
import logging
import os
import shutil
import tempfile
import time

from kfp.dsl import Dataset, Input, Model, Output

from components.images import TRAIN_IMAGE, component
from components.storage import S3Url, Storage, is_s3, sha256_of

log = logging.getLogger(__name__)

MODEL_FILES = ("weights/best.pt", "weights/last.pt", "args.yaml", "results.csv")


def dataset_yaml(data_dir: str) -> str:
    path = os.path.join(data_dir, "dataset.yaml")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{data_dir} holds no dataset.yaml: is it the output of the convert step?")
    return path


def parameter_counts(model) -> dict:
    params = list(model.parameters())
    return {"total_params": sum(p.numel() for p in params),
            "trainable_params": sum(p.numel() for p in params if p.requires_grad)}


def plain_numbers(args: dict) -> dict:
    """KFP hands numbers inside dict parameters over as floats; Ultralytics wants 16, not 16.0, for counts."""
    return {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in args.items()}


def fetch_base_model(base_model: str, sha256: str, workdir: str) -> str:
    """A local path for ``base_model``: an ``s3://`` URL is downloaded and, given ``sha256``, verified."""
    if not is_s3(base_model):
        return base_model
    url = S3Url.parse(base_model)
    path = Storage.from_env().download_file(url, os.path.join(workdir, os.path.basename(url.key) or "base.pt"))
    if sha256:
        actual = sha256_of(path)
        if actual != sha256.lower():
            raise ValueError(f"base_model {base_model} has SHA-256 {actual}, not the expected {sha256}: refusing it")
    log.info("base model %s -> %s", base_model, path)
    return path


def train_yolo(data_dir: str, output_dir: str, base_model: str = "yolov5nu.pt", epochs: int = 50, batch: int = 256,
               imgsz: int = 640, freeze: int = 10, workers: int = 8, cache: str = "", device: str = "",
               patience: int = 100, optimizer: str = "auto", lr0: float = 0.01, seed: int = 42,
               overrides: dict | None = None, base_model_sha256: str = "") -> dict:
    """Fine-tunes ``base_model`` on the YOLO dataset in ``data_dir``; writes weights and logs to ``output_dir``.

    ``base_model`` is an Ultralytics checkpoint name, a local path or an ``s3://`` URL.
    """
    from components.ultralytics_env import configure_offline

    configure_offline()
    from ultralytics import YOLO

    started = time.monotonic()
    counts = {}
    with tempfile.TemporaryDirectory(prefix="yolo-train-") as project:
        model = YOLO(fetch_base_model(base_model, base_model_sha256, project))
        model.add_callback("on_train_start", lambda trainer: counts.update(parameter_counts(trainer.model)))
        args = {"data": dataset_yaml(data_dir), "epochs": epochs, "batch": batch, "imgsz": imgsz, "freeze": freeze,
                "workers": workers, "cache": cache or False, "patience": patience, "optimizer": optimizer,
                "lr0": lr0, "seed": seed, "project": project, "name": "train", "exist_ok": True,
                **({"device": device} if device else {}), **plain_numbers(overrides or {})}
        log.info("Ultralytics train %s", args)
        model.train(**args)
        trainer = model.trainer
        os.makedirs(output_dir, exist_ok=True)
        shutil.copytree(trainer.save_dir, output_dir, dirs_exist_ok=True)
    summary = {"base_model": base_model, "names": list(trainer.data["names"].values()), "epochs": trainer.epochs,
               "freeze": freeze, "imgsz": imgsz, "batch": trainer.batch_size, "device": str(trainer.device),
               "best_fitness": float(trainer.best_fitness or 0.0), **counts,
               "seconds": round(time.monotonic() - started, 2)}
    with open(os.path.join(output_dir, "train_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    log.info("trained %d epochs: %d of %d parameters trainable", summary["epochs"],
             counts.get("trainable_params", -1), counts.get("total_params", -1))
    return summary


@component(TRAIN_IMAGE)
def train(dataset: Input[Dataset], base_model: str, base_model_sha256: str, epochs: int, batch: int, imgsz: int,
          freeze: int, workers: int, cache: str, patience: int, optimizer: str, lr0: float, seed: int,
          train_args: dict, model: Output[Model]):
    """Fine-tunes a YOLO checkpoint (Ultralytics) on the YOLO dataset with its first `freeze` layers frozen.

    base_model is an Ultralytics checkpoint name, a path in the image or an s3:// URL (checked against
    base_model_sha256 when given). Writes weights/best.pt, weights/last.pt, args.yaml, results.csv (per
    epoch) and train_summary.json (including how many parameters were trainable). train_args passes
    further Ultralytics arguments.
    """
    import logging

    from components.packing import materialized
    from components.train import train_yolo

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with materialized(dataset.path) as data_dir:
        summary = train_yolo(data_dir, model.path, base_model, epochs, batch, imgsz, freeze, workers, cache,
                             patience=patience, optimizer=optimizer, lr0=lr0, seed=seed, overrides=dict(train_args),
                             base_model_sha256=base_model_sha256)
    model.metadata.update({k: summary[k] for k in ("names", "epochs", "trainable_params", "total_params",
                                                    "seconds") if k in summary})
    model.metadata["framework"] = "ultralytics"
