"""notebooks/run_pipeline.ipynb top to bottom under nbclient: it finds the pipeline server through the
Kubernetes API (the stand-in serves that too), submits with the workbench token and shows the metrics."""

import json
import os

import nbformat
import pytest
import yaml
from kfp_standin import API, KfpStandIn
from nbclient import NotebookClient

from components.core.publish import publish_files
from components.core.storage import Storage

ROOT = os.path.join(os.path.dirname(__file__), "..")
NOTEBOOK = os.path.join(ROOT, "notebooks", "run_pipeline.ipynb")


@pytest.fixture
def workbench(s3, tmp_path, monkeypatch):
    """The environment of a workbench: a kubeconfig, a token, a data connection; a server that runs."""
    storage = Storage.from_env(s3.data_connection())
    storage.client.create_bucket(Bucket="nb-models")
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"map50": 0.8, "map50_95": 0.55, "per_class": {"Car": {"ap50": 0.8}}}))

    def run_the_pipeline(run):  # what the cluster would do: the run publishes its model
        publish_files(publish_to="s3://nb-models/yolo-kfp", files={"metrics.json": str(metrics)}, record={},
                      run_id=run["run_id"], storage=storage)

    with KfpStandIn(on_run_created=run_the_pipeline) as server:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "standin", "cluster": {"server": server.url}}],
            "users": [{"name": "u", "user": {"token": "kube-token"}}],
            "contexts": [{"name": "c", "context": {"cluster": "standin", "user": "u", "namespace": server.namespace}}],
        }))
        for key, value in {"KUBECONFIG": str(kubeconfig), "KFP_TOKEN": "workbench-token", "POLL_SECONDS": "0.01",
                           "PUBLISH_TO": "s3://nb-models/yolo-kfp", **s3.data_connection()}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("KFP_HOST", raising=False)
        yield server


def test_notebook_runs_top_to_bottom(workbench):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": ROOT}}).execute()
    outputs = "\n".join(o.get("text", "") + json.dumps(o.get("data", {}))
                        for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs)
    assert f"pipeline server of {workbench.namespace}: {workbench.url}" in outputs
    (run,) = workbench.calls("POST", f"{API}/runs")
    assert run.headers["authorization"] == "Bearer workbench-token"
    assert run.body["runtime_config"]["parameters"]["epochs"] == 50
    assert "/#/runs/details/" in outputs and "mAP50 0.800" in outputs and "Car" in outputs


def test_notebook_is_committed_clean():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    source = "\n".join(cell.source for cell in notebook.cells)
    for credential in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "password", "Bearer "):
        assert credential not in source
