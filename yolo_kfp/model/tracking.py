"""MLflow experiment tracking and model registration, when a run names a tracking server.

The train step opens one MLflow run per training and logs its settings, each epoch's metrics (read from
Ultralytics' ``results.csv``, which only rank 0 writes, so the same under DDP) and its weights; the
track step adds the test-split metrics and the KFP run's tags to that run; the publish step registers a
promoted model as a new version of a registered model, its source the published ONNX in S3. Credentials,
if the server wants any, come from MLflow's own environment variables (``MLFLOW_TRACKING_TOKEN``, or
``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD``), which the pipeline sets from a Secret
(the compile option ``--mlflow-connection``), never from a run parameter: a tracking URI with credentials in it
is refused.
"""

import contextlib
import csv
import logging
import os
import re

from yolo_kfp.infra.urls import redact, refuse_credentials_in
from yolo_kfp.model.figures import recorded_figures
from yolo_kfp.model.search_report import search_tags, trials_html, trials_markdown

log = logging.getLogger(__name__)

RUN_ID_TAG = "kfp.run_id"
DATASET_TAG = "yolo-kfp.dataset"  # the dataset's fingerprint
TRAINING_TAG = "yolo-kfp.training"  # the training's key: its checkpoints' folder
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: the UI shows a run with it nested under that run
# MLflow's client reads these from the environment: a token, or a user and password (basic auth)
CREDENTIAL_KEYS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
# Preflight asks once and briefly: MLflow's client would otherwise retry for minutes (its own variables).
CHECK_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def _client(tracking_uri: str):
    from mlflow import MlflowClient

    refuse_credentials_in("mlflow_tracking_uri", tracking_uri, "put them in the Secret of --mlflow-connection")
    return MlflowClient(tracking_uri=tracking_uri)


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _reason(error: Exception) -> str:
    """What went wrong in a few words: the system's error under urllib3's wrapping, else the first line."""
    text = str(error).strip()
    system = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    if system:
        return system.group(0).strip()
    if "timed out" in text:
        return f"no answer within {CHECK_SETTINGS['MLFLOW_HTTP_REQUEST_TIMEOUT']} s"
    return redact(text.splitlines()[0])[:200] if text else type(error).__name__


def check_access(tracking_uri: str) -> None:
    """Fails now, in one line, where the train step would after the download: the server answers at
    ``tracking_uri`` and takes the credentials (it lists one experiment)."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    with _environment(CHECK_SETTINGS):
        try:
            client.search_experiments(max_results=1)
        except (MlflowException, OSError) as error:
            raise ValueError(f"mlflow_tracking_uri {redact(tracking_uri)!r} cannot be used: {_reason(error)} (check "
                             "the address, that the server runs, and the --mlflow-connection Secret)") from None
    log.info("preflight: mlflow_tracking_uri=%s ok", redact(tracking_uri))


def _numbers(row: dict) -> dict[str, float]:
    """A results.csv row's metrics under names MLflow accepts (no parentheses), the epoch left out."""
    metrics = {}
    for name, value in row.items():
        name = name.strip().replace("(", "").replace(")", "")
        if name != "epoch" and value.strip():
            metrics[name] = float(value)
    return metrics


def start_training_run(*, tracking_uri: str, experiment: str, training: str, params: dict, tags: dict) -> str:
    """A new MLflow run of the training ``training`` (its key) in ``experiment`` (made if missing), with
    ``params`` and ``tags``; returns its id. A retried pod goes on in its predecessor's run, which the
    checkpoints' lease names (``yolo_kfp.model.checkpoints``): two identical runs at once each get one."""
    client = _client(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    run = client.create_run(experiment_id, tags={**tags, TRAINING_TAG: training})
    for name, value in params.items():
        client.log_param(run.info.run_id, name, value)
    log.info("MLflow run %s in experiment %r at %s", run.info.run_id, experiment, tracking_uri)
    return run.info.run_id


def finish_training_run(*, tracking_uri: str, run_id: str, output_dir: str) -> None:
    """Logs each epoch of ``results.csv`` as a metric step, and the weights and logs as artifacts."""
    client = _client(tracking_uri)
    with open(os.path.join(output_dir, "results.csv")) as f:
        for row in csv.DictReader(f):
            epoch = int(float(row.get("epoch") or row.get(" epoch") or 0))
            for name, value in _numbers(row).items():
                client.log_metric(run_id, name, value, step=epoch)
    for name in ("results.csv", "args.yaml", "train_summary.json"):
        if os.path.exists(os.path.join(output_dir, name)):
            client.log_artifact(run_id, os.path.join(output_dir, name))
    client.log_artifact(run_id, os.path.join(output_dir, "weights", "best.pt"), artifact_path="weights")
    client.set_terminated(run_id)


def log_evaluation(*, tracking_uri: str, run_id: str, metrics: dict, tags: dict) -> None:
    """Adds the test-split metrics (``test_`` names: ``recorded_figures`` and the per-class AP50) and ``tags``
    to the training's MLflow run."""
    client = _client(tracking_uri)
    for name, value in recorded_figures(metrics).items():
        client.log_metric(run_id, f"test_{name}", value)
    for name, value in metrics.get("per_class", {}).items():
        if value.get("ap50") is not None:
            client.log_metric(run_id, f"test_ap50_{name.replace(' ', '_')}", float(value["ap50"]))
    for name, value in tags.items():
        client.set_tag(run_id, name, value)


def register_model(*, tracking_uri: str, run_id: str, name: str, source: str, tags: dict) -> str:
    """A new version of the registered model ``name`` (made if missing), ``source`` its files; returns it.
    A retried publish of the same KFP run (``tags[RUN_ID_TAG]``) finds the version it registered before."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    if tags.get(RUN_ID_TAG):
        earlier = client.search_model_versions(f"name = '{name}' and tags.`{RUN_ID_TAG}` = '{tags[RUN_ID_TAG]}'")
        if earlier:
            log.info("%s version %s holds KFP run %s already", name, earlier[0].version, tags[RUN_ID_TAG])
            return str(earlier[0].version)
    version = client.create_model_version(name, source, run_id=run_id, tags=tags)
    log.info("registered %s version %s in MLflow (%s)", name, version.version, source)
    return str(version.version)


def nest_runs(*, tracking_uri: str, parent_run_id: str, child_run_ids: list[str]) -> None:
    """Nests each child run (a search's trial) under the parent run in the MLflow UI; "" ids (a trial
    that ran without MLflow) are skipped. The UI nests runs of the same experiment only."""
    client = _client(tracking_uri)
    for child in filter(None, child_run_ids):
        client.set_tag(child, PARENT_TAG, parent_run_id)


def log_search(*, tracking_uri: str, run_id: str, search: dict) -> None:
    """Records a search (``search.json``: its space, trials and winner) on the run it chose settings for:
    the winner's settings as ``search.<name>`` params, the trial count and the winner's trial, the
    search space as ``search/space.json`` and the trials table and picture under ``search/``."""
    client = _client(tracking_uri)
    winner, trials = search["winner"], search["trials"]
    params = {**search_tags(winner["settings"]), "search.trial_count": len(trials),
              "search.winner_trial": winner["trial"]}
    for name, value in params.items():
        client.log_param(run_id, name, value)
    client.log_dict(run_id, search["space"], "search/space.json")
    client.log_text(run_id, trials_markdown(trials, winner), "search/trials.md")
    client.log_text(run_id, trials_html(trials, winner), "search/trials.html")
