"""Server targets: the compiled YAML for each pipeline server parses as that server parses it, applies
what it sets there, and every pod carries the requests and limits a quota namespace admits."""

import glob
import json
import os
import re

import pytest
import yaml
from server_schemas import SCHEMAS, TARGET_SCHEMAS, parse_errors

from yolo_kfp.cli import main
from yolo_kfp.infra.pod_size import quantity
from yolo_kfp.model.tracking import CREDENTIAL_KEYS
from yolo_kfp.params.search_space import SEARCH_REFUSAL_ENV
from yolo_kfp.params.validation import parameter_problems
from yolo_kfp.pipeline import servers
from yolo_kfp.pipeline.compile_options import MLFLOW_CONNECTION, CompileOptions
from yolo_kfp.pipeline.pipeline import compile_pipeline

STEPS = {True: 14, False: 9}  # with fan-in; without: one download step for three, no search's three
# What a fan-in (dsl.Collected), a ParallelFor and a dsl.OneOf compile to in the pipeline spec.
FAN_IN_MARKS = ("isArtifactList", "parameterIterator", "iteratorPolicy", "valueFromOneof")
# Parsed but not applied by OpenShift AI 2.19's driver (KFP 2.4.0 with later protos): a run would lose them.
IGNORED_ON_RHOAI_2_19 = ("secretNameParameter", "nodeSelectorJson", "tolerationJson")


FIXED = {"gpu_tolerations": [{"key": "team", "operator": "Equal", "value": "vision", "effect": "NoSchedule"}],
         "gpu_node_selector": {"nvidia.com/gpu.product": "NVIDIA-A100"}, "data_connection": "my-bucket"}


def target_options(target: str, **more) -> CompileOptions:
    fixed = dict(FIXED)
    if not servers.server_target(target).features.optional_secret:
        fixed["mlflow_connection"] = "my-mlflow"
    return CompileOptions(server=target, kueue_queue="gpu", **fixed, **more)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Each target's YAML, with a GPU toleration, a node label and the Secrets named (MLflow's only where the
    server requires it named)."""
    folder = tmp_path_factory.mktemp("targets")

    def compile_for(target: str):
        path = compile_pipeline(str(folder / f"{target}.yaml"), target_options(target))
        with open(path) as f:
            return list(yaml.safe_load_all(f))

    return {target: compile_for(target) for target in TARGET_SCHEMAS}


def as_one_node(spec: dict) -> dict:
    """``spec`` with the train-on-nodes task's name (and its outputs' channels) as the one-node train task's."""
    return json.loads(json.dumps(spec).replace("train-on-nodes", "train"))


def executors(documents) -> dict:
    return documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_targets_named_in_help_are_the_ones_checked():
    assert set(servers.TARGETS) == set(TARGET_SCHEMAS)
    assert servers.DEFAULT in servers.TARGETS


@pytest.mark.parametrize("target", sorted(TARGET_SCHEMAS))
def test_each_target_parses_strictly_with_its_servers_schema(compiled, target):
    assert parse_errors(SCHEMAS[TARGET_SCHEMAS[target]], *compiled[target]) == {}


def test_the_schema_check_can_fail(compiled):
    """The default YAML is refused by the KFP 2.5 schema; what is compiled for OpenShift AI 2.22 is not."""
    errors = parse_errors(SCHEMAS["2.5"], *compiled[servers.DEFAULT])
    assert errors and all("optional" in error for error in errors.values()), errors
    assert parse_errors(SCHEMAS["2.5"], *compiled["rhoai-2.22"]) == {}


@pytest.mark.parametrize("target", ["rhoai-2.19", "kfp-2.4", "kfp-2.2"])
def test_older_targets_carry_no_field_their_driver_drops(compiled, target):
    text = json.dumps(compiled[target])
    for field in (*IGNORED_ON_RHOAI_2_19, '"optional"'):
        assert field not in text, field
    secrets = [s for config in executors(compiled[target]).values() for s in config.get("secretAsEnv", [])]
    assert secrets and {s["secretName"] for s in secrets} == {"my-bucket", "my-mlflow"}
    train = executors(compiled[target])["exec-train"]
    assert {"key": "team", "operator": "Equal", "value": "vision", "effect": "NoSchedule"} in train["tolerations"]
    assert train["nodeSelector"] == {"labels": {"nvidia.com/gpu.product": "NVIDIA-A100"}}
    assert train["podMetadata"] == {"labels": {"kueue.x-k8s.io/queue-name": "gpu"}}
    assert f"server={target}" in compiled[target][0]["pipelineInfo"]["description"]


