"""manifests/serving/ builds with kustomize; the InferenceService and its ServingRuntime validate against
KServe's CRDs as OpenShift AI ships them (tests/schemas/README.md), with no field the CRDs do
not declare; the built-in kinds validate against Kubernetes' schemas; and the model it serves is the one
the pipeline publishes (read with the serving side's own read-only connection: test_manifest_security.py)."""

import copy
import functools
import os
import re
import shutil
import subprocess

import crd_schema
import kubernetes_validate
import pytest
import yaml
from conftest import shared_schema
from test_manifests import KUBERNETES_VERSION

from yolo_kfp.model.export import SERVING_NAME

ROOT = os.path.join(os.path.dirname(__file__), "..")
SERVING = os.path.join(ROOT, "manifests", "serving")
# opendatahub-io/kserve release tags: KServe 0.14 (OpenShift AI 2.16's era), 0.15.2 (3.0-3.3), 0.17 (3.4)
RELEASES = ["kserve-odh-v2.22", "kserve-odh-v3.3", "kserve-odh-v3.4"]
CRD_FILES = {"InferenceService": "serving.kserve.io_inferenceservices.yaml",
             "ServingRuntime": "serving.kserve.io_servingruntimes.yaml"}
ISVC = ("InferenceService", SERVING_NAME)
RUNTIME = ("ServingRuntime", SERVING_NAME)
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the InferenceService CRD is 1 MB of YAML


def kustomize(folder: str) -> dict:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed (.ci/run installs it)"
    out = subprocess.run([kubectl, "kustomize", folder], capture_output=True, text=True, check=True).stdout
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out)}


@pytest.fixture(scope="module")
def built():
    return kustomize(SERVING)


@functools.cache
def crd(release: str, kind: str) -> dict:
    with open(shared_schema(os.path.join(release, CRD_FILES[kind]))) as f:
        return yaml.load(f, Loader=LOADER)


def problems(obj: dict, release: str) -> list[str]:
    return crd_schema.problems(obj, crd(release, obj["kind"]))


def test_builds_the_expected_objects(built):
    assert set(built) == {ISVC, RUNTIME, ("ServiceAccount", f"{SERVING_NAME}-sa"),
                          ("Role", f"{SERVING_NAME}-view-role"), ("RoleBinding", f"{SERVING_NAME}-view"),
                          ("NetworkPolicy", f"{SERVING_NAME}-predictor-ingress")}
    with open(os.path.join(ROOT, "manifests", "kustomization.yaml")) as f:
        project = yaml.safe_load(f)["namespace"]  # the pipeline server's project, where the data connection is
    assert {d["metadata"]["namespace"] for d in built.values()} == {project}


def test_serving_is_not_part_of_the_pipeline_server():
    with open(os.path.join(ROOT, "manifests", "kustomization.yaml")) as f:
        resources = yaml.safe_load(f)["resources"]
    assert not [r for r in resources if r.strip("./").startswith("serving")]
    assert not [key for key in kustomize(os.path.join(ROOT, "manifests")) if key[0] in CRD_FILES]


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("kind", sorted(CRD_FILES))
def test_kserve_objects_validate_against_the_crds(built, kind, release):
    (obj,) = [d for (k, _), d in built.items() if k == kind]
    assert problems(obj, release) == []


def test_builtin_kinds_validate_against_kubernetes_schemas(built):
    for (kind, _), obj in built.items():
        if kind not in CRD_FILES:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def _model(isvc):
    return isvc["spec"]["predictor"]["model"]


BREAKAGES = {  # name: (change to the InferenceService or the ServingRuntime, what the check must say)
    "misspelled field": (lambda isvc, _: _model(isvc).update(storgae=_model(isvc).pop("storage")),
                         "spec.predictor.model.storgae: not declared"),
    "field in the wrong place": (lambda isvc, _: isvc["spec"]["predictor"].update(runtime=_model(isvc)["runtime"]),
                                 "spec.predictor.runtime: not declared"),
    "wrong type": (lambda isvc, _: _model(isvc)["modelFormat"].update(version=1),
                   "spec.predictor.model.modelFormat.version: 1 is not of type 'string'"),
    "misspelled field in a list": (lambda _, rt: rt["spec"]["supportedModelFormats"][0].update(autoselect=True),
                                   "spec.supportedModelFormats[0].autoselect: not declared"),
    "required field missing": (lambda _, rt: rt["spec"]["containers"][0].pop("name"),
                               "spec.containers.0: 'name' is a required property"),
    "version not served": (lambda _, rt: rt.update(apiVersion="serving.kserve.io/v1beta1"),
                           "ServingRuntime v1beta1 is not served"),
}


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_object_is_rejected(built, breakage, release):
    isvc, runtime = copy.deepcopy(built[ISVC]), copy.deepcopy(built[RUNTIME])
    change, expected = BREAKAGES[breakage]
    change(isvc, runtime)
    try:
        found = problems(isvc, release) + problems(runtime, release)
    except AssertionError as e:  # an apiVersion the CRD does not serve
        found = [str(e)]
    assert [p for p in found if expected in p], f"{breakage} went unnoticed: {found}"


