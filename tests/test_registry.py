"""Registering a promoted model in the Kubeflow Model Registry with the official client, against a stand-in
that holds every request and answer to the registry's published OpenAPI document (``model_registry_standin``)."""

import json
import urllib.error
import urllib.request

import pytest
import yaml
from model_registry_standin import ModelRegistryStandIn

from yolo_kfp.infra import tls
from yolo_kfp.infra.urls import redact
from yolo_kfp.model.export import OPSET
from yolo_kfp.params.validation import registry_url_problems
from yolo_kfp.release import registry
from yolo_kfp.release.modelcar import DEFAULT_BASE
from yolo_kfp.release.registry import RegistryError, register_published_model

TOKEN = "sa-token-of-the-pipeline-runner"
METRICS = {"map50": 0.81, "map50_95": 0.52, "precision": 0.9, "recall": 0.75}
COCO = {"AP": 0.49, "AP50": 0.8, "APsmall": None, "AR100": 0.6}  # None: no true box of that size


@pytest.fixture
def standin(tmp_path, monkeypatch):
    """The stand-in, taking only ``TOKEN``, which the environment names as the pod's token file. A test that
    leaves a request it refused, or an answer of its own the contract refuses, fails."""
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    monkeypatch.setenv(registry.TOKEN_PATH_VARIABLE, str(token))
    with ModelRegistryStandIn(token=TOKEN) as server:
        yield server
        assert server.problems() == [], "the registry's contract was broken"


@pytest.fixture
def exported(tmp_path):
    """What the export and evaluate steps hand to publish: the ONNX folder with export.json, metrics.json."""
    onnx_dir = tmp_path / "onnx"
    (onnx_dir / "yolo-kfp" / "1").mkdir(parents=True)
    (onnx_dir / "yolo-kfp" / "1" / "model.onnx").write_bytes(b"onnx" * 100)
    (onnx_dir / "export.json").write_text(json.dumps({
        "path": "yolo-kfp/1/model.onnx", "opset": OPSET, "imgsz": 640,
        "names": "{0: 'Bicycle', 1: 'Car', 2: 'Traffic sign'}"}))
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({**METRICS, "coco": COCO, "per_class": {"Car": {"ap50": 0.9}}}))
    return {"onnx_dir": str(onnx_dir), "metrics_path": str(metrics)}


def register(standin, exported, run_id, published, **kwargs):
    return register_published_model(registry_url=standin.url, name="yolo-kfp", run_id=run_id,
                                     version_url=f"s3://models/yolo-kfp/{published}", retry_delay=0, **exported,
                                     **kwargs)


def value(prop: dict):
    """A custom property's value, as the API writes it (int64 as a string)."""
    kind = prop["metadataType"]
    return {"MetadataDoubleValue": lambda: prop["double_value"], "MetadataStringValue": lambda: prop["string_value"],
            "MetadataIntValue": lambda: int(prop["int_value"])}[kind]()


def test_two_promoted_models_become_two_versions_of_one_registered_model(standin, exported):
    image = f"oci://quay.io/team/yolo-kfp-model@sha256:{'a' * 64}"  # a run that pushed a ModelCar image
    first = register(standin, exported, "run-1111", "20261126-083000-run-1111", image_uri=image)
    second = register(standin, exported, "run-2222", "20261203-083000-run-2222")
    assert first["created"] and second["created"] and first["uri"] == image
    assert first["registered_model_id"] == second["registered_model_id"] != first["model_version_id"]
    (model,) = standin.registered_models.values()
    assert model["name"] == "yolo-kfp" and model["owner"] == registry.AUTHOR and model["state"] == "LIVE"
    versions = standin.versions_of("yolo-kfp")
    assert set(versions) == {"run-1111", "run-2222"}

    version = versions["run-2222"]
    properties = {k: value(v) for k, v in version["customProperties"].items()}
    coco = {"coco_AP": 0.49, "coco_AP50": 0.8, "coco_AR100": 0.6}  # APsmall: None, no property
    assert properties == {**METRICS, **coco, "kfp_run_id": "run-2222", "published_version": "20261203-083000-run-2222",
                          "published_url": "s3://models/yolo-kfp/20261203-083000-run-2222", "imgsz": 640,
                          "classes": "Bicycle, Car, Traffic sign"}
    assert version["author"] == registry.AUTHOR and "run-2222" in version["description"]
    (artifact,) = standin.artifacts_of(version["id"])
    assert artifact["artifactType"] == "model-artifact" and artifact["name"] == "yolo-kfp"
    # the folder a KServe InferenceService's storageUri names: OpenVINO Model Server reads 1/model.onnx under it
    assert artifact["uri"] == "s3://models/yolo-kfp/20261203-083000-run-2222/serving/yolo-kfp" == second["uri"]
    assert (artifact["modelFormatName"], artifact["modelFormatVersion"]) == ("onnx", str(OPSET))
    assert (artifact["modelSourceKind"], artifact["modelSourceClass"], artifact["modelSourceId"]) == \
        ("kfp", "pipelinerun", "run-2222")
    every = {r.headers.get("authorization") for r in standin.requests}
    assert every == {f"Bearer {TOKEN}"}  # the token file's content, without its newline


