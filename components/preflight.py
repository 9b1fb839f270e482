"""The preflight step's KFP component: a thin wrapper around ``yolo_kfp.params.preflight``."""

from typing import NamedTuple

from yolo_kfp.components.step_settings import DATA_IMAGE, component


# Its outputs in KFP's form, a NamedTuple made in the annotation: the step runs this function's source alone
# (after kfp's `from typing import *`), where a class defined beside it would not exist.
# Never cached: access can change between runs, so it is checked anew.
@component(DATA_IMAGE, timeout_hours=1, data_connection=True, mlflow_connection=True, registry_connection=True,
           cache=False)
def preflight(publish_to: str, base_model: str, extra_data: str, open_images_cache: str, classes: list,
              max_samples_per_class: int, download_shard_size: int, split: str, split_ratios: list, epochs: int,
              batch: int, imgsz: int, freeze: int, workers: int, cache: str, patience: int, optimizer: str, lr0: float,
              seed: int, train_args: dict, min_map50: float, max_map50_drop: float, base_model_sha256: str,
              mlflow_tracking_uri: str, mlflow_experiment: str, registered_model_name: str,
              model_registry_url: str, search_space: dict, search_trials: int, search_epochs: int,
              extra_data_format: str, class_map: dict, publish_oci: str
              ) -> NamedTuple("Checked", fingerprint=str, trials=list, trial_count=int,  # pyright: ignore[reportInvalidTypeForm]
                              training=dict):
    """Checks the run's parameters and its access to every S3 location (publish_to, base_model,
    extra_data, open_images_cache) before any work, to the MLflow server with its credentials when the run
    is tracked, to the Kubeflow Model Registry when a published model is to be registered there, and to the
    OCI registry of publish_oci with the registry Secret's credentials when the model's image is to be pushed.

    Fails the run in its first step, naming what is wrong: the parameter rules of the CLI, an MLflow or
    registry host the pipeline was not compiled to send credentials to (yolo_kfp.params.service_hosts), the
    base model's depth against freeze (an s3:// checkpoint is fetched for it and its checksum checked).
    Returns a fingerprint of the objects under extra_data, which keys the cache of the step that reads them,
    the search's trial plan (search_space, search_trials and seed; empty without a search) and its length, and
    the checked training parameters (yolo_kfp.params.run_parameters.TRAINING) for the train and trial steps.
    Every input is the run parameter of its name.
    """
    values = dict(locals())  # every input, by the name of its run parameter
    import logging

    from yolo_kfp.model import tracking
    from yolo_kfp.params.preflight import check_s3_inputs
    from yolo_kfp.params.run_parameters import TRAINING
    from yolo_kfp.params.search_space import plan_trials
    from yolo_kfp.params.service_hosts import compiled_service_hosts, service_url_problems
    from yolo_kfp.params.validation import base_model_problems, check, deepest_freeze, parameter_problems
    from yolo_kfp.release.registry import check_access

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    check(parameter_problems(values) + service_url_problems(values, compiled_service_hosts())
        + base_model_problems(base_model, deepest_freeze({"freeze": freeze, "search_space": dict(search_space)})))
    fingerprint = check_s3_inputs(publish_to=publish_to, base_model=base_model, extra_data=extra_data,
                                  open_images_cache=open_images_cache, base_model_sha256=base_model_sha256,
                                  freeze=deepest_freeze({"freeze": freeze, "search_space": dict(search_space)}))
    if mlflow_tracking_uri:
        tracking.check_access(mlflow_tracking_uri)
    if publish_to and model_registry_url:  # only a published model is registered
        check_access(registry_url=model_registry_url)
    if publish_to and publish_oci:
        from yolo_kfp.release.oci_client import check_credentials

        check_credentials(publish_oci)
    trials = plan_trials(dict(search_space), int(search_trials), int(seed))
    return fingerprint, trials, len(trials), {name: values[name] for name in TRAINING}
