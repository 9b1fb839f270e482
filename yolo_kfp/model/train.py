"""Train: Ultralytics transfer learning from a base checkpoint with the backbone frozen.

The base checkpoint's head is adapted to the dataset's classes by Ultralytics (rows of classes with
the same name are kept), layers ``0..freeze-1`` are frozen, and the number of trainable parameters is
recorded. The run's training parameters reach Ultralytics by their names; ``train_args`` passes any other
Ultralytics training argument through, as ``yolo train`` would take it.

On several GPUs Ultralytics trains in DDP worker processes it starts itself: nothing here relies on
callbacks in the training process, so the checkpoint copy and the parameter counts work either way.
"""

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from typing import Any

from yolo_kfp.infra.storage import S3Url, Storage, check_checksum, is_s3
from yolo_kfp.model import safe_checkpoint
from yolo_kfp.model.across_nodes import World, across_nodes_trainer, from_first, join, shared_file, torchrun_world
from yolo_kfp.model.checkpoints import Checkpoints, keeping_checkpoint
from yolo_kfp.model.safe_checkpoint import drop_label_caches
from yolo_kfp.params import run_parameters
from yolo_kfp.params.validation import check, check_freeze, named_training_args, plain_numbers, train_args_problems

log = logging.getLogger(__name__)

# What Ultralytics records in a checkpoint that differs between attempts of one training: paths, the device and
# what it allows (amp), what the pod's size fits (batch under AutoBatch, workers, cache), the run folder's name.
ATTEMPT_ARGS = {"model", "data", "save_dir", "device", "amp", "batch", "workers", "cache", "name", "resume"}
AUTO_OPTIMIZER_ARGS = {"optimizer", "lr0", "momentum", "warmup_bias_lr"}  # what optimizer=auto chooses itself


def dataset_yaml(data_dir: str) -> str:
    """The dataset's ``dataset.yaml``, read now: a broken one is told before a base model is fetched."""
    import yaml

    path = os.path.join(data_dir, "dataset.yaml")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{data_dir} holds no dataset.yaml: is it the output of the convert step?")
    try:
        with open(path) as f:
            declared = yaml.safe_load(f)
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not YAML ({type(error).__name__}): is it the convert step's?") from None
    if not isinstance(declared, dict) or not {"train", "val", "names"} <= set(declared):
        raise ValueError(f"{path} does not name the train and val images and the class names (train, val, names): "
                         "is it the convert step's?")
    return path


def ultralytics_device(gpus: int) -> str:
    """Ultralytics' ``device`` for the pod's GPUs: all of them (DDP) when more than one, else its own choice."""
    return ",".join(str(i) for i in range(gpus)) if gpus > 1 else ""


def parameter_counts(model, freeze: int) -> dict:
    """Total and trainable parameters under Ultralytics' freeze rule: layers ``model.0.`` to
    ``model.{freeze-1}.`` and the DFL conv are frozen, every other parameter trains."""
    frozen = tuple(f"model.{i}." for i in range(freeze)) + (".dfl",)
    params = list(model.named_parameters())
    return {"total_params": sum(p.numel() for _, p in params),
            "trainable_params": sum(p.numel() for name, p in params if not any(f in name for f in frozen))}


def fetch_base_model(base_model: str, sha256: str, workdir: str) -> str:
    """A local path for ``base_model``: an ``s3://`` URL is downloaded and, given ``sha256``, verified. A
    checkpoint file (downloaded or given as a path) must load weights-only: it came from outside this run."""
    path = base_model
    if is_s3(base_model):
        url = S3Url.parse(base_model)
        # not its own name: Ultralytics takes a file called yolov5n.pt for yolov5nu.pt and would download that
        path = Storage.from_env().download_file(url, os.path.join(workdir, "base-model.pt"))
        check_checksum(path, sha256, f"base_model {base_model}")
        log.info("base model %s -> %s", base_model, path)
    if os.path.isfile(path) and path.endswith(".pt"):
        safe_checkpoint.load(path, "base_model")
    return path


def resume_epoch(last: str, expected: dict | None = None) -> int | None:
    """The 0-based epoch a checkpoint resumes at; None where there is none or its training finished.

    A checkpoint that does not load (the pod was killed while Ultralytics wrote it) is moved aside to
    ``last.pt.unreadable``: the run then restores the copy in S3, or starts over, instead of failing on
    every retry. One that holds more than an Ultralytics checkpoint does (planted in the bucket) is
    refused: ``safe_checkpoint.UnsafeCheckpoint``. Given ``expected`` (the Ultralytics arguments this run
    starts with), one whose recorded arguments are others (``resume_problems``) is moved aside to
    ``last.pt.refused``: Ultralytics resumes with the checkpoint's arguments, not the run's.
    """
    if not os.path.exists(last):
        return None
    try:
        checkpoint = safe_checkpoint.load(last, "the epoch checkpoint")
    except safe_checkpoint.UnreadableCheckpoint as error:
        os.replace(last, last + ".unreadable")
        log.warning("%s: moved aside, not resumed from", error)
        return None
    epoch = checkpoint.get("epoch", -1)
    if epoch is None or epoch < 0:  # Ultralytics marks a finished run with -1
        return None
    problems = resume_problems(checkpoint.get("train_args"), expected) if expected is not None else []
    if problems:
        os.replace(last, last + ".refused")
        log.warning("%s: not resumed from, its training arguments are not this run's: %s", last,
                    "; ".join(problems[:5]))
        return None
    return epoch + 1


