"""The search's trial component: one trial of the search, a thin wrapper around ``yolo_kfp.model.train``
and ``yolo_kfp.model.search``."""

from kfp.dsl import Artifact, Dataset, Input, Output

from yolo_kfp.components.step_settings import TRAIN_IMAGE, component


# As the train step: a GPU pod whose retry (a preempted node) resumes from the last epoch checkpoint.
@component(TRAIN_IMAGE, timeout_hours=72, retries=3, retry_backoff_seconds=120, data_connection=True, gpu=True,
           mlflow_connection=True)
def train_trial(dataset: Input[Dataset], trial: dict, training: dict, search_epochs: int, gpus: int,
                mlflow_tracking_uri: str, mlflow_experiment: str, record: Output[Artifact]):
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
        training: The run's training parameters, checked by the preflight step (base_model ... train_args, seed).
        gpus: GPUs of the pod (a compile option); more than one trains with DDP.
        record: The trial record (JSON).
    """
    import json
    import logging
    import os
    import tempfile
    import time

    from yolo_kfp.model.search import score_on_validation, trial_record, trial_view
    from yolo_kfp.model.train import train_leased
    from yolo_kfp.params.run_parameters import training_settings
    from yolo_kfp.params.search_space import trial_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    started = time.monotonic()
    run_settings = {**training_settings(training), "gpus": gpus}  # integers again: KFP passed a dict's as floats
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
