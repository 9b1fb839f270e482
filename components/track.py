"""The track step's KFP component: a thin wrapper around ``yolo_kfp.model.tracking``."""

from kfp.dsl import Artifact, Input, Model

from yolo_kfp.components.step_settings import DATA_IMAGE, Resources, component


# Never from the cache: it tags the training's MLflow run with this KFP run, whichever run trained it.
@component(DATA_IMAGE, timeout_hours=1, cache=False, mlflow_connection=True,
           resources=Resources(cpu="250m", cpu_limit="500m", memory="512Mi"))
def track(model: Input[Model], metrics_json: Input[Artifact], mlflow_tracking_uri: str, run_id: str):
    """Adds the test-split metrics and the KFP run's id to the training's MLflow run.

    Args:
        model: The train step's model; its metadata names its MLflow run.
        metrics_json: The evaluate step's metrics.json.
        run_id: The KFP run's id, set as the MLflow run's kfp.run_id tag.
    """
    import json
    import logging

    from yolo_kfp.model import tracking

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with open(metrics_json.path) as f:
        metrics = json.load(f)
    tracking.log_evaluation(tracking_uri=mlflow_tracking_uri, run_id=model.metadata["mlflow_run_id"],
                            metrics=metrics, tags={tracking.RUN_ID_TAG: run_id})