def resume_problems(recorded, expected: dict) -> list[str]:
    """How a checkpoint's recorded training arguments differ from a run's: ``expected`` (what the run starts
    with), the others at Ultralytics' defaults; ``ATTEMPT_ARGS`` may differ."""
    from ultralytics.utils import DEFAULT_CFG_DICT

    if not isinstance(recorded, dict):
        return ["it records no training arguments"]
    free = ATTEMPT_ARGS | (AUTO_OPTIMIZER_ARGS if expected.get("optimizer") == "auto" else set()) | (
        {"epochs"} if expected.get("time") else set())  # a time limit sets the epochs
    problems = []
    for key in sorted((set(recorded) | set(expected)) - free, key=str):
        want = expected[key] if key in expected else DEFAULT_CFG_DICT.get(key)
        if key not in expected and key not in DEFAULT_CFG_DICT:
            problems.append(f"{str(key)[:40]!r} is not an Ultralytics argument")
        elif recorded.get(key, DEFAULT_CFG_DICT.get(key)) != want:
            problems.append(f"{key}={str(recorded.get(key))[:60]!r} (this run: {want!r})")
    return problems


def dataset_fingerprint(data_dir: str) -> str:
    """What identifies a YOLO dataset, as a short digest: ``dataset.yaml`` and the label files' content, the
    images' names and sizes; not its report, which holds timings."""
    digest = hashlib.sha256()
    with open(dataset_yaml(data_dir), "rb") as f:
        digest.update(f.read())
    for folder in ("images", "labels"):
        for root, dirs, files in os.walk(os.path.join(data_dir, folder)):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(root, name)
                digest.update(f"{os.path.relpath(path, data_dir)}\0{os.path.getsize(path)}\0".encode())
                if folder == "labels":
                    with open(path, "rb") as f:
                        digest.update(f.read())
    return digest.hexdigest()[:20]


def training_key(data_dir: str, settings: dict) -> str:
    """What defines a training, as a short digest: the training settings and the dataset's fingerprint.
    Equal for a retried pod and for an identical re-run."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    digest.update(dataset_fingerprint(data_dir).encode())
    return digest.hexdigest()[:20]


def trim_results(output_dir: str, epochs_done: int) -> None:
    """Drops the rows of ``results.csv`` past the checkpoint's epoch: a pod killed between writing an epoch's
    row and its checkpoint trains that epoch again, and Ultralytics appends its row a second time."""
    path = os.path.join(output_dir, "results.csv")
    if not os.path.exists(path):
        return
    with open(path) as f:
        header, *rows = f.read().splitlines()
    kept = [row for row in rows if int(float(row.split(",", 1)[0])) <= epochs_done]
    with open(path, "w") as f:
        f.write("\n".join([header, *kept]) + "\n")


def restore_checkpoint(checkpoints: Checkpoints, last: str) -> None:
    """Fetches the durable copy of ``last.pt`` (a retried pod starts empty) unless one is already here."""
    place = checkpoints.place  # claimed: the shared place or one of this training's own
    if not os.path.exists(last) and place is not None and place.exists():
        place.fetch(last)
        log.info("checkpoint %s restored", place.location)


def gpu_count(device: str) -> int:
    """GPUs the run trains on: those listed in ``device``, else all the pod has (none for ``cpu``)."""
    import torch

    if device == "cpu":
        return 0
    return len(device.split(",")) if device else torch.cuda.device_count()


def fit_batch(model, batch: int, imgsz: int, gpus: int) -> int:
    """``batch=-1``: the largest batch that fills 60% of one GPU's memory (Ultralytics' AutoBatch) times
    the GPUs, resolved before training so that workers and /dev/shm are planned for it (Ultralytics'
    own AutoBatch also refuses several GPUs). Without a GPU, Ultralytics' default of 16."""
    if batch != -1:
        return batch
    import copy

    import torch
    from ultralytics.utils.autobatch import check_train_batch_size

    device = torch.device("cuda:0" if gpus and torch.cuda.is_available() else "cpu")
    probe = copy.deepcopy(model.model).float().to(device).train()  # checkpoints keep half-precision weights
    for p in probe.parameters():
        p.requires_grad_(True)  # gradients everywhere: the batch found also fits with fewer layers frozen
    per_gpu = check_train_batch_size(probe, imgsz, amp=device.type == "cuda")
    log.info("batch -1 -> %d per GPU x %d GPU(s)", per_gpu, max(gpus, 1))
    return per_gpu * max(gpus, 1)