def test_shm_is_a_generic_ephemeral_volume_below_kfp_2_3_and_memory_from_2_3(compiled):
    (volume,) = executors(compiled["kfp-2.2"])["exec-train"]["genericEphemeralVolume"]
    assert volume["mountPath"] == "/dev/shm" and volume["size"] == "8Gi"
    assert "emptyDirMounts" not in executors(compiled["kfp-2.2"])["exec-train"]
    for target in ("kfp-2.3", "rhoai-2.19", servers.DEFAULT):
        (mount,) = executors(compiled[target])["exec-train"]["emptyDirMounts"]
        assert mount["medium"] == "Memory" and mount["mountPath"] == "/dev/shm"


def test_pod_settings_are_fixed_when_compiling_on_every_server(compiled):
    """No run chooses the Secrets its pods mount or where the train pod runs: no Secret name, toleration or
    node selector comes from a run parameter, on any target."""
    for target, documents in compiled.items():
        config = executors(documents)
        text = json.dumps(config)
        assert "componentInputParameter" not in text and "tolerationJson" not in text, target
        assert {"key": "team", "operator": "Equal", "value": "vision", "effect": "NoSchedule"} in \
            config["exec-train"]["tolerations"], target
        assert config["exec-train"]["nodeSelector"] == {"labels": {"nvidia.com/gpu.product": "NVIDIA-A100"}}, target
        form = documents[0]["root"]["inputDefinitions"]["parameters"]
        pod_settings = {"data_connection", "mlflow_connection", "gpu_node_selector", "gpu_tolerations"}
        assert not pod_settings & set(form), target
        assert "data_connection=my-bucket" in documents[0]["pipelineInfo"]["description"]
    def secrets(target):
        return [s for c in executors(compiled[target]).values() for s in c.get("secretAsEnv", [])]

    assert all("optional" not in s for s in secrets("rhoai-2.22")) and all(s["optional"] for s in secrets("rhoai-3.0"))


def mlflow_secrets(documents) -> dict:
    return {name: secret for name, config in executors(documents).items() for secret in config.get("secretAsEnv", [])
            if {e["secretKey"] for e in secret["keyToEnv"]} == set(CREDENTIAL_KEYS)}


def test_mlflow_credentials_come_from_a_secret_a_run_may_lack_where_the_server_allows_it(compiled, tmp_path):
    newest = mlflow_secrets(compiled["kfp-2.16"])
    assert set(newest) == {"exec-preflight", "exec-train", "exec-train-trial", "exec-track", "exec-publish"}
    assert all(s["optional"] and s["secretName"] == MLFLOW_CONNECTION for s in newest.values())
    # older servers require every Secret: only the one named when compiling
    assert {s["secretNameParameter"]["runtimeValue"]["constant"] for s in mlflow_secrets(
        compiled["rhoai-2.22"]).values()} == {"my-mlflow"}
    assert {s["secretName"] for s in mlflow_secrets(compiled["kfp-2.2"]).values()} == {"my-mlflow"}
    assert all("optional" not in s for s in mlflow_secrets(compiled["rhoai-2.22"]).values())
    with open(compile_pipeline(str(tmp_path / "p.yaml"), CompileOptions(server="rhoai-2.22"))) as f:
        unnamed = list(yaml.safe_load_all(f))
    assert not mlflow_secrets(unnamed)


