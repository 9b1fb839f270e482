"""The search's trial component: one trial of the search, a thin wrapper around ``yolo_kfp.model.train``
and ``yolo_kfp.model.search``."""

from kfp.dsl import Artifact, Dataset, Input, Output

from yolo_kfp.components.step_settings import TRAIN_IMAGE, component


# As the train step: a GPU pod whose retry (a preempted node) resumes from the last epoch checkpoint.
@component(TRAIN_IMAGE, timeout_hours=72, retries=3, retry_backoff_seconds=120, data_connection=True, gpu=True,
           mlflow_connection=True)
def train_trial(dataset: Input[Dataset], trial: dict, base_model: str, base_model_sha256: str, epochs: int,
                batch: int, imgsz: int, freeze: int, workers: int, cache: str, patience: int, optimizer: str,
                lr0: float, seed: int, train_args: dict, search_epochs: int, gpus: int, mlflow_tracking_uri: str,
                mlflow_experiment: str, record: Output[Artifact]):
    """Trains one trial of the search with the run's settings and the trial's values over them, and scores it
    on the validation split only: it trains on a view of the dataset without the test split, which stays
    untouched until the winner's final evaluation.

    Epoch checkpoints are kept as the train step keeps them (keyed by the dataset and the trial's
    settings), so a retried trial resumes; its inputs hold nothing run-unique, so a repeated trial is
    served from KFP's cache. Writes the trial record (JSON: trial, settings, epochs, val scores,
    mlflow_run_id, seconds), also as the artifact's metadata.

    Args:
        dataset: The YOLO dataset of the convert step (its train and val splits only are read).
        trial: The trial, from the preflight step's plan: its index and its settings.
        base_model: The checkpoint to fine-tune: an Ultralytics name, a path in the image or s3://bucket/key.
        base_model_sha256: Expected SHA-256 of an s3:// base_model; empty: not checked.
        epochs: The run's training epochs.
        batch: Images per batch over all GPUs; -1 fits it to the GPU's memory.
        imgsz: Training image size in pixels.
        freeze: Layers kept frozen from the first one.
        workers: DataLoader workers per GPU at most.
        cache: Ultralytics' image cache: empty, ram or disk.
        patience: Epochs without improvement before stopping early.
        optimizer: Ultralytics optimizer name.
        lr0: Initial learning rate.
        seed: Training seed.
        train_args: Further Ultralytics training arguments.
        search_epochs: Epochs of a trial; 0: as many as epochs (a searched epochs wins).
        gpus: GPUs of the pod (a compile option); more than one trains with DDP.
        mlflow_tracking_uri: An MLflow tracking server to log the trial to; empty: none.
        mlflow_experiment: The MLflow experiment of the trial's run.
        record: The trial record (JSON).
    """
    import json
    import logging
    import os
    import tempfile
    import time

    from yolo_kfp.model.search import score_on_validation, trial_record, trial_view
    from yolo_kfp.model.train import train_leased
    from yolo_kfp.params.search_space import trial_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    started = time.monotonic()
    run_settings = {"base_model": base_model, "base_model_sha256": base_model_sha256, "epochs": epochs,
                    "batch": batch, "imgsz": imgsz, "freeze": freeze, "workers": workers, "cache": cache,
                    "patience": patience, "optimizer": optimizer, "lr0": lr0, "seed": seed,
                    "train_args": dict(train_args), "gpus": gpus}
    settings = trial_settings(run_settings, trial["settings"], search_epochs)
    with trial_view(dataset.path) as data_dir, tempfile.TemporaryDirectory(prefix="trial-") as output_dir:
        summary = train_leased(data_dir=data_dir, output_dir=output_dir, settings=settings,
                               mlflow_tracking_uri=mlflow_tracking_uri, mlflow_experiment=mlflow_experiment)
        val = score_on_validation(data_dir=data_dir, weights=os.path.join(output_dir, "weights", "best.pt"),
                                  imgsz=settings["imgsz"], batch=summary["batch"])
    result = trial_record(trial=trial["trial"], settings=trial["settings"], epochs=summary["epochs"], val=val,
                          mlflow_run_id=summary["mlflow_run_id"], seconds=time.monotonic() - started)
    with open(record.path, "w") as f:
        json.dump(result, f, indent=2)
    record.metadata.update({"trial": result["trial"], "settings": result["settings"], "epochs": result["epochs"],
                            "seconds": result["seconds"], **{f"val_{k}": v for k, v in result["val"].items()}})
