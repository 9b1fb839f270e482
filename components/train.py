"""Train: Ultralytics transfer learning from a base checkpoint with the backbone frozen.

The base checkpoint's head is adapted to the dataset's classes by Ultralytics (rows of classes with
the same name are kept), layers ``0..freeze-1`` are frozen, and the number of trainable parameters is
recorded. Ultralytics' own defaults apply to every argument not given; ``overrides`` passes any other
Ultralytics training argument through, as ``yolo train`` would take it.
"""

import json
import logging
import os
import tempfile
import time

from kfp.dsl import Dataset, Input, Model, Output

from components.images import TRAIN_IMAGE, component
from components.storage import S3Url, Storage, is_s3, sha256_of
from components.validation import check_freeze, plain_numbers

log = logging.getLogger(__name__)


def dataset_yaml(data_dir: str) -> str:
    path = os.path.join(data_dir, "dataset.yaml")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{data_dir} holds no dataset.yaml: is it the output of the convert step?")
    return path


def parameter_counts(model) -> dict:
    params = list(model.parameters())
    return {"total_params": sum(p.numel() for p in params),
            "trainable_params": sum(p.numel() for p in params if p.requires_grad)}


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


def resume_epoch(last: str) -> int | None:
    """The 0-based epoch a checkpoint resumes at; None where there is none or its training finished."""
    if not os.path.exists(last):
        return None
    import torch

    epoch = torch.load(last, map_location="cpu", weights_only=False).get("epoch", -1)
    return None if epoch is None or epoch < 0 else epoch + 1  # Ultralytics marks a finished run with -1


def restore_checkpoint(checkpoint_to: str, last: str) -> None:
    """Fetches the durable copy of ``last.pt`` (a retried pod starts empty) unless one is already here."""
    url = S3Url.parse(checkpoint_to).join("last.pt")
    storage = Storage.from_env()
    if not os.path.exists(last) and storage.exists(url):
        storage.download_file(url, last)
        log.info("checkpoint %s restored", url)


def keep_checkpoint(checkpoint_to: str):
    """An Ultralytics callback that copies each epoch's ``last.pt`` to ``checkpoint_to``."""
    url, storage = S3Url.parse(checkpoint_to).join("last.pt"), Storage.from_env()

    def on_model_save(trainer):
        storage.upload_file(str(trainer.last), url)

    return on_model_save


def fit_to_pod(workers: int, cache: str, batch: int, imgsz: int, device: str, data_dir: str) -> tuple[int, str]:
    """Workers and cache sized by the pod's CPU quota, /dev/shm and memory limit (not the node's)."""
    import torch

    from components import resources

    gpus = 0 if device == "cpu" else torch.cuda.device_count()
    workers = resources.plan_workers(workers, gpus, resources.cpu_limit(), resources.shm_bytes(), batch, imgsz)
    images = len(os.listdir(os.path.join(data_dir, "images", "train")))
    return workers, resources.plan_cache(cache, images, imgsz, resources.memory_limit())


def train_yolo(data_dir: str, output_dir: str, base_model: str = "yolov5nu.pt", epochs: int = 50, batch: int = 256,
               imgsz: int = 640, freeze: int = 10, workers: int = 8, cache: str = "", device: str = "",
               patience: int = 100, optimizer: str = "auto", lr0: float = 0.01, seed: int = 42,
               overrides: dict | None = None, base_model_sha256: str = "", checkpoint_to: str = "") -> dict:
    """Fine-tunes ``base_model`` on the YOLO dataset in ``data_dir``; writes weights and logs to ``output_dir``.

    ``base_model`` is an Ultralytics checkpoint name, a local path or an ``s3://`` URL. Every epoch
    leaves ``output_dir/weights/last.pt`` (and a copy under ``checkpoint_to``, an S3 prefix, if given):
    run again on the same output dir, or with the same ``checkpoint_to``, training resumes from the
    last finished epoch instead of starting over.
    """
    from components.ultralytics_env import configure_offline

    configure_offline()
    from ultralytics import YOLO

    started = time.monotonic()
    counts = {}
    output_dir = os.path.abspath(output_dir)
    last = os.path.join(output_dir, "weights", "last.pt")
    if checkpoint_to:
        restore_checkpoint(checkpoint_to, last)
    start = resume_epoch(last)
    workers, cache = fit_to_pod(workers, cache, batch, imgsz, device, data_dir)
    common = {"data": dataset_yaml(data_dir), "workers": workers, "cache": cache or False,
              **({"device": device} if device else {})}
    with tempfile.TemporaryDirectory(prefix="yolo-base-") as work:
        if start is None:
            model = YOLO(fetch_base_model(base_model, base_model_sha256, work))
            check_freeze(freeze, len(model.model.model), base_model)
            args = {**common, "epochs": epochs, "batch": batch, "imgsz": imgsz, "freeze": freeze,
                    "patience": patience, "optimizer": optimizer, "lr0": lr0, "seed": seed,
                    # save_dir, not project/name: Ultralytics renames a run called "model" after its weights
                    "save_dir": output_dir, **plain_numbers(overrides or {})}
        else:
            log.info("resuming %s at epoch %d of %d", last, start + 1, epochs)
            # save_dir: a retried pod may mount the artifact elsewhere than the checkpoint remembers
            model, args = YOLO(last), {**common, "resume": True, "save_dir": output_dir}
        model.add_callback("on_train_start", lambda trainer: counts.update(parameter_counts(trainer.model)))
        if checkpoint_to:
            model.add_callback("on_model_save", keep_checkpoint(checkpoint_to))
        log.info("Ultralytics train %s", args)
        model.train(**args)
    trainer = model.trainer
    summary = {"base_model": base_model, "names": list(trainer.data["names"].values()), "epochs": trainer.epochs,
               "resumed_at_epoch": None if start is None else start + 1, "freeze": freeze, "imgsz": imgsz,
               "batch": trainer.batch_size, "device": str(trainer.device),
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
          train_args: dict, run_id: str, model: Output[Model]):
    """Fine-tunes a YOLO checkpoint (Ultralytics) on the YOLO dataset with its first `freeze` layers frozen.

    base_model is an Ultralytics checkpoint name, a path in the image or an s3:// URL (checked against
    base_model_sha256 when given). Writes weights/best.pt, weights/last.pt, args.yaml, results.csv (per
    epoch) and train_summary.json (including how many parameters were trainable). train_args passes
    further Ultralytics arguments. Each epoch's checkpoint is also kept in the data connection's bucket
    under yolo-kfp/checkpoints/<run_id>/, so a retried (preempted) step resumes where it stopped.
    """
    import logging
    import os

    from components.packing import materialized
    from components.train import train_yolo

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    bucket = os.environ.get("AWS_S3_BUCKET", "")
    checkpoint_to = f"s3://{bucket}/yolo-kfp/checkpoints/{run_id}" if bucket and run_id else ""
    if not checkpoint_to:
        logging.warning("no data connection bucket: checkpoints stay in the pod, a retry starts over")
    with materialized(dataset.path) as data_dir:
        summary = train_yolo(data_dir, model.path, base_model, epochs, batch, imgsz, freeze, workers, cache,
                             patience=patience, optimizer=optimizer, lr0=lr0, seed=seed, overrides=dict(train_args),
                             base_model_sha256=base_model_sha256, checkpoint_to=checkpoint_to)
    model.metadata.update({k: summary[k] for k in ("names", "epochs", "trainable_params", "total_params",
                                                    "seconds") if k in summary})
    model.metadata["framework"] = "ultralytics"
