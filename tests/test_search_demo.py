"""A search through the whole local pipeline, with MLflow: ``yolo-kfp run-local --demo --search --mlflow``
leaves a parent run with one nested run per trial, and the winner's settings on the published model's
manifest and registered version."""

import glob
import json
import os
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from yolo_kfp.infra.storage import Storage
from yolo_kfp.local.mlflow_server import MlflowServer
from yolo_kfp.model.search_report import SCORE, search_tags
from yolo_kfp.model.tracking import PARENT_TAG
from yolo_kfp.release.publish import read_latest

CLI = os.path.join(os.path.dirname(sys.executable), "yolo-kfp")


def run_local_searches() -> bool:
    helped = subprocess.run([CLI, "run-local", "--help"], capture_output=True, text=True, check=True,
                            timeout=120)
    return "--search" in helped.stdout


pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not run_local_searches(), reason="run-local has no --search (the search mode)")]


def test_a_demo_search_nests_its_trials_and_records_the_winner(mongod, s3, tmp_path):
    storage = Storage.from_env(s3.data_connection())
    storage.client.create_bucket(Bucket="demo-searched")
    out = tmp_path / "search"
    result = subprocess.run([CLI, "run-local", "--demo", "--search", "--mlflow", "--output-dir", str(out),
                             "--param", "publish_to=s3://demo-searched/yolo-kfp"], capture_output=True, text=True,
                            timeout=1500, env=dict(os.environ, **s3.data_connection()))
    assert result.returncode == 0, result.stderr[-3000:]

    (search_file,) = glob.glob(str(out / "pipeline-root" / "**" / "search.json"), recursive=True)
    with open(search_file) as f:
        search = json.load(f)
    trials, winner = search["trials"], search["winner"]
    assert len(trials) == 4
    best = max(trial["val"][SCORE] for trial in trials)
    assert winner == min((t for t in trials if t["val"][SCORE] == best), key=lambda t: t["trial"])

    manifest = read_latest("s3://demo-searched/yolo-kfp", storage)
    assert manifest["search"]["winner"] == {key: winner[key] for key in ("trial", "settings", "val")}
    assert manifest["search"]["trials"] == 4 and "search.json" in manifest["files"]

    with MlflowServer(str(out / "mlflow")) as reopened:  # the run's server has stopped; its store stays
        client = MlflowClient(reopened.url)
        experiments = [e.experiment_id for e in client.search_experiments()]
        (parent,) = [r for r in client.search_runs(experiments) if "search.winner_trial" in r.data.params]
        nested = client.search_runs(experiments, f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'")
        assert sorted(r.info.run_id for r in nested) == sorted(t["mlflow_run_id"] for t in trials)
        assert parent.data.params["search.winner_trial"] == str(winner["trial"])
        (version,) = client.search_model_versions(f"run_id = '{parent.info.run_id}'")
        assert {k: v for k, v in version.tags.items() if k.startswith("search.")} == \
            search_tags(winner["settings"])