def test_a_retried_publish_finds_its_version_and_completes_what_a_stopped_one_left(standin, exported):
    made = register(standin, exported, "run-3333", "20261126-083000-run-3333")
    posts = len(standin.calls("POST", ".*"))
    again = register(standin, exported, "run-3333", "20261126-090000-run-3333")  # KFP's retry publishes anew
    assert not again["created"] and {k: again[k] for k in ("model_version_id", "model_artifact_id", "uri")} == \
        {k: made[k] for k in ("model_version_id", "model_artifact_id", "uri")}
    assert len(standin.calls("POST", ".*")) == posts  # nothing made twice

    standin.artifacts.clear()  # a step stopped after making the version, before its artifact
    completed = register(standin, exported, "run-3333", "20261126-093000-run-3333")
    assert not completed["created"] and completed["model_version_id"] == made["model_version_id"]
    (artifact,) = standin.artifacts_of(made["model_version_id"])
    assert artifact["uri"].endswith("/20261126-093000-run-3333/serving/yolo-kfp")
    assert artifact["modelFormatName"] == "onnx" and artifact["modelSourceId"] == "run-3333"
    assert set(standin.versions_of("yolo-kfp")) == {"run-3333"}


def test_a_transient_fault_is_tried_again(standin, exported):
    standin.fail_next = {"createModelVersion": 1, "upsertModelVersionArtifact": 1}
    result = register(standin, exported, "run-4444", "20261126-083000-run-4444")
    assert result["created"] and result["uri"].endswith("/serving/yolo-kfp")
    assert standin.fail_next == {"createModelVersion": 0, "upsertModelVersionArtifact": 0}  # both met
    (artifact,) = standin.artifacts_of(result["model_version_id"])
    assert len(standin.calls("POST", "/model_versions")) == 2 and artifact["uri"] == result["uri"]


def test_a_token_the_registry_refuses_fails_in_one_line_naming_what_to_do(exported, tmp_path, monkeypatch):
    token = tmp_path / "token"
    token.write_text("not-the-right-token")
    monkeypatch.setenv(registry.TOKEN_PATH_VARIABLE, str(token))
    with ModelRegistryStandIn(token=TOKEN) as server:
        with pytest.raises(RegistryError) as caught:
            register(server, exported, "run-5555", "20261126-083000-run-5555")
        assert server.registered_models == {} and server.problems() == []
    message = str(caught.value)
    assert "\n" not in message and "HTTP 401" in message and "Manage permissions" in message
    assert "not-the-right-token" not in message
    with pytest.raises(RegistryError, match="cannot be read"):
        monkeypatch.setenv(registry.TOKEN_PATH_VARIABLE, str(tmp_path / "missing"))
        registry.check_access(registry_url="http://127.0.0.1:9")