@pytest.mark.parametrize("target", sorted(TARGET_SCHEMAS))
def test_every_executor_has_cpu_and_memory_requests_and_limits(compiled, target):
    steps = compiled[target][0]["deploymentSpec"]["executors"]
    assert len(steps) == STEPS[servers.server_target(target).features.fan_in]
    for name, executor in steps.items():
        resources = executor["container"]["resources"]
        for kind in ("Cpu", "Memory"):
            request, limit = resources[f"resource{kind}Request"], resources[f"resource{kind}Limit"]
            assert quantity(limit) >= quantity(request) > 0, (name, kind)
            # what servers before the string forms read
            assert resources[f"{kind.lower()}Limit"] >= resources[f"{kind.lower()}Request"] > 0, (name, kind)
    train = steps["exec-train"]["container"]["resources"]
    assert quantity(train["resourceMemoryLimit"]) >= quantity("24Gi") + quantity("8Gi")


def test_targets_resolve_by_release_and_refuse_below_the_floor():
    assert servers.server_target("rhoai-2.24").features.kfp == "2.5"
    assert servers.server_target("rhoai-2.20").features.kfp == "2.3"  # the 2.4 driver: emptyDir, no run settings
    assert servers.server_target("kfp-2.14.3").features.kfp == "2.14"  # fan-in; `optional` came in 2.15
    assert not servers.server_target("kfp-2.14").features.optional_secret
    assert servers.server_target("kfp-2.13").features.kfp == "2.5"
    assert not servers.server_target("rhoai-2.25").features.fan_in
    assert servers.server_target("rhoai-3.0").features.fan_in
    assert servers.server_target("rhoai-3.2").features.optional_secret
    assert servers.server_target("kfp-2.17").features.kfp == "2.16"  # newer servers read what 2.16 does
    assert servers.server_target("rhoai-3.3").features.kfp == "2.15"
    for old in ("kfp-2.1", "rhoai-2.14", "kfp-1.8"):
        with pytest.raises(ValueError, match="needs KFP 2.2"):
            servers.server_target(old)
    with pytest.raises(ValueError, match="kfp-X.Y"):
        servers.server_target("openshift-4.16")


@pytest.mark.parametrize("param", ['data_connection="someone-elses"', 'mlflow_connection="mine"',
                                   'gpu_tolerations=[{"key": "a", "operator": "Exists"}]'])
def test_a_run_cannot_name_a_secret_or_place_its_pods(capsys, param):
    assert main(["submit", "--host", "http://127.0.0.1:9", "--param", param]) == 2
    name = param.split("=")[0]
    error = capsys.readouterr().err
    assert f"unknown parameter '{name}'" in error and "fixed when compiling: yolo-kfp compile --help" in error


@pytest.mark.parametrize("options, message", [
    ({"server": "kfp-2.2", "shm_volume": "emptydir"}, "does not apply emptyDir"),
    ({"step_resources": {"train": {"cpu": "4"}}}, "--cpu-per-gpu"),
    ({"step_resources": {"evaluate": {"cpu": "8"}}}, "cpu_limit 4 is below its cpu request 8"),
    ({"step_resources": {"evaluate": {"gpu": "1"}}}, "known: cpu, cpu_limit, memory, memory_limit"),
    ({"server": "kfp-2.4", "gpu_tolerations": [{"taint": "x"}]}, "fields among key"),
    ({"gpu_node_selector": {"zone": 1}}, "--gpu-node-selector must be a JSON object of label: value strings"),
    ({"data_connection": "Not_A_Secret"}, "--data-connection 'Not_A_Secret' is not a Secret's name"),
    ({"mlflow_connection": "x" * 254}, "--mlflow-connection '"),
    ({"data_connection": ""}, "--data-connection is empty"),
])
def test_compile_options_a_server_would_reject_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        CompileOptions(**options)


def test_step_resources_override_what_a_step_declares(tmp_path):
    options = CompileOptions(step_resources={"evaluate": {"memory": "16Gi", "cpu_limit": "8"}})
    spec, _ = yaml.safe_load_all(open(compile_pipeline(str(tmp_path / "p.yaml"), options)))
    resources = spec["deploymentSpec"]["executors"]["exec-evaluate"]["container"]["resources"]
    assert (resources["resourceMemoryRequest"], resources["resourceMemoryLimit"]) == ("16Gi", "16Gi")
    assert (resources["resourceCpuRequest"], resources["resourceCpuLimit"]) == ("2", "8")
    assert "evaluate=2/8cpu,16Gi/16Gi" in spec["pipelineInfo"]["description"]


