"""The compiled pipeline: what the cluster receives, and that the committed YAML matches the code."""

import os

import pytest
import yaml

from components.convert import convert
from components.download import download
from components.evaluate import evaluate
from components.train import train
from pipeline.pipeline import CompileOptions, compile_pipeline, parameter_defaults

COMMITTED = os.path.join(os.path.dirname(__file__), "..", "pipeline", "yolo_pipeline.yaml")


def load(path):
    with open(path) as f:
        spec, platform = yaml.safe_load_all(f)
    return spec, platform


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    return load(compile_pipeline(str(tmp_path_factory.mktemp("yaml") / "p.yaml")))


def test_committed_yaml_is_up_to_date(tmp_path):
    fresh = compile_pipeline(str(tmp_path / "p.yaml"))
    with open(fresh) as a, open(COMMITTED) as b:
        assert a.read() == b.read(), "pipeline/yolo_pipeline.yaml is stale: run " \
                                     "yolo-kfp compile --output pipeline/yolo_pipeline.yaml"


def test_train_requests_a_gpu_node_with_memory_backed_shm(compiled):
    spec, platform = compiled
    resources = spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert "pipelinechannel--gpus" in resources["accelerator"]["resourceCount"]
    assert "pipelinechannel--train_cpu" in resources["resourceCpuRequest"]
    assert "pipelinechannel--train_memory" in resources["resourceMemoryRequest"]
    train_platform = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert train_platform["emptyDirMounts"] == [{"medium": "Memory", "mountPath": "/dev/shm", "sizeLimit": "8Gi",
                                                 "volumeName": "dshm"}]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in train_platform["tolerations"]
    for other in ("exec-download", "exec-convert", "exec-evaluate"):
        assert "accelerator" not in spec["deploymentSpec"]["executors"][other]["container"].get("resources", {})


def test_shm_size_is_a_compile_option_recorded_in_the_description(tmp_path):
    spec, platform = load(compile_pipeline(str(tmp_path / "p.yaml"), CompileOptions(shm_size="32Gi")))
    mounts = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]["emptyDirMounts"]
    assert mounts[0]["sizeLimit"] == "32Gi"
    assert "shm_size=32Gi" in spec["pipelineInfo"]["description"]


def test_every_parameter_has_a_default_in_the_ui_form(compiled):
    spec, _ = compiled
    form = spec["root"]["inputDefinitions"]["parameters"]
    assert set(form) == set(parameter_defaults())
    for name, default in parameter_defaults().items():
        assert form[name]["isOptional"] is True and "defaultValue" in form[name], name
        assert form[name]["defaultValue"] == default, name


def test_defaults_are_the_notebook_settings():
    d = parameter_defaults()
    assert d["classes"] == ["Bicycle", "Car", "Traffic sign"] and d["max_samples_per_class"] == 300
    assert (d["seed"], d["split_ratios"], d["epochs"], d["batch"], d["freeze"]) == \
        (42, [0.75, 0.125, 0.125], 50, 256, 10)
    assert d["base_model"] == "yolov5nu.pt"


@pytest.mark.parametrize("component", [download, convert, train, evaluate])
def test_every_component_is_documented(component):
    assert len((component.description or "").split()) >= 10


def test_steps_use_our_images_and_install_nothing(compiled):
    spec, _ = compiled
    for name, executor in spec["deploymentSpec"]["executors"].items():
        container = executor["container"]
        assert container["image"].startswith("quay.io/yolo-kfp/"), name
        assert "pip install" not in " ".join(container["command"] + container.get("args", [])), name


def test_data_connection_secret_is_referenced_by_name_only(tmp_path, monkeypatch):
    secret = "compile-time-secret-value-1234"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "compile-time-key-id")
    text = open(compile_pipeline(str(tmp_path / "p.yaml"))).read()
    assert secret not in text and "compile-time-key-id" not in text
    spec, platform = load(str(tmp_path / "p.yaml"))
    credential_like = [p for p in spec["root"]["inputDefinitions"]["parameters"]
                       if any(w in p for w in ("secret", "password", "token", "access_key"))]
    assert credential_like == []
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for step in ("exec-preflight", "exec-download", "exec-convert", "exec-train", "exec-publish"):
        (env,) = executors[step]["secretAsEnv"]
        assert env["secretNameParameter"]["componentInputParameter"].endswith("data_connection")
        assert env["optional"] is True
        assert {m["envVar"] for m in env["keyToEnv"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                                          "AWS_S3_ENDPOINT", "AWS_DEFAULT_REGION", "AWS_S3_BUCKET"}
    assert "secretAsEnv" not in executors.get("exec-evaluate", {})


def test_publish_runs_only_when_asked_and_after_evaluation(compiled):
    spec, _ = compiled
    tasks = spec["root"]["dag"]["tasks"]
    (condition,) = [t for t in tasks.values() if "triggerPolicy" in t]
    rule = condition["triggerPolicy"]["condition"]
    assert "publish_to" in rule and "!= ''" in rule
    assert "evaluate" in condition["dependentTasks"]
    assert tasks["download"]["dependentTasks"] == ["preflight"]


def test_older_servers_get_a_generic_ephemeral_volume_at_dev_shm(tmp_path):
    spec, platform = load(compile_pipeline(str(tmp_path / "p.yaml"), CompileOptions(shm_size="16Gi",
                                                                                    shm_volume="ephemeral")))
    train = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert "emptyDirMounts" not in train
    (volume,) = train["genericEphemeralVolume"]
    assert volume["mountPath"] == "/dev/shm" and volume["size"] == "16Gi"
    assert volume["accessModes"] == ["ReadWriteOnce"] and volume["volumeName"] == "dshm"
    assert "shm_volume=ephemeral" in spec["pipelineInfo"]["description"]


def test_unknown_shm_volume_is_refused():
    with pytest.raises(ValueError, match="shm_volume"):
        CompileOptions(shm_volume="tmpfs")
