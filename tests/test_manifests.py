"""manifests/ builds with kustomize; every object validates: built-in kinds against Kubernetes' schemas,
the DataSciencePipelinesApplication against the Data Science Pipelines operator's CRD."""

import os
import shutil
import subprocess

import crd_schema
import kubernetes_validate
import pytest
import yaml
from conftest import shared_schema

from yolo_kfp.infra.storage import ENV_KEYS
from yolo_kfp.pipeline.compile_options import DATA_CONNECTION

PIPELINE_ROOT_CONNECTION = "yolo-kfp-pipeline-root"

ROOT = os.path.join(os.path.dirname(__file__), "..")
CRDS = ["dspa-crd-v2.17.0.yaml", "dspa-crd-head.yaml"]
KUBERNETES_VERSION = "1.31"  # OpenShift 4.18


@pytest.fixture(scope="module")
def built():
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed (.ci/run installs it)"
    out = subprocess.run([kubectl, "kustomize", os.path.join(ROOT, "manifests")], capture_output=True, text=True,
                         check=True).stdout
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out)}


def test_builds_the_expected_objects(built):
    assert set(built) == {("Secret", DATA_CONNECTION), ("Secret", PIPELINE_ROOT_CONNECTION),
                          ("DataSciencePipelinesApplication", "dspa"),
                          ("Role", "yolo-kfp-pipeline-user"), ("RoleBinding", "yolo-kfp-pipeline-user")}
    assert {d["metadata"]["namespace"] for d in built.values()} == {"yolo-kfp"}


def test_builtin_kinds_validate_against_kubernetes_schemas(built):
    for (kind, _), obj in built.items():
        if kind != "DataSciencePipelinesApplication":
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("crd", CRDS)
def test_pipeline_server_validates_against_the_operator_crd(built, crd):
    with open(shared_schema(crd)) as f:
        definition = yaml.safe_load(f)
    dspa = built[("DataSciencePipelinesApplication", "dspa")]
    assert dspa["apiVersion"] == f"{definition['spec']['group']}/v1"
    assert crd_schema.problems(dspa, definition) == []


def test_data_connection_is_a_dashboard_s3_connection(built):
    secret = built[("Secret", DATA_CONNECTION)]
    assert secret["metadata"]["labels"]["opendatahub.io/dashboard"] == "true"
    assert secret["metadata"]["annotations"]["opendatahub.io/connection-type"] == "s3"
    assert set(secret["stringData"]) == set(ENV_KEYS)
    storage = built[("DataSciencePipelinesApplication", "dspa")]["spec"]["objectStorage"]["externalStorage"]
    assert storage["bucket"] == secret["stringData"]["AWS_S3_BUCKET"]


def test_the_pipeline_root_has_a_key_of_its_own(built):
    """The pipeline server stores artifacts with its own key; the steps' data connection is another Secret,
    which the dashboard never offers to attach the pipeline root's key to a workbench."""
    storage = built[("DataSciencePipelinesApplication", "dspa")]["spec"]["objectStorage"]["externalStorage"]
    assert storage["s3CredentialsSecret"] == {"secretName": PIPELINE_ROOT_CONNECTION,
                                              "accessKey": "AWS_ACCESS_KEY_ID", "secretKey": "AWS_SECRET_ACCESS_KEY"}
    root = built[("Secret", PIPELINE_ROOT_CONNECTION)]
    assert PIPELINE_ROOT_CONNECTION != DATA_CONNECTION and set(root["stringData"]) == {"AWS_ACCESS_KEY_ID",
                                                                                       "AWS_SECRET_ACCESS_KEY"}
    assert "opendatahub.io/dashboard" not in root["metadata"].get("labels", {})


def test_values_to_change_are_marked_and_documented():
    readme = open(os.path.join(ROOT, "manifests", "README.md")).read()
    for folder, _, names in os.walk(os.path.join(ROOT, "manifests")):
        for path in (os.path.join(folder, n) for n in names if n.endswith(".yaml")):
            name = os.path.relpath(path, os.path.join(ROOT, "manifests"))
            if "CHANGE-ME" in open(path).read():
                assert f"`{name}`" in readme, f"manifests/README.md should say what to change in {name}"