@pytest.mark.parametrize("target", sorted(TARGET_SCHEMAS))
def test_steps_run_as_non_root_where_the_server_applies_it(compiled, target):
    """KFP 2.16's compiler gives every step's container allowPrivilegeEscalation false, capabilities
    dropped and RuntimeDefault seccomp; runAsNonRoot (the images' USER 1001) is the task's own. Older
    servers refuse the field (the strict parse above), so their YAML has none."""
    contexts = {name: config.get("securityContext") for name, config in executors(compiled[target]).items()}
    assert len(contexts) == STEPS[servers.server_target(target).features.fan_in]
    if servers.server_target(target).features.security_context:
        assert set(map(str, contexts.values())) == {str({"runAsNonRoot": True})}, contexts
    else:
        assert set(contexts.values()) == {None}, contexts
    assert servers.server_target(target).features.security_context == (target in ("kfp-2.16", "rhoai-3.4"))


def test_the_images_run_as_a_numeric_non_root_user():
    """runAsNonRoot needs a numeric USER: the kubelet cannot check a name, and refuses to start the pod."""
    files = glob.glob(os.path.join(os.path.dirname(__file__), "..", "images", "*.Containerfile"))
    assert len(files) == 2
    for path in files:
        with open(path) as f:
            users = [line.split()[1] for line in f if line.startswith("USER ")]
        assert users and users[-1].isdigit() and int(users[-1]) != 0, (path, users)


@pytest.mark.parametrize("target", sorted(TARGET_SCHEMAS))
def test_servers_without_fan_in_download_in_one_task_and_have_no_search(compiled, target):
    """Before KFP 2.14 a driver cannot resolve dsl.Collected: such a YAML has no ParallelFor, no fan-in and no
    OneOf, and its preflight refuses a search; from 2.14 the download fans out and the search is there."""
    spec = compiled[target][0]
    text, executors = json.dumps(spec), spec["deploymentSpec"]["executors"]
    tasks = spec["root"]["dag"]["tasks"]
    preflight_env = {e["name"]: e["value"] for e in executors["exec-preflight"]["container"].get("env", [])}
    if servers.server_target(target).features.fan_in:
        assert all(mark in text for mark in FAN_IN_MARKS)
        assert {"exec-plan-download", "exec-download-shard", "exec-merge-download", "exec-train-trial",
                "exec-choose-trial", "exec-no-search"} <= set(executors) and "exec-download" not in executors
        assert tasks["train"]["inputs"]["parameters"]["search"]["taskOutputParameter"]
        assert not preflight_env
    else:
        assert not [mark for mark in FAN_IN_MARKS if mark in text]
        assert {e for e in executors if "download" in e or "trial" in e or "search" in e} == {"exec-download"}
        raw_dataset = tasks["convert"]["inputs"]["artifacts"]["raw_dataset"]
        assert raw_dataset["taskOutputArtifact"]["producerTask"] == "download"
        assert tasks["train"]["inputs"]["parameters"]["search"] == {"runtimeValue": {"constant": ""}}
        assert preflight_env == {SEARCH_REFUSAL_ENV: servers.search_refusal(servers.server_target(target))}
        assert "download_parallelism" not in spec["pipelineInfo"]["description"]
        assert "download=1/2cpu,2560Mi/2560Mi" in spec["pipelineInfo"]["description"]


def test_a_search_is_refused_where_the_pipeline_has_none(capsys, monkeypatch):
    space = 'search_space={"epochs": [5, 10]}'
    for command in (["submit"], ["schedule", "--cron", "0 0 3 * * *", "--name", "nightly"]):
        assert main([*command, "--host", "http://127.0.0.1:9", "--server", "rhoai-2.22", "--param", space]) == 2
        err = capsys.readouterr().err
        assert "search_space is set, but the pipeline compiled for rhoai-2.22 has no search" in err
        assert "servers before KFP 2.14 cannot gather" in err and "dsl." not in err, err
        assert len(err.strip().splitlines()) == 1, err
    servers.check_run_parameters({"search_space": {}}, servers.server_target("rhoai-2.22"))
    servers.check_run_parameters({"search_space": {"lr0": [0.01]}}, servers.server_target("rhoai-3.0"))
    # the run form's preflight: the compile's reason, and nothing else about the space
    refusal = servers.search_refusal(servers.server_target("kfp-2.5"))
    monkeypatch.setenv(SEARCH_REFUSAL_ENV, refusal)
    assert parameter_problems({"search_space": {"nothing": 1}}) == [refusal]
    assert parameter_problems({"search_space": {}}) == []
    monkeypatch.delenv(SEARCH_REFUSAL_ENV)
    assert parameter_problems({"search_space": {"epochs": [5, 10]}}) == []


