"""The preflight step's KFP component: a thin wrapper around ``yolo_kfp.params.preflight``."""

from typing import NamedTuple

from yolo_kfp.components.step_settings import DATA_IMAGE, component


# Its outputs in KFP's form, a NamedTuple made in the annotation: the step runs this function's source alone
# (after kfp's `from typing import *`), where a class defined beside it would not exist.
@component(DATA_IMAGE, timeout_hours=1, data_connection=True, cache=False)  # access can change: check anew
def preflight(publish_to: str, base_model: str, extra_data: str, open_images_cache: str, classes: list,
              max_samples_per_class: int, download_shard_size: int, split: str, split_ratios: list, epochs: int,
              batch: int, imgsz: int, freeze: int, workers: int, cache: str, patience: int, optimizer: str, lr0: float,
              seed: int, train_args: dict, min_map50: float, max_map50_drop: float, base_model_sha256: str,
              mlflow_tracking_uri: str, mlflow_experiment: str, registered_model_name: str,
              model_registry_url: str, search_space: dict, search_trials: int, search_epochs: int
              ) -> NamedTuple("Checked", fingerprint=str, trials=list, trial_count=int):  # pyright: ignore[reportInvalidTypeForm]
    """Checks the run's parameters and its access to every S3 location (publish_to, base_model,
    extra_data, open_images_cache) before any work, and to the Kubeflow Model Registry when a published
    model is to be registered there.

    Fails the run in its first step, naming what is wrong: the parameter rules of the CLI, the base
    model's depth against freeze (an s3:// checkpoint is fetched for it and its checksum checked).
    Returns a fingerprint of the objects under extra_data, which keys the cache of the step that reads them,
    and the search's trial plan (search_space, search_trials and seed; empty without a search) and its length.

    Args:
        publish_to: s3://bucket/prefix the model will be published to: a probe object is written and deleted.
        base_model: The checkpoint to fine-tune: a published name, a path in the image, or s3:// (fetched here).
        extra_data: s3://bucket/prefix of the user's own labelled images: listed and fingerprinted.
        open_images_cache: s3://bucket/prefix for Open Images' metadata CSVs: a probe object is written and deleted.
        classes: Open Images display names to detect.
        max_samples_per_class: Images drawn for each class.
        download_shard_size: Images per download shard.
        split: The Open Images split: train, validation or test.
        split_ratios: Shares of train, val and test.
        epochs: Training epochs.
        batch: Images per batch, or -1 (AutoBatch).
        imgsz: Image size in pixels.
        freeze: Layers kept frozen: checked against the base model's depth.
        workers: DataLoader workers per GPU at most.
        cache: Ultralytics' image cache: empty, ram or disk.
        patience: Epochs without improvement before training stops early.
        optimizer: Ultralytics optimizer name.
        lr0: Initial learning rate.
        seed: Seed of the draw, the split and training.
        train_args: Further Ultralytics training arguments: known keys only, none that a parameter sets.
        min_map50: The gate's threshold.
        max_map50_drop: The gate's allowed drop against the published model.
        base_model_sha256: Expected SHA-256 of an s3:// base_model; empty: not checked.
        mlflow_tracking_uri: An MLflow tracking server's URL, or empty.
        mlflow_experiment: The MLflow experiment's name.
        registered_model_name: The registered model's name (MLflow, Kubeflow Model Registry).
        model_registry_url: A Kubeflow Model Registry's REST address, or empty: with publish_to set, the
            registry is reached with the pod's token (address, TLS, permissions).
        search_space: Settings to search: each searched value is checked as its parameter (freeze against the
            base model's depth).
        search_trials: Trials to sample; 0: the whole grid.
        search_epochs: Epochs per trial; 0: as many as epochs.
    """
    import logging

    from yolo_kfp.params.preflight import check_s3_inputs
    from yolo_kfp.params.search_space import plan_trials
    from yolo_kfp.params.validation import base_model_problems, check, deepest_freeze, parameter_problems
    from yolo_kfp.release.registry import check_access

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    check(parameter_problems({
        "classes": list(classes), "max_samples_per_class": max_samples_per_class,
        "download_shard_size": download_shard_size, "split": split, "split_ratios": list(split_ratios),
        "epochs": epochs, "batch": batch, "imgsz": imgsz, "freeze": freeze, "workers": workers, "cache": cache,
        "patience": patience, "optimizer": optimizer, "lr0": lr0, "seed": seed, "train_args": dict(train_args),
        "base_model": base_model, "min_map50": min_map50, "max_map50_drop": max_map50_drop,
        "publish_to": publish_to, "extra_data": extra_data, "open_images_cache": open_images_cache,
        "base_model_sha256": base_model_sha256, "mlflow_tracking_uri": mlflow_tracking_uri,
        "mlflow_experiment": mlflow_experiment, "registered_model_name": registered_model_name,
        "model_registry_url": model_registry_url, "search_space": dict(search_space),
        "search_trials": search_trials, "search_epochs": search_epochs})
        + base_model_problems(base_model, deepest_freeze({"freeze": freeze, "search_space": dict(search_space)})))
    fingerprint = check_s3_inputs(publish_to=publish_to, base_model=base_model, extra_data=extra_data,
                                  open_images_cache=open_images_cache, base_model_sha256=base_model_sha256,
                                  freeze=deepest_freeze({"freeze": freeze, "search_space": dict(search_space)}))
    if publish_to and model_registry_url:  # only a published model is registered
        check_access(registry_url=model_registry_url)
    trials = plan_trials(dict(search_space), int(search_trials), int(seed))
    return fingerprint, trials, len(trials)