def test_the_model_is_the_published_one(built):
    model = built[ISVC]["spec"]["predictor"]["model"]
    assert "storageUri" not in model and model["storage"]["key"]  # a data connection's name
    path = model["storage"]["path"]
    # publish puts the export's <SERVING_NAME>/1/model.onnx under <prefix>/<version>/serving/: OVMS reads
    # /mnt/models/1/model.onnx. <prefix>/latest is a file naming the version, so the path names one.
    assert path.endswith(f"/serving/{SERVING_NAME}") and not path.startswith(("/", "s3://"))
    assert "latest" not in path.split("/")
    # OVMS serves the model under the InferenceService's name: /v2/models/<SERVING_NAME>
    assert built[ISVC]["metadata"]["name"] == SERVING_NAME


MODELCAR_ENTRY = ("patches:", "  - path: modelcar.yaml", "    target:", "      kind: InferenceService",
                  "      name: yolo-kfp")


@pytest.fixture(scope="module")
def modelcar(tmp_path_factory) -> dict:
    """manifests/serving/ built with its ModelCar entry uncommented, as docs/tracking.md says to switch."""
    folder = tmp_path_factory.mktemp("switched") / "serving"
    shutil.copytree(SERVING, folder)
    text = (folder / "kustomization.yaml").read_text()
    for line in MODELCAR_ENTRY:
        assert f"\n# {line}\n" in text, f"kustomization.yaml should hold '# {line}'"
        text = text.replace(f"\n# {line}\n", f"\n{line}\n")
    (folder / "kustomization.yaml").write_text(text)
    return kustomize(str(folder))


@pytest.mark.parametrize("release", RELEASES)
def test_the_modelcar_variant_serves_the_image_by_digest(built, modelcar, release):
    isvc = modelcar[ISVC]
    assert problems(isvc, release) == []
    predictor = copy.deepcopy(isvc["spec"]["predictor"])
    assert re.fullmatch(r"oci://[a-z0-9.:-]+(/[a-z0-9._-]+)+@sha256:[0-9a-f]{64}", predictor["model"].pop("storageUri"))
    assert predictor.pop("imagePullSecrets") == [{"name": "yolo-kfp-model-pull"}]
    base = copy.deepcopy(built[ISVC]["spec"]["predictor"])
    del base["model"]["storage"]
    assert predictor == base  # nothing else changes, the rest of the folder neither
    assert {k: v for k, v in modelcar.items() if k != ISVC} == {k: v for k, v in built.items() if k != ISVC}


def test_the_runtime_serves_the_model(built):
    isvc, runtime = built[ISVC], built[RUNTIME]["spec"]
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == RUNTIME[1]
    formats = [(f["name"], f.get("version")) for f in runtime["supportedModelFormats"]]
    assert (model["modelFormat"]["name"], model["modelFormat"].get("version")) in formats
    assert "v2" in runtime["protocolVersions"]
    (container,) = runtime["containers"]
    assert container["name"] == "kserve-container"
    args = dict(a.lstrip("-").split("=", 1) for a in container["args"] if "=" in a)
    assert args["model_name"] == "{{.Name}}" and args["model_path"] == "/mnt/models"  # where KServe puts storage
    assert [p["containerPort"] for p in container["ports"]] == [int(args["rest_port"])]
    assert runtime["annotations"]["prometheus.io/port"] == args["rest_port"]


def test_deployment_mode_route_and_token_auth(built):
    meta = built[ISVC]["metadata"]
    assert meta["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert meta["labels"]["networking.kserve.io/visibility"] == "exposed"
    assert meta["labels"]["opendatahub.io/dashboard"] == "true"
    assert meta["annotations"]["security.opendatahub.io/enable-auth"] == "true"
    # the proxy admits a token that may `get` the InferenceService: the service account's Role grants that
    role, binding = built[("Role", f"{SERVING_NAME}-view-role")], built[("RoleBinding", f"{SERVING_NAME}-view")]
    assert role["rules"] == [{"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"],
                              "resourceNames": [meta["name"]], "verbs": ["get"]}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{SERVING_NAME}-sa",
                                    "namespace": meta["namespace"]}]


def test_values_to_change_are_marked_and_documented():
    readme = open(os.path.join(ROOT, "manifests", "README.md")).read()
    assert "manifests/serving/" in readme
    marked = [name for name in sorted(os.listdir(SERVING))
              if name.endswith(".yaml") and "CHANGE-ME" in open(os.path.join(SERVING, name)).read()]
    assert marked == ["data-connection.yaml", "inferenceservice.yaml", "kustomization.yaml", "modelcar.yaml",
                      "servingruntime.yaml"]
    for name in marked:
        assert f"serving/{name}" in readme, f"manifests/README.md should say what to change in serving/{name}"
