"""The train step across nodes (compile option --nodes above 1): a thin wrapper around
``yolo_kfp.model.node_training.launch``, the training's settings and records as the one-node step has them."""

from kfp.dsl import HTML, Dataset, Input, Markdown, Model, Output

from yolo_kfp.components.step_settings import TRAIN_IMAGE, component


# The launcher waits for its job; a retry makes a new job, which resumes from the last epoch's checkpoint.
@component(TRAIN_IMAGE, timeout_hours=72, retries=3, retry_backoff_seconds=120, data_connection=True,
           mlflow_connection=True)
def train_on_nodes(dataset: Input[Dataset], training: dict, gpus: int, nodes_job: dict, mlflow_tracking_uri: str,
                   mlflow_experiment: str, search: str, model: Output[Model], search_table: Output[Markdown],
                   search_picture: Output[HTML]):
    """Trains one model across nodes with the cluster's own engine (Kubeflow Trainer's TrainJob, or the Training
    Operator's PyTorchJob), from this step's pod, which waits for the job and takes the model it made.

    The dataset is staged under the data connection's bucket for the nodes; every node runs torchrun with
    gpus processes; rank 0 keeps the epoch checkpoints (as the one-node step), logs to MLflow and hands
    the model back. Evaluate, export, gate and publish take it as from one node.

    Args:
        dataset: The YOLO dataset of the convert step.
        training: The run's training parameters, checked by the preflight step (base_model ... train_args, seed).
        gpus: GPUs of each node (a compile option).
        nodes_job: The nodes' pods as the compile options fixed them (nodes, engine, runtime, image, /dev/shm,
            requests and limits, node selector, tolerations, Kueue queue, data connection).
        search: The search's result (JSON: space, trials, winner) from the choose-trial step; empty: no search.
        model: The trained model, as the one-node step writes it.
        search_table: The search's trials as a Markdown table (or that no search was run).
        search_picture: The search's trials against their settings, as an HTML page (or that none was run).
    """
    import logging

    from yolo_kfp.model.node_training import launch
    from yolo_kfp.model.train_step import train_step

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def on_nodes(settings: dict) -> dict:
        return launch(dataset_dir=dataset.path, model_dir=model.path, settings=settings, nodes_job=nodes_job,
                      mlflow_tracking_uri=mlflow_tracking_uri, mlflow_experiment=mlflow_experiment)

    train_step(training=training, gpus=gpus, search=search, model=model, search_table=search_table.path,
               search_picture=search_picture.path, mlflow_tracking_uri=mlflow_tracking_uri, train=on_nodes)