def test_preflight_refuses_a_search_in_a_run_of_a_pipeline_compiled_without_one(local_kfp, capfd):
    """The run form's way in: kfp.local runs the kfp-2.5 pipeline's preflight with the environment it compiles."""
    from yolo_kfp.pipeline.pipeline import make_pipeline

    with pytest.raises(RuntimeError, match="preflight"):
        make_pipeline(CompileOptions(server="kfp-2.5"))(search_space={"lr0": [0.01, 0.02]})
    output = capfd.readouterr()
    assert f"ValueError: bad parameter: {servers.search_refusal(servers.server_target('kfp-2.5'))}" in (
        output.out + output.err)
    assert "'download'" not in output.out + output.err, "nothing ran after it"


@pytest.mark.parametrize("target", sorted(TARGET_SCHEMAS))
def test_two_nodes_compile_to_a_launcher_every_server_parses(compiled, tmp_path, target):
    """--nodes 2: a train-on-nodes task instead of train, with its pod's name, UID and namespace from the
    downward API and the nodes' pods as the options fix them; the YAML parses with the server's own schema, and
    every other task and executor is the one-node YAML's. One node is the default."""
    from yolo_kfp.model.job_launcher import ENGINES

    assert CompileOptions(server=target, nodes=1) == CompileOptions(server=target)
    options = target_options(target, nodes=2)
    with open(compile_pipeline(str(tmp_path / "two.yaml"), options)) as f:
        documents = list(yaml.safe_load_all(f))
    assert parse_errors(SCHEMAS[TARGET_SCHEMAS[target]], *documents) == {}
    tasks, one_node = documents[0]["root"]["dag"]["tasks"], compiled[target][0]["root"]["dag"]["tasks"]
    assert set(tasks) - set(one_node) == {"train-on-nodes"} and set(one_node) - set(tasks) == {"train"}
    assert as_one_node({k: v for k, v in tasks.items() if k != "train-on-nodes"}) == {
        k: v for k, v in one_node.items() if k != "train"}
    launcher = executors(documents)["exec-train-on-nodes"]
    assert {e["name"]: e["fieldPath"] for e in launcher["fieldPathAsEnv"]} == {
        "YOLO_KFP_POD_NAME": "metadata.name", "YOLO_KFP_POD_UID": "metadata.uid",
        "YOLO_KFP_POD_NAMESPACE": "metadata.namespace"}
    assert {k: v for k, v in executors(documents).items() if k != "exec-train-on-nodes"} == {
        k: v for k, v in executors(compiled[target]).items() if k != "exec-train"}
    job = tasks["train-on-nodes"]["inputs"]["parameters"]["nodes_job"]["runtimeValue"]["constant"]
    assert job["nodes"] == 2 and job["engine"] == servers.training_engine(servers.server_target(target))
    assert job["engine"] in ENGINES and job["queue"] == "gpu" and job["shm_size"] == options.shm_limit
    assert FIXED["gpu_tolerations"][0] in job["tolerations"] and job["node_selector"] == FIXED["gpu_node_selector"]


@pytest.mark.parametrize("options, message", [
    ({"nodes": 0}, "--nodes must be 1 to 64, not 0"),
    ({"nodes": 65}, "--nodes must be 1 to 64, not 65"),
    ({"nodes": 2, "training_runtime": "Torch"}, "--training-runtime 'Torch' is not a runtime's name"),
])
def test_nodes_and_the_runtime_are_checked_when_compiling(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        CompileOptions(**options)
