"""One node of a training across nodes, and how its data and its model travel.

The nodes reach S3 with the data connection's credentials only (the job's pods get its Secret, as the steps
do), under a staging prefix of the training's job in the data connection's bucket:

- the launcher (the train step) stages the dataset artifact there as the step has it: its packed shards,
  ``dataset.yaml`` and report (``stage_dataset``);
- every node fetches and unpacks it into a folder of its own, then trains its part under torchrun
  (``train_on_node``: ``train_leased``, whose rank 0 keeps the checkpoints and logs to MLflow);
- rank 0 uploads the model folder it wrote; the launcher fetches it into the step's ``model`` artifact
  (``fetch_model``), so that evaluate, export, gate and publish take it as from one node, and removes the
  staging prefix (``clear_staging``).
"""

import json
import logging
import os
import tempfile
from collections.abc import Callable

from yolo_kfp.infra.packing import materialized
from yolo_kfp.infra.storage import ENV_KEYS, S3Url, Storage
from yolo_kfp.model.across_nodes import torchrun_world
from yolo_kfp.model.training_jobs import NodesJob, owner_reference

log = logging.getLogger(__name__)

STAGING = "yolo-kfp/nodes"  # under the data connection's bucket, a folder per job
DATASET, MODEL = "dataset", "model"


def staging_url(bucket: str, job_name: str) -> S3Url:
    return S3Url(bucket, f"{STAGING}/{job_name}")


def stage_dataset(dataset_dir: str, staging: S3Url, storage: Storage) -> list[str]:
    """The dataset artifact, packed as the step has it, where every node fetches it."""
    return storage.upload_dir(dataset_dir, staging.join(DATASET))


def fetch_model(staging: S3Url, model_dir: str, storage: Storage) -> list[str]:
    """The model folder rank 0 uploaded, into the step's model artifact."""
    names = storage.download_prefix(staging.join(MODEL), model_dir)
    if "weights/best.pt" not in names:
        raise RuntimeError(f"{staging.join(MODEL)} holds no weights/best.pt: did rank 0 finish? (its log: the step's)")
    return names


def clear_staging(staging: S3Url, storage: Storage) -> None:
    for obj in storage.list_objects(staging):
        storage.delete(S3Url(staging.bucket, obj["key"]))


def train_on_node(*, staging: str, settings: dict, mlflow_tracking_uri: str = "", mlflow_experiment: str = "") -> dict:
    """What each node's process runs under torchrun: fetch the staged dataset, train this process's part, and on
    rank 0 upload the model folder. Returns train_leased's summary (the other ranks': their rank)."""
    from yolo_kfp.model.train import train_leased

    world = torchrun_world()
    if world is None:
        raise RuntimeError("train_on_node runs under torchrun, one process of several (WORLD_SIZE > 1)")
    place, storage = S3Url.parse(staging), Storage.from_env()
    with tempfile.TemporaryDirectory(prefix="yolo-node-") as work:
        dataset, model = os.path.join(work, DATASET), os.path.join(work, MODEL)
        storage.download_prefix(place.join(DATASET), dataset)
        with materialized(dataset) as data_dir:
            summary = train_leased(data_dir=data_dir, output_dir=model, settings=settings,
                                   mlflow_tracking_uri=mlflow_tracking_uri, mlflow_experiment=mlflow_experiment)
        if world.is_first:  # its summary whole: where the checkpoints were, the MLflow run
            with open(os.path.join(model, "train_summary.json"), "w") as f:
                json.dump(summary, f, indent=2)
            uploaded = storage.upload_dir(model, place.join(MODEL))
            log.info("rank 0 uploaded %d files of the model to %s", len(uploaded), place.join(MODEL))
    return summary


def node_command(staging: S3Url, settings: dict, mlflow_tracking_uri: str, mlflow_experiment: str) -> list[str]:
    """What every node runs after torchrun (``yolo-kfp step train-node``)."""
    command = ["yolo-kfp", "step", "train-node", "--staging", str(staging), "--settings",
               json.dumps(settings, sort_keys=True)]
    if mlflow_tracking_uri:
        command += ["--mlflow-tracking-uri", mlflow_tracking_uri, "--mlflow-experiment", mlflow_experiment]
    return command


