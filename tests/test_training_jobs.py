"""The jobs a training across nodes runs as, held to the engines' own definitions (../shared/schemas): the
TrainJob to Kubeflow Trainer's CRD as OpenShift AI 3.2 and 3.4 ship it (its CEL rules evaluated) and to their
torch-distributed runtime, the PyTorchJob to the Training Operator's CRD of OpenShift AI 2.16 and 2.25; and the
opt-in RBAC (manifests/train-across-nodes/) to the roles the Trainer and the pipeline operator ship."""

import functools
import os
import shutil
import subprocess

import crd_schema
import kubernetes_validate
import pytest
import yaml
from conftest import shared_schema
from test_manifests import KUBERNETES_VERSION

from yolo_kfp.model import training_jobs
from yolo_kfp.model.node_training import data_connection_env
from yolo_kfp.model.training_jobs import NodesJob, owner_reference, pytorch_job, train_job

ROOT = os.path.join(os.path.dirname(__file__), "..")
TRAINER = ["trainer-rhoai-3.2", "trainer-rhoai-3.4"]
OPERATOR = ["training-operator-rhoai-2.16", "training-operator-rhoai-2.25"]
GPU_NODES = {"nvidia.com/gpu.present": "true"}
GPU_TAINT = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
CREDENTIALS = data_connection_env("aws-connection-models", mlflow_secret="yolo-kfp-mlflow")


def nodes_job(**changes) -> NodesJob:
    settings = {"name": "yolo-kfp-train-3f9c2a", "namespace": "yolo-project", "image": "quay.io/team/train:1.0",
                "command": ["yolo-kfp", "train-node", "--settings", "/work/settings.json"], "nodes": 3,
                "gpus_per_node": 2, "shm_size": "8Gi", "requests": {"cpu": "8", "memory": "32Gi"},
                "limits": {"memory": "48Gi"}, "node_selector": GPU_NODES, "tolerations": GPU_TAINT,
                "env": CREDENTIALS, "queue": "team-gpus", "owner": owner_reference("train-pod-abc", "uid-1234")}
    return NodesJob(**{**settings, **changes})


@functools.cache
def definition(release: str, name: str) -> dict:
    with open(shared_schema(os.path.join(release, name))) as f:
        return yaml.safe_load(f)


