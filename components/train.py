"""The train step's KFP component: a thin wrapper around ``yolo_kfp.model.train``."""

from kfp.dsl import HTML, Dataset, Input, Markdown, Model, Output

from yolo_kfp.components.step_settings import TRAIN_IMAGE, component


# A retry (a preempted GPU node) resumes from the last epoch checkpoint.
@component(TRAIN_IMAGE, timeout_hours=72, retries=3, retry_backoff_seconds=120, data_connection=True, gpu=True,
           mlflow_connection=True)
def train(dataset: Input[Dataset], training: dict, gpus: int, mlflow_tracking_uri: str, mlflow_experiment: str,
          search: str, model: Output[Model], search_table: Output[Markdown], search_picture: Output[HTML]):
    """Fine-tunes a YOLO checkpoint (Ultralytics) on the YOLO dataset with its first `freeze` layers frozen.

    base_model is an Ultralytics checkpoint name, a path in the image or an s3:// URL (checked against
    base_model_sha256 when given). Writes weights/best.pt, weights/last.pt, args.yaml, results.csv (per
    epoch) and train_summary.json (including how many parameters were trainable). train_args passes
    further Ultralytics arguments. gpus > 1 trains on all of them with Ultralytics' DDP (batch is the
    total, split across them). Each epoch's checkpoint is also kept in the data connection's bucket
    under yolo-kfp/checkpoints/<key>/, the key made of the dataset and these settings, so a retried
    (preempted) step or an identical re-run resumes where it stopped. With mlflow_tracking_uri set, the
    training is logged to an MLflow run (yolo_kfp.model.tracking), named in the model's metadata.

    After a search (search: its search.json), the winner's settings are trained over these (its epochs
    only if epochs was searched), search.json is kept with the model, the trials are shown as a table
    and a picture, and with MLflow the trials' runs are nested under this training's run.

    Args:
        dataset: The YOLO dataset of the convert step.
        training: The run's training parameters, checked by the preflight step (base_model ... train_args, seed).
        gpus: GPUs of the pod (a compile option); more than one trains with DDP.
        search: The search's result (JSON: space, trials, winner) from the choose-trial step; empty: no search.
        model: The trained model: weights/{best,last}.pt, args.yaml, results.csv, train_summary.json and,
            after a search, search.json.
        search_table: The search's trials as a Markdown table (or that no search was run).
        search_picture: The search's trials against their settings, as an HTML page (or that none was run).
    """
    import logging

    from yolo_kfp.infra.packing import materialized
    from yolo_kfp.model.train import train_leased
    from yolo_kfp.model.train_step import train_step

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def on_this_pod(settings: dict) -> dict:
        with materialized(dataset.path) as data_dir:
            return train_leased(data_dir=data_dir, output_dir=model.path, settings=settings,
                                mlflow_tracking_uri=mlflow_tracking_uri, mlflow_experiment=mlflow_experiment)

    train_step(training=training, gpus=gpus, search=search, model=model, search_table=search_table.path,
               search_picture=search_picture.path, mlflow_tracking_uri=mlflow_tracking_uri, train=on_this_pod)