def test_tls_is_verified_with_the_cluster_service_ca_or_the_bundle_named(exported, test_ca, tmp_path, monkeypatch):
    """An https:// *.svc address (the registry's in-cluster service) is verified with the cluster's service
    CA; a certificate nothing here vouches for fails in one line saying how to name its CA."""
    from conftest import SERVICE_HOST

    token = tmp_path / "token"
    token.write_text(TOKEN)
    monkeypatch.setenv(registry.TOKEN_PATH_VARIABLE, str(token))
    monkeypatch.setenv("YOLO_KFP_LOOPBACK_HOSTS", SERVICE_HOST)
    monkeypatch.setenv(tls.SERVICE_CA[0], test_ca["ca"])
    monkeypatch.setenv(tls.TRUSTED_CA[0], str(tmp_path / "no-trusted-bundle.crt"))
    with ModelRegistryStandIn(token=TOKEN, tls=(test_ca["cert"], test_ca["key"]), hostname=SERVICE_HOST) as server:
        assert server.url.startswith(f"https://{SERVICE_HOST}:")
        assert register(server, exported, "run-6666", "20261126-083000-run-6666")["created"]
        monkeypatch.setenv(tls.SERVICE_CA[0], str(tmp_path / "no-service-ca.crt"))
        with pytest.raises(RegistryError) as caught:
            register(server, exported, "run-7777", "20261126-083000-run-7777")
        monkeypatch.setenv(registry.CA_BUNDLE_VARIABLE, test_ca["ca"])
        assert register(server, exported, "run-7777", "20261126-083000-run-7777")["created"]
        assert set(server.versions_of("yolo-kfp")) == {"run-6666", "run-7777"} and server.problems() == []
    message = str(caught.value)
    assert "\n" not in message and "certificate" in message.lower() and registry.CA_BUNDLE_VARIABLE in message
    assert "verified with the system store" in message  # no service CA, no trusted bundle: what was used


def test_the_standin_refuses_what_the_published_contract_refuses():
    """A request outside the OpenAPI document gets a 400 and is kept, which fails the test that made it."""
    with ModelRegistryStandIn() as server:
        def send(method, path, body=None, auth=True):
            request = urllib.request.Request(
                server.url + server.api + path, method=method, data=json.dumps(body).encode() if body else None,
                headers={"Content-Type": "application/json", **({"Authorization": "Bearer x"} if auth else {})})
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    return answer.status
            except urllib.error.HTTPError as error:
                return error.code

        assert send("POST", "/registered_models", {"name": "yolo-kfp"}) == 201
        assert send("POST", "/registered_models", {"owner": "no name"}) == 400  # name is required
        assert send("POST", "/model_versions", {"name": "v", "registeredModelId": 1}) == 400  # ids are strings
        assert send("POST", "/registered_models", {"name": "b", "labels": {}}) == 400  # not in the schema
        assert send("POST", "/model_versions", {"name": "v", "registeredModelId": "1", "customProperties": {
            "map50": {"metadataType": "MetadataDoubleValue", "double_value": "0.8"}}}) == 400
        assert send("GET", "/registered_models?orderBy=SIZE") == 400  # not one of the document's orderings
        assert send("GET", "/registered_models", auth=False) == 400  # the document requires a bearer token
        assert send("GET", "/models") == 404
        assert len(server.rejected) == 7 and server.bad_responses == []
        assert "'name' is a required property" in server.rejected[0] and "labels" in server.rejected[2]
        assert "Bearer" in server.rejected[5]
    assert len(server.registered_models) == 1


@pytest.mark.parametrize("url", ["https://registry-rest.apps.example.com", "http://model-registry.kubeflow.svc:8080",
                                 "https://10.0.0.7:8443/", "http://[::1]:8080", ""])
def test_a_registry_address_is_scheme_host_and_port(url):
    assert registry_url_problems(url) == []


@pytest.mark.parametrize("url", ["registry:8080", "ftp://registry", "https://", "https://registry/api/model_registry",
                                 "https://registry:99999", "https://user@registry", "https:// registry"])
def test_anything_else_is_refused_in_one_line_before_any_request(url, exported):
    (problem,) = registry_url_problems(url)
    assert problem.startswith("model_registry_url must be empty or a Kubeflow Model Registry's REST address")
    assert "\n" not in problem and repr(redact(url)) in problem  # user-info masked: https://***@registry
    with pytest.raises(ValueError, match="model_registry_url must be"):
        register_published_model(registry_url=url, name="m", version_url="s3://b/v", run_id="r", **exported)


def test_the_cli_refuses_a_registry_address_before_submitting(capsys):
    from yolo_kfp.cli import main

    assert main(["submit", "--host", "http://127.0.0.1:9", "--param", 'model_registry_url="registry:8080"']) == 2
    assert "model_registry_url must be empty or a Kubeflow Model Registry's REST address" in capsys.readouterr().err


def test_preflight_refuses_a_malformed_address_before_any_work(monkeypatch):
    from yolo_kfp.components.preflight import preflight
    from yolo_kfp.params.run_parameters import defaults as parameter_defaults

    called = []
    monkeypatch.setattr("yolo_kfp.params.preflight.check_s3_inputs", lambda **kw: called.append(kw))
    monkeypatch.setattr(registry, "check_access", lambda **kw: called.append(kw))
    params = {name: value for name, value in parameter_defaults().items() if name in preflight.component_spec.inputs}
    with pytest.raises(ValueError, match="bad parameter: model_registry_url must be empty or a Kubeflow Model"):
        preflight.python_func(**{**params, "model_registry_url": "registry.example.com"})
    assert called == []


