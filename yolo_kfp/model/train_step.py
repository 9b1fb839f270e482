"""What the train step does around the training itself, on one node or across several: the settings (a
search's winner over the run's), and what it records (the model's metadata, search.json, the trials' table
and picture, the trials' MLflow runs nested under the training's)."""

import json
import logging
import os
from collections.abc import Callable

from yolo_kfp.model import tracking
from yolo_kfp.model.search_report import trials_html, trials_markdown
from yolo_kfp.params.run_parameters import training_settings
from yolo_kfp.params.search_space import trial_settings

log = logging.getLogger(__name__)
SEARCH = "search.json"  # kept with the model after a search (the publish step reads it)
NO_SEARCH_PAGE = "<!DOCTYPE html><html><body><p>No search was run.</p></body></html>\n"


def train_step(*, training: dict, gpus: int, search: str, model, search_table: str, search_picture: str,
               mlflow_tracking_uri: str, train: Callable[[dict], dict]) -> dict:
    """Runs ``train`` (settings -> train_leased's summary) with the run's settings, a search's winner over them,
    and records its outcome in ``model`` (a KFP Model: path and metadata) and the two search pages."""
    settings = {**training_settings(training), "gpus": gpus}  # integers again: KFP passed a dict's as floats
    searched = json.loads(search) if search else None
    if searched:
        settings = trial_settings(settings, searched["winner"]["settings"])
        log.info("training with the settings of trial %d: %s", searched["winner"]["trial"],
                 json.dumps(searched["winner"]["settings"]))
    summary = train(settings)
    model.metadata.update({k: summary[k] for k in ("names", "epochs", "trainable_params", "total_params",
                                                    "seconds") if k in summary})
    model.metadata["framework"] = "ultralytics"
    model.metadata["checkpoints"] = summary.get("checkpoints", "")
    if searched:
        with open(os.path.join(model.path, SEARCH), "w") as f:
            json.dump(searched, f, indent=2)
        model.metadata["search_winner"] = searched["winner"]["trial"]
    with open(search_table, "w") as f:
        f.write(trials_markdown(searched["trials"], searched["winner"]) if searched else "No search was run.\n")
    with open(search_picture, "w") as f:
        f.write(trials_html(searched["trials"], searched["winner"]) if searched else NO_SEARCH_PAGE)
    if mlflow_tracking_uri:
        mlflow_run = summary.get("mlflow_run_id", "")
        model.metadata["mlflow_run_id"] = mlflow_run
        if searched and mlflow_run:
            tracking.nest_runs(tracking_uri=mlflow_tracking_uri, parent_run_id=mlflow_run,
                               child_run_ids=[t["mlflow_run_id"] for t in searched["trials"]])
            tracking.log_search(tracking_uri=mlflow_tracking_uri, run_id=mlflow_run, search=searched)
    return summary
