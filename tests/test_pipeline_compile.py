"""The compiled pipeline: what the cluster receives, and that the committed YAML matches the code."""

import json
import os

import pytest
import yaml

from yolo_kfp.components.convert import convert
from yolo_kfp.components.download import download_shard, merge_download, plan_download
from yolo_kfp.components.evaluate import evaluate
from yolo_kfp.components.train import train
from yolo_kfp.params.run_parameters import defaults as parameter_defaults
from yolo_kfp.pipeline.compile_options import DATA_CONNECTION, CompileOptions
from yolo_kfp.pipeline.pipeline import compile_pipeline

COMMITTED = os.path.join(os.path.dirname(__file__), "..", "pipeline", "yolo_pipeline.yaml")


def load(path):
    with open(path) as f:
        spec, platform = yaml.safe_load_all(f)
    return spec, platform


@pytest.fixture(scope="module")
def compiled(default_pipeline):
    return load(default_pipeline)


def test_committed_yaml_is_up_to_date(default_pipeline):
    with open(default_pipeline) as a, open(COMMITTED) as b:
        assert a.read() == b.read(), "pipeline/yolo_pipeline.yaml is stale: run " \
                                     "yolo-kfp compile --output pipeline/yolo_pipeline.yaml"


def train_settings(compiled_pipeline):
    """The train executor's resources, its Kubernetes settings and the train task's GPU count input."""
    spec, platform = compiled_pipeline
    return (spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"],
            platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"],
            spec["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]["gpus"]["runtimeValue"]["constant"])


def test_train_requests_a_gpu_node_with_memory_backed_shm(compiled):
    resources, train_platform, gpus = train_settings(compiled)
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert resources["accelerator"]["resourceCount"] == "1" and gpus == 1
    assert resources["resourceCpuRequest"] == "8"
    assert resources["resourceMemoryRequest"] == "32Gi"  # 24Gi and the 8Gi /dev/shm it holds
    assert train_platform["emptyDirMounts"] == [{"medium": "Memory", "mountPath": "/dev/shm", "sizeLimit": "8Gi",
                                                 "volumeName": "dshm"}]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in train_platform["tolerations"]
    assert len(train_platform["tolerations"]) == 1 and "nodeSelector" not in train_platform, "none unless asked"
    assert "podMetadata" not in train_platform, "no Kueue queue label unless asked"
    for other in ("exec-download-shard", "exec-convert", "exec-evaluate"):
        assert "accelerator" not in compiled[0]["deploymentSpec"]["executors"][other]["container"].get("resources", {})


def test_two_gpus_scale_the_train_pod_and_reach_ultralytics(tmp_path):
    compiled = load(compile_pipeline(str(tmp_path / "p.yaml"), CompileOptions(gpus=2)))
    resources, train_platform, gpus = train_settings(compiled)
    assert resources["accelerator"]["resourceCount"] == "2"
    assert gpus == 2  # the train step hands Ultralytics device "0,1" (test_train)
    assert resources["resourceCpuRequest"] == "16" and resources["resourceMemoryRequest"] == "64Gi"
    assert train_platform["emptyDirMounts"][0]["sizeLimit"] == "16Gi"
    assert "gpus=2 " in compiled[0]["pipelineInfo"]["description"]


def test_resources_per_gpu_are_compile_options():
    options = CompileOptions(gpus=4, cpu_per_gpu="1500m", memory_per_gpu="12Gi", shm_size="512Mi")
    assert (options.train_cpu, options.train_memory, options.shm_limit) == ("6", "50Gi", "2Gi")
    for bad, message in (({"gpus": 0}, "gpus must be 1 or more"), ({"memory_per_gpu": "24 GB"}, "not a Kubernetes"),
                         ({"download_parallelism": 0}, "--download-parallelism must be 1 or more")):
        with pytest.raises(ValueError, match=message):
            CompileOptions(**bad)


def test_kueue_queue_labels_the_train_pod(tmp_path):
    spec, platform = load(compile_pipeline(str(tmp_path / "p.yaml"), CompileOptions(kueue_queue="gpu-team")))
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["exec-train"]["podMetadata"] == {"labels": {"kueue.x-k8s.io/queue-name": "gpu-team"}}
    assert [name for name, config in executors.items() if "podMetadata" in config] == ["exec-train", "exec-train-trial"]
    assert "kueue_queue=gpu-team" in spec["pipelineInfo"]["description"]


def test_download_fans_out_over_the_plans_shards_and_merges_them(tmp_path):
    spec, _ = load(compile_pipeline(str(tmp_path / "p.yaml"), CompileOptions(download_parallelism=5)))
    tasks = spec["root"]["dag"]["tasks"]
    ((loop_name, loop),) = [(name, t) for name, t in tasks.items() if "parameterIterator" in t]
    assert loop["iteratorPolicy"] == {"parallelismLimit": 5}
    assert loop["parameterIterator"]["items"] == {"inputParameter": "pipelinechannel--plan-download-Output"}
    assert tasks["merge-download"]["inputs"]["artifacts"]["shards"]["taskOutputArtifact"]["producerTask"] == loop_name
    assert tasks["convert"]["inputs"]["artifacts"]["raw_dataset"]["taskOutputArtifact"]["producerTask"] == \
        "merge-download"
    assert "download_parallelism=5" in spec["pipelineInfo"]["description"]


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


@pytest.mark.parametrize("component", [plan_download, download_shard, merge_download, convert, train, evaluate])
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
    for step in ("exec-preflight", "exec-plan-download", "exec-convert", "exec-train", "exec-publish"):
        (env,) = [s for s in executors[step]["secretAsEnv"] if s["secretName"] == DATA_CONNECTION]
        assert env["optional"] is True
        assert {m["envVar"] for m in env["keyToEnv"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                                          "AWS_S3_ENDPOINT", "AWS_DEFAULT_REGION", "AWS_S3_BUCKET"}
    for step in ("exec-evaluate", "exec-download-shard", "exec-merge-download"):  # they need no S3 of ours
        assert "secretAsEnv" not in executors.get(step, {})


def test_publish_runs_only_when_asked_and_after_evaluation(compiled):
    spec, _ = compiled
    tasks = spec["root"]["dag"]["tasks"]
    conditions = {t["triggerPolicy"]["condition"]: t for t in tasks.values() if "triggerPolicy" in t}
    assert set(conditions) == {"inputs.parameter_values['pipelinechannel--publish_to'] != ''",
                               "inputs.parameter_values['pipelinechannel--mlflow_tracking_uri'] != ''"}
    assert all("evaluate" in condition["dependentTasks"] for condition in conditions.values())
    assert tasks["plan-download"]["dependentTasks"] == ["preflight"]


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


def test_train_takes_no_run_unique_input_so_kfp_can_cache_it(compiled):
    spec, _ = compiled
    train_inputs = spec["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]
    for name, value in train_inputs.items():
        assert "pipeline_job" not in json.dumps(value), name
    assert spec["root"]["dag"]["tasks"]["train"].get("cachingOptions", {}).get("enableCache", True)


def test_every_input_of_the_pipeline_and_of_each_component_explains_itself(compiled):
    """The Data Science Pipelines run form shows these descriptions under each field."""
    spec, _ = compiled
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert set(inputs) == set(parameter_defaults())
    assert {name for name, p in inputs.items() if not p.get("description", "").strip()} == set()
    steps = {name: c for name, c in spec["components"].items() if "executorLabel" in c}  # not KFP's own DAGs
    assert len(steps) == 14
    for name, component in steps.items():
        for kind in ("parameters", "artifacts"):
            for key, value in component.get("inputDefinitions", {}).get(kind, {}).items():
                assert value.get("description", "").strip(), f"{name}: {key}"