def data_connection_env(secret: str, mlflow_secret: str = "") -> list[dict]:
    """The data connection's variables, and MLflow's credentials where a Secret holds them (each key optional,
    as the steps get them), by reference to their Secrets: the nodes' pods read them, no value is copied."""
    from yolo_kfp.model.tracking import CREDENTIAL_KEYS

    mlflow = [{"name": key, "valueFrom": {"secretKeyRef": {"name": mlflow_secret, "key": key, "optional": True}}}
              for key in CREDENTIAL_KEYS] if mlflow_secret else []
    return [{"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}} for key in ENV_KEYS] + mlflow


def train_across_nodes(*, dataset_dir: str, model_dir: str, job: NodesJob, engine: str,
                       run: Callable[[NodesJob, str], object], storage: Storage, staging: S3Url) -> dict:
    """The launcher's whole round: stage the dataset, run the job (``run``: ``job_launcher.run_job`` on a
    cluster, ``nodes_here.run_job_here`` locally), fetch rank 0's model into ``model_dir``; the staging prefix
    goes whatever happens. Returns the training's summary."""
    try:
        stage_dataset(dataset_dir, staging, storage)
        run(job, engine)
        fetch_model(staging, model_dir, storage)
    finally:
        clear_staging(staging, storage)
    with open(os.path.join(model_dir, "train_summary.json")) as f:
        return json.load(f)


POD_NAME_ENV, POD_UID_ENV, POD_NAMESPACE_ENV = "YOLO_KFP_POD_NAME", "YOLO_KFP_POD_UID", "YOLO_KFP_POD_NAMESPACE"
LOCAL_NODES_ENV = "YOLO_KFP_LOCAL_NODES"  # run-local: the nodes run here, their logs in this folder


def launch(*, dataset_dir: str, model_dir: str, settings: dict, nodes_job: dict, mlflow_tracking_uri: str,
           mlflow_experiment: str) -> dict:
    """The train-on-nodes step: its job (``nodes_job``: what the compile options fixed, the nodes' pods) named
    after and owned by this pod (the downward API's variables), run on the cluster, or here under run-local."""
    import hashlib
    import socket

    pod = os.environ.get(POD_NAME_ENV) or socket.gethostname()
    name = f"yolo-kfp-train-{hashlib.sha256(pod.encode()).hexdigest()[:12]}"  # a retried pod makes a job of its own
    staging = staging_url(os.environ["AWS_S3_BUCKET"], name)
    uid = os.environ.get(POD_UID_ENV, "")
    job = NodesJob(name=name, namespace=os.environ.get(POD_NAMESPACE_ENV) or "local", image=nodes_job["image"],
                   command=node_command(staging, settings, mlflow_tracking_uri, mlflow_experiment),
                   nodes=int(nodes_job["nodes"]), gpus_per_node=int(settings["gpus"]), shm_size=nodes_job["shm_size"],
                   requests=nodes_job["requests"], limits=nodes_job["limits"],
                   node_selector=nodes_job["node_selector"], tolerations=nodes_job["tolerations"],
                   env=data_connection_env(nodes_job["data_connection"], nodes_job.get("mlflow_connection", "")),
                   queue=nodes_job["queue"],
                   owner=owner_reference(pod, uid) if uid else None, runtime=nodes_job["runtime"])
    return train_across_nodes(dataset_dir=dataset_dir, model_dir=model_dir, job=job, engine=nodes_job["engine"],
                              run=_runner(), storage=Storage.from_env(), staging=staging)


def _runner() -> Callable[[NodesJob, str], object]:
    if os.environ.get(LOCAL_NODES_ENV):
        from yolo_kfp.model.nodes_here import run_job_here

        return lambda job, engine: run_job_here(job, engine, os.environ[LOCAL_NODES_ENV])
    from kubernetes import client, config

    from yolo_kfp.model.job_launcher import run_job

    config.load_incluster_config()  # the pod's service account
    return lambda job, engine: run_job(job, engine, client.ApiClient())