def fit_to_pod(workers: int, cache: str, batch: int, imgsz: int, gpus: int, data_dir: str,
               world: World | None = None) -> tuple[int, str]:
    """Workers, threads and cache sized by the pod's CPU quota, /dev/shm and memory limit (not the node's).
    Across nodes the batch is split over every node's processes, the pod's resources over its own."""
    from yolo_kfp.infra import resources
    from yolo_kfp.model.ultralytics_env import limit_threads

    cpus = resources.cpu_limit()
    threads = resources.plan_threads(cpus)
    if threads is not None:
        limit_threads(threads)
    # DDP splits the batch: each process loads its part
    per_process = max(1, batch // (world.size if world else max(gpus, 1)))
    workers = resources.plan_workers(workers, gpus, cpus, resources.shm_bytes(), per_process, imgsz)
    images = len(os.listdir(os.path.join(data_dir, "images", "train")))
    return workers, resources.plan_cache(cache, images, imgsz, resources.memory_limit())


def train_yolo(*, data_dir: str, output_dir: str, device: str = "", checkpoints: Checkpoints | None = None,
               **settings) -> dict:
    """Fine-tunes ``base_model`` on the YOLO dataset in ``data_dir``; writes weights and logs to ``output_dir``.

    ``settings`` are the run's training parameters by name (``run_parameters.TRAINING``: base_model, epochs,
    batch, ..., train_args); the parameter table's defaults fill in the rest, and the Ultralytics arguments
    among them reach ``model.train`` as they are. ``base_model`` is an Ultralytics checkpoint name, a local path
    or an ``s3://`` URL. Every epoch leaves ``output_dir/weights/last.pt`` (and a copy in ``checkpoints``,
    claimed, if given): run again on the same output dir, or with the same checkpoints' location, training
    resumes from the last finished epoch instead of starting over. A finished training removes the copy.

    Started by ``torchrun`` on several nodes (``yolo_kfp.model.across_nodes``), every process trains one model
    together: global rank 0 decides whether and where to resume, keeps the checkpoints and writes the outputs;
    the others take its decisions and its checkpoint, write nothing and return only their rank.
    """
    from yolo_kfp.model.ultralytics_env import configure_offline

    settings = run_parameters.training_settings(settings)
    base_model, freeze, imgsz = settings["base_model"], settings["freeze"], settings["imgsz"]
    check(train_args_problems(settings["train_args"]))
    data = dataset_yaml(data_dir)  # before Ultralytics starts: a broken dataset is told alone, in one line
    configure_offline()
    import torch
    from ultralytics import YOLO
    from ultralytics.engine.trainer import BaseTrainer

    started = time.monotonic()
    output_dir = os.path.abspath(output_dir)
    last = os.path.join(output_dir, "weights", "last.pt")
    fresh_args = {**{name: settings[name] for name in named_training_args()}, **plain_numbers(settings["train_args"])}
    world = torchrun_world()
    if world:  # the group is joined first: rank 0 decides for every rank
        device = "cpu" if join(world) == "cpu" else ""  # a GPU: the trainer takes the local rank's
        checkpoints = checkpoints if world.is_first else None
    with checkpoints.released_on_failure() if checkpoints else contextlib.nullcontext():
        start = None if world and not world.is_first else resume_epoch(last, fresh_args)
        if start is None and checkpoints:
            restore_checkpoint(checkpoints, last)
            start = resume_epoch(last, fresh_args)
        start = from_first(world, start) if world else start
        drop_label_caches(data_dir)
        gpus = gpu_count(device)
        common = {"data": data, **({"device": device} if device else {})}
        with tempfile.TemporaryDirectory(prefix="yolo-base-") as work:
            if start is None:
                model = YOLO(fetch_base_model(base_model, settings["base_model_sha256"], work))
                network = model.model  # a detection model: its layers are an nn.Sequential
                if not isinstance(network, torch.nn.Module) or not isinstance(network.model, torch.nn.Sequential):
                    raise ValueError(f"base_model {base_model} is not an Ultralytics YOLO detection model")
                check_freeze(freeze, len(network.model), base_model)
                batch = fit_batch(model, settings["batch"], imgsz, gpus)
                batch = from_first(world, batch) if world else batch
                # save_dir, not project/name: Ultralytics renames a run called "model" after its weights
                args = {**common, **fresh_args, "batch": batch, "save_dir": output_dir}
            else:
                if not world or world.is_first:
                    trim_results(output_dir, start)
                resume_from = shared_file(world, last, work) if world else last  # rank 0's, on every rank
                log.info("resuming %s at epoch %d of %d", resume_from, start + 1, settings["epochs"])
                # save_dir: a retried pod may mount the artifact elsewhere than the checkpoint remembers
                model, args = YOLO(resume_from), {**common, "resume": True, "save_dir": output_dir}
                resumed: dict[str, Any] = model.ckpt or {}  # the checkpoint's dict
                batch = int(resumed["train_args"]["batch"])
            workers, cache = fit_to_pod(settings["workers"], settings["cache"], batch, imgsz, gpus, data_dir, world)
            args.update(workers=workers, cache=cache or False)
            log.info("Ultralytics train %s", args)
            training_started = time.monotonic()
            keeping = keeping_checkpoint(last, checkpoints, resume_epoch) if checkpoints else contextlib.nullcontext()
            with keeping:
                model.train(**args, **({"trainer": across_nodes_trainer(world)} if world else {}))
            training_seconds = round(time.monotonic() - training_started, 2)
        if checkpoints:
            checkpoints.finish()
    if world and not world.is_first:
        return {"rank": world.rank}
    trainer = model.trainer
    if not isinstance(trainer, BaseTrainer):  # one dataset: a task's trainer (several: Ultralytics' MultiTrainer)
        raise RuntimeError(f"Ultralytics trained with {type(trainer).__name__}, not a trainer of one dataset")
    best: dict[str, Any] = model.ckpt or {}  # best.pt's dict, which Ultralytics loads after training
    counts = parameter_counts(model.model, freeze)
    summary = {"base_model": base_model, "names": list(trainer.data["names"].values()), "epochs": trainer.epochs,
               "resumed_at_epoch": None if start is None else start + 1, "freeze": freeze, "imgsz": imgsz,
               "batch": trainer.batch_size, "device": str(trainer.device),
               # from best.pt: under DDP the trainer here did not train, its workers did
               "best_fitness": float(best.get("train_metrics", {}).get("fitness") or 0.0), **counts,
               "seconds": round(time.monotonic() - started, 2), "training_seconds": training_seconds}
    with open(os.path.join(output_dir, "train_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    log.info("trained %d epochs: %d of %d parameters trainable", summary["epochs"], counts["trainable_params"],
             counts["total_params"])
    return summary


def train_leased(*, data_dir: str, output_dir: str, settings: dict, mlflow_tracking_uri: str = "",
                 mlflow_experiment: str = "") -> dict:
    """``train_yolo`` with ``settings`` (the training parameters, ``run_parameters.TRAINING``, and gpus), its epoch
    checkpoints kept in the data connection's bucket under the lease of their key (the dataset and the settings):
    a retried pod takes over its own and resumes, an identical run at once keeps its own. With an MLflow server,
    the training is logged to a run that a retried pod goes on in. Returns train_yolo's summary with where the
    checkpoints are kept (``checkpoints``, or "") and the MLflow run (``mlflow_run_id``, or ""). Across nodes
    (under torchrun) only global rank 0 does all this; the other ranks train, and return their rank."""
    from yolo_kfp.model import tracking
    from yolo_kfp.model.checkpoints import checkpoint_location

    world = torchrun_world()
    if world and not world.is_first:  # across nodes, rank 0 keeps the checkpoints and logs to MLflow
        return train_yolo(data_dir=data_dir, output_dir=output_dir,
                          **{name: settings[name] for name in run_parameters.TRAINING})
    key = training_key(data_dir, settings)
    checkpoint_to = checkpoint_location(key)
    checkpoints = Checkpoints(checkpoint_to).claim() if checkpoint_to else None
    if not checkpoints:
        log.warning("no data connection bucket: checkpoints stay in the pod, a retry starts over")
    mlflow_run = ""
    if mlflow_tracking_uri:
        mlflow_run = (checkpoints and checkpoints.record.get("mlflow_run")) or tracking.start_training_run(
            tracking_uri=mlflow_tracking_uri, experiment=mlflow_experiment, training=key, params=settings,
            tags={tracking.DATASET_TAG: dataset_fingerprint(data_dir)})
        if checkpoints:
            checkpoints.note(mlflow_run=mlflow_run)  # a retried pod goes on in the same MLflow run
    summary = train_yolo(data_dir=data_dir, output_dir=output_dir, device=ultralytics_device(settings["gpus"]),
                         checkpoints=checkpoints, **{name: settings[name] for name in run_parameters.TRAINING})
    if mlflow_tracking_uri:
        tracking.finish_training_run(tracking_uri=mlflow_tracking_uri, run_id=mlflow_run, output_dir=output_dir)
    return {**summary, "checkpoints": checkpoints.place.location if checkpoints and checkpoints.place else "",
            "mlflow_run_id": mlflow_run}