def test_preflight_reaches_the_registry_when_a_model_will_be_registered(standin, monkeypatch):
    from yolo_kfp.components.preflight import preflight
    from yolo_kfp.params.run_parameters import defaults as parameter_defaults

    monkeypatch.setattr("yolo_kfp.params.preflight.check_s3_inputs", lambda **kw: "")
    params = {name: value for name, value in parameter_defaults().items() if name in preflight.component_spec.inputs}
    preflight.python_func(**{**params, "model_registry_url": standin.url})
    assert standin.requests == []  # nothing to publish: nothing to register
    preflight.python_func(**{**params, "model_registry_url": standin.url, "publish_to": "s3://models/yolo-kfp"})
    assert [r.path for r in standin.requests] == [standin.api + "/registered_models"]
    standin.token = "another"
    with pytest.raises(RegistryError, match="refused to connect"):
        preflight.python_func(**{**params, "model_registry_url": standin.url, "publish_to": "s3://models/yolo-kfp"})


def test_only_a_promoted_model_reaches_the_registry(default_pipeline):
    """In the compiled pipeline the registry's address goes to preflight and to publish, and publish runs
    only inside the gate's "promote" condition: a refused model registers nothing."""
    with open(default_pipeline) as f:
        spec = next(yaml.safe_load_all(f))
    takers = {}

    def walk(dag: dict, conditions: list[str]):
        for name, task in dag["tasks"].items():
            here = conditions + [task.get("triggerPolicy", {}).get("condition", "")]
            component = spec["components"][task["componentRef"]["name"]]
            if "dag" in component:
                walk(component["dag"], here)
            elif "model_registry_url" in task.get("inputs", {}).get("parameters", {}):
                takers[name] = [c for c in here if c]

    walk(spec["root"]["dag"], [])
    assert set(takers) == {"preflight", "publish"} and takers["preflight"] == []
    assert takers["publish"] == ["inputs.parameter_values['pipelinechannel--publish_to'] != ''",
                                 "inputs.parameter_values['pipelinechannel--gate-Output'] == 'promote'"]


def test_publish_component_registers_through_kfp_local(s3, bucket, standin, exported, local_kfp, tmp_path, monkeypatch):
    from kfp import dsl
    from kfp.dsl import Artifact, Model

    from yolo_kfp.components.publish import publish
    from yolo_kfp.infra.storage import Storage
    from yolo_kfp.release.publish import read_latest

    for name, setting in s3.data_connection().items():
        monkeypatch.setenv(name, setting)
    model = tmp_path / "model"
    (model / "weights").mkdir(parents=True)
    (model / "weights" / "best.pt").write_bytes(b"w" * 100)
    (model / "args.yaml").write_text("epochs: 3\n")
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"classes": ["Bicycle", "Car", "Traffic sign"]}))

    @dsl.pipeline
    def promoted(registry_url: str, publish_to: str):
        def imported(path, kind):
            return dsl.importer(artifact_uri=str(path), artifact_class=kind, reimport=False).output

        publish(model=imported(model, Model), onnx_model=imported(exported["onnx_dir"], Model),
                metrics_json=imported(exported["metrics_path"], Artifact), dataset_stats=imported(stats, Artifact),
                publish_to=publish_to, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, mlflow_tracking_uri="",
                registered_model_name="yolo-detector", model_registry_url=registry_url, publish_oci="",
                modelcar_base=DEFAULT_BASE)

    promoted(registry_url=standin.url, publish_to=f"s3://{bucket}/yolo-kfp")
    manifest = read_latest(f"s3://{bucket}/yolo-kfp", Storage.from_env(s3.data_connection()))
    (name, version), = standin.versions_of("yolo-detector").items()
    assert name == manifest["run_id"] and manifest["run_id"]
    (artifact,) = standin.artifacts_of(version["id"])
    assert artifact["uri"] == f"s3://{bucket}/yolo-kfp/{manifest['version']}/serving/yolo-kfp"
    assert "serving/yolo-kfp/1/model.onnx" in manifest["files"]  # what a runtime finds under that URI
    assert (artifact["modelFormatName"], artifact["modelFormatVersion"]) == ("onnx", str(OPSET))
    assert value(version["customProperties"]["map50"]) == METRICS["map50"]
