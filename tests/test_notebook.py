"""notebooks/run_pipeline.ipynb top to bottom under nbclient: it finds the pipeline server through the
Kubernetes API (the stand-in serves that too), submits with the workbench token and shows the metrics."""

import json
import os
import re

import nbformat
import pytest
import tomllib
import yaml
from kfp_standin import API, KfpStandIn
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from yolo_kfp.release.gate import record_decision
from yolo_kfp.release.publish import publish_files

NOTEBOOK_DIR = os.path.join(os.path.dirname(__file__), "..", "notebooks")
NOTEBOOK = os.path.join(NOTEBOOK_DIR, "run_pipeline.ipynb")


DASHBOARD = "https://rhods-dashboard-redhat-ods-applications.apps.example.com"


@pytest.fixture
def workbench(s3, storage, bucket, tmp_path, monkeypatch, test_ca):
    """The environment of a workbench: a kubeconfig, a token, a data connection, and a pipeline server
    (``tls=True``: at its ``*.svc`` name over TLS, the workbench's service CA given by ``service_ca``)
    whose runs publish their model, or are refused by the gate (``refused=True``)."""
    from conftest import SERVICE_HOST

    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"map50": 0.8, "map50_95": 0.55, "per_class": {"Car": {"ap50": 0.8}}}))
    publish_to = f"s3://{bucket}/yolo-kfp"

    def start(tls=False, service_ca=None, refused=False, plain_http_token="true"):
        def run_the_pipeline(run):  # what the cluster would do: the run publishes its model, or the gate refuses it
            if refused:
                record_decision(publish_to=publish_to, run_id=run["run_id"], storage=storage, result={
                    "decision": "not promoted", "reasons": ["mAP50 0.100 is below the threshold min_map50=0.250"]})
            else:
                publish_files(publish_to=publish_to, files={"metrics.json": str(metrics)}, record={},
                              run_id=run["run_id"], storage=storage)

        options = {"tls": (test_ca["cert"], test_ca["key"]), "hostname": SERVICE_HOST} if tls else {}
        server = KfpStandIn(on_run_created=run_the_pipeline, **options).start()
        cluster = {"server": server.url, **({"certificate-authority": test_ca["ca"]} if tls else {})}
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "standin", "cluster": cluster}],
            "users": [{"name": "u", "user": {"token": "kube-token"}}],
            "contexts": [{"name": "c", "context": {"cluster": "standin", "user": "u", "namespace": server.namespace}}],
        }))
        for key, value in {"KUBECONFIG": str(kubeconfig), "KFP_TOKEN": "workbench-token", "POLL_SECONDS": "0.01",
                           "PUBLISH_TO": publish_to, "YOLO_KFP_LOOPBACK_HOSTS": SERVICE_HOST,
                           "ALLOW_PLAIN_HTTP_TOKEN": "" if tls else plain_http_token,
                           "YOLO_KFP_SERVICE_CA": service_ca or str(tmp_path / "no-service-ca.crt"),
                           "YOLO_KFP_TRUSTED_CA": str(tmp_path / "no-trusted-bundle.crt"),
                           "NOTEBOOK_ARGS": f'--ServerApp.tornado_settings={{"user":"ada","hub_host":"{DASHBOARD}",'
                                            f'"hub_prefix":"/projects/{server.namespace}"}}',
                           **s3.data_connection()}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("KFP_HOST", raising=False)
        servers.append(server)
        return server

    servers = []
    yield start
    for server in servers:
        server.stop()


def execute() -> str:
    """Runs the notebook; returns what its cells showed."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": NOTEBOOK_DIR}}).execute()
    return "\n".join(o.get("text", "") + json.dumps(o.get("data", {}))
                     for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs)


def test_notebook_runs_top_to_bottom(workbench):
    server = workbench()
    outputs = execute()
    assert f"pipeline server of {server.namespace}: {server.url} (plain HTTP, no TLS)" in outputs
    (run,) = server.calls("POST", f"{API}/runs")
    assert run.headers["authorization"] == "Bearer workbench-token"
    assert run.body["runtime_config"]["parameters"]["epochs"] == 50
    assert "mAP50 0.800" in outputs and "Car" in outputs


def test_a_plain_http_server_gets_no_token_unless_the_notebook_allows_it(workbench):
    server = workbench(plain_http_token="")
    with pytest.raises(CellExecutionError) as failure:
        execute()
    assert f"refusing to send a token to {server.url} over plain HTTP" in str(failure.value)
    assert server.calls("GET", f"{API}/healthz") == [] and server.calls("POST", f"{API}/runs") == []
    assert "workbench-token" not in str([r.headers for r in server.requests])


def test_in_a_workbench_the_service_is_verified_with_the_service_ca_and_the_link_opens_outside(workbench, test_ca):
    server = workbench(tls=True, service_ca=test_ca["ca"])
    outputs = execute()
    assert ".svc.cluster.local" in server.url and f"TLS verified with {test_ca['ca']}" in outputs
    (run_id,) = server.runs
    assert f"{DASHBOARD}/pipelineRuns/{server.namespace}/runs/{run_id}" in outputs
    assert "/#/runs/details/" not in outputs and "mAP50 0.800" in outputs


def test_without_the_service_ca_the_notebook_names_the_bundles_it_tried(workbench):
    server = workbench(tls=True)
    with pytest.raises(CellExecutionError) as failure:
        execute()
    assert f"the certificate of {server.url} is not signed by a CA in what was tried" in str(failure.value)
    assert "no-service-ca.crt (missing)" in str(failure.value)
    assert server.calls("POST", f"{API}/runs") == []


def test_a_model_the_gate_refused_is_reported_as_such(workbench):
    workbench(refused=True)
    outputs = execute()
    assert "this run's model was not published" in outputs
    assert "mAP50 0.100 is below the threshold min_map50=0.250" in outputs


def test_the_install_cell_installs_the_base_package_without_torch():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (cell,) = [c for c in notebook.cells if "pip" in c.source and "install" in c.source]
    (requirement,) = re.findall(r'^PROJECT = "([^"]+)"', cell.source, re.MULTILINE)
    assert '"install", "--quiet", PROJECT]' in cell.source, "the project as it is: no extras"
    with open(os.path.join(NOTEBOOK_DIR, requirement, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["name"] == "yolo-kfp"
    base = " ".join(project["dependencies"]).lower()
    for heavy in ("torch", "ultralytics", "fiftyone", "opencv"):
        assert heavy not in base


def test_notebook_is_committed_clean():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    source = "\n".join(cell.source for cell in notebook.cells)
    for credential in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "password", "Bearer "):
        assert credential not in source