@pytest.mark.parametrize("release", TRAINER)
def test_the_trainjob_is_what_trainer_accepts(release):
    job = train_job(nodes_job())
    assert crd_schema.problems(job, definition(release, "trainer.kubeflow.org_trainjobs.yaml")) == []
    trainer = job["spec"]["trainer"]
    assert trainer["numNodes"] == 3 and trainer["numProcPerNode"] == 2 and trainer["command"][0] == "torchrun"
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "2" and trainer["env"] == CREDENTIALS
    assert job["metadata"]["labels"][training_jobs.QUEUE_LABEL] == "team-gpus"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-1234"
    (override,) = job["spec"]["podTemplateOverrides"]
    assert override["spec"]["nodeSelector"] == GPU_NODES and override["spec"]["tolerations"] == GPU_TAINT
    assert override["spec"]["volumes"][0]["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}


@pytest.mark.parametrize("release", TRAINER)
def test_the_trainjob_changes_what_the_runtime_has(release):
    """The runtime it names exists in the release, with the replicated job and container its overrides name."""
    job = train_job(nodes_job())
    runtime = definition(release, "runtimes/torch_distributed.yaml")
    assert runtime["kind"] == job["spec"]["runtimeRef"]["kind"] == "ClusterTrainingRuntime"
    assert runtime["metadata"]["name"] == job["spec"]["runtimeRef"]["name"]
    (replicated,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    (override,) = job["spec"]["podTemplateOverrides"]
    assert override["targetJobs"] == [{"name": replicated["name"]}]
    containers = replicated["template"]["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in override["spec"]["containers"]] == [c["name"] for c in containers]
    assert runtime["spec"]["mlPolicy"]["torch"], "a torch runtime: it sets torchrun's PET_* variables"


@pytest.mark.parametrize("release", TRAINER)
def test_trainer_refuses_a_name_that_is_no_dns_label_and_so_does_the_job(release):
    """The CRD's own CEL rule, evaluated: 'metadata.name must match RFC 1035 DNS label format'."""
    bad = nodes_job(name="Yolo_Train")
    found = crd_schema.problems(train_job(bad), definition(release, "trainer.kubeflow.org_trainjobs.yaml"))
    assert found == [".: self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')"]
    assert bad.problems() == ["job name 'Yolo_Train' is not a DNS label (a-z, 0-9 and '-', at most 63 characters)"]
    long = nodes_job(name="y" * 64)
    assert crd_schema.problems(train_job(long), definition(release, "trainer.kubeflow.org_trainjobs.yaml")) == [
        ".: size(self.metadata.name) <= 63"]
    assert long.problems() and nodes_job().problems() == []


@pytest.mark.parametrize("release", OPERATOR)
def test_the_pytorchjob_is_what_the_training_operator_accepts(release):
    job = pytorch_job(nodes_job())
    assert crd_schema.problems(job, definition(release, "kubeflow.org_pytorchjobs.yaml")) == []
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 2)
    pod = replicas["Worker"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "pytorch" and container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["volumeMounts"] == [{"name": "dshm", "mountPath": "/dev/shm"}]
    assert pod["nodeSelector"] == GPU_NODES and pod["tolerations"] == GPU_TAINT
    assert job["spec"]["nprocPerNode"] == "2" and job["metadata"]["labels"][training_jobs.QUEUE_LABEL] == "team-gpus"


@pytest.mark.parametrize("release", [*TRAINER, *OPERATOR])
def test_a_field_the_crd_does_not_declare_is_caught(release):
    """The check itself: a misspelled field is named, not dropped."""
    kind = "trainer.kubeflow.org_trainjobs.yaml" if release in TRAINER else "kubeflow.org_pytorchjobs.yaml"
    job = train_job(nodes_job()) if release in TRAINER else pytorch_job(nodes_job())
    job["spec"]["numNode"] = 3
    assert "spec.numNode: not declared by the CRD" in crd_schema.problems(job, definition(release, kind))


def test_a_cpu_job_asks_for_no_gpu_and_runs_one_process_a_node():
    job = nodes_job(gpus_per_node=0, queue="", owner=None)
    trainjob, pytorchjob = train_job(job), pytorch_job(job)
    assert trainjob["spec"]["trainer"]["numProcPerNode"] == 1 and pytorchjob["spec"]["nprocPerNode"] == "1"
    container = pytorchjob["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    for resources in (trainjob["spec"]["trainer"]["resourcesPerNode"], container["resources"]):
        assert all("nvidia.com/gpu" not in amounts for amounts in resources.values()), resources
    assert training_jobs.QUEUE_LABEL not in trainjob["metadata"]["labels"]
    assert "ownerReferences" not in trainjob["metadata"]
    assert nodes_job(nodes=1).problems() == [
        "nodes=1: a job across nodes has at least 2 (one node trains in the step)"]


def built(folder: str) -> dict:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed (.ci/run installs it)"
    out = subprocess.run([kubectl, "kustomize", folder], capture_output=True, text=True, check=True).stdout
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out)}


def grants(rules: list[dict], group: str, resource: str, verbs: set[str]) -> bool:
    return any(group in rule["apiGroups"] and {resource, "*"} & set(rule["resources"])
               and (verbs <= set(rule["verbs"]) or "*" in rule["verbs"]) for rule in rules)


@pytest.mark.parametrize("release", TRAINER)
def test_the_opt_in_rbac_gives_the_pipeline_runner_what_a_trainjob_needs(release):
    objects = built(os.path.join(ROOT, "manifests", "train-across-nodes"))
    for obj in objects.values():
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    with open(os.path.join(ROOT, "manifests", "pipeline-server.yaml")) as f:
        dspa = yaml.safe_load(f)["metadata"]["name"]
    with open(os.path.join(ROOT, "manifests", "kustomization.yaml")) as f:
        project = yaml.safe_load(f)["namespace"]
    binding = objects[("RoleBinding", "yolo-kfp-pipeline-runner-training-edit")]
    runner = {"kind": "ServiceAccount", "name": f"pipeline-runner-{dspa}", "namespace": project}
    assert binding["subjects"] == [runner] and binding["metadata"]["namespace"] == project
    edit = cluster_role(release, binding["roleRef"]["name"])
    assert grants(edit["rules"], "trainer.kubeflow.org", "trainjobs", {"create", "get", "list", "watch", "delete"})
    reader = objects[("ClusterRole", "yolo-kfp-training-runtime-reader")]
    assert reader["rules"][0]["resourceNames"] == [training_jobs.RUNTIME]
    assert objects[("ClusterRoleBinding", "yolo-kfp-training-runtime-reader")]["subjects"] == [runner]


def test_the_pipeline_runner_may_run_pytorchjobs_but_no_trainjob():
    """The Data Science Pipelines operator's own Role: kubeflow.org/* (PyTorchJob) yes, trainer.kubeflow.org no."""
    with open(shared_schema(os.path.join("dspo-pipeline-runner", "role_pipeline-runner.yaml.tmpl"))) as f:
        text = "\n".join(line for line in f if "{{" not in line)  # the template's conditionals, dropped
    role = yaml.safe_load(text)
    assert grants(role["rules"], "kubeflow.org", "pytorchjobs", {"create", "get", "watch", "delete"})
    assert not grants(role["rules"], "trainer.kubeflow.org", "trainjobs", {"create"})


def cluster_role(release: str, name: str) -> dict:
    """A ClusterRole the release's Trainer ships (training-edit, training-view, training-admin)."""
    with open(shared_schema(os.path.join(release, "kubeflow-training-roles.yaml"))) as f:
        return {role["metadata"]["name"]: role for role in yaml.safe_load_all(f)}[name]


@pytest.mark.parametrize("target, engine", [("rhoai-2.16", "pytorchjob"), ("rhoai-2.25", "pytorchjob"),
                                            ("rhoai-3.0", "pytorchjob"), ("rhoai-3.1", "pytorchjob"),
                                            ("rhoai-3.2", "trainer"), ("rhoai-3.4", "trainer"),
                                            ("kfp-2.15", "pytorchjob")])
def test_each_server_target_gets_the_engine_its_cluster_has(target, engine):
    from yolo_kfp.model.job_launcher import ENGINES
    from yolo_kfp.pipeline.servers import server_target, training_engine

    assert training_engine(server_target(target)) == engine and engine in ENGINES
