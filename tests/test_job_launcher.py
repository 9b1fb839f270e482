"""The train step as a launcher, against a Kubernetes API stand-in held to the engines' CRDs
(tests/kubernetes_standin.py): the job it creates, a watch that drops, a job that fails, a step that is
stopped, and a service account without the RBAC."""

import functools
import os
import signal

import pytest
import yaml
from conftest import shared_schema
from kubernetes_standin import KubernetesStandIn
from test_training_jobs import nodes_job

from yolo_kfp.model.job_launcher import JobFailed, run_job

TRAINJOB = ("trainer-rhoai-3.4", "trainer.kubeflow.org_trainjobs.yaml")
PYTORCHJOB = ("training-operator-rhoai-2.25", "kubeflow.org_pytorchjobs.yaml")
RUNNING = {"conditions": [{"type": "Created", "status": "True", "reason": "Created", "message": "",
                           "lastTransitionTime": "2026-12-07T10:00:00Z"}]}


@functools.cache
def crd(release: str, name: str) -> dict:
    with open(shared_schema(os.path.join(release, name))) as f:
        return yaml.safe_load(f)


def ended(kind: str, message: str = "") -> dict:
    return {"conditions": [{"type": kind, "status": "True", "reason": kind, "message": message,
                            "lastTransitionTime": "2026-12-07T10:05:00Z"}]}


def failed_pod(name: str, labels: dict, code: int, reason: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "yolo-project", "labels": labels},
            "status": {"phase": "Failed", "containerStatuses": [{
                "name": "node", "ready": False, "restartCount": 0, "image": "i", "imageID": "", "started": False,
                "state": {"terminated": {"exitCode": code, "reason": reason}}}]}}


@pytest.mark.parametrize("engine, definition, finished", [("trainer", TRAINJOB, "Complete"),
                                                          ("pytorchjob", PYTORCHJOB, "Succeeded")])
def test_the_job_is_created_as_the_crd_wants_and_its_end_ends_the_wait(engine, definition, finished):
    with KubernetesStandIn(crd(*definition), [RUNNING, ended(finished)]) as api:
        final = run_job(nodes_job(), engine, api.api_client())
    assert api.refused == [] and len(api.created) == 1 and api.deleted == []
    assert final["status"]["conditions"][0]["type"] == finished
    created = api.created[0]
    assert created["metadata"]["ownerReferences"][0]["kind"] == "Pod"
    assert created["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-gpus"


def test_a_watch_that_drops_is_resumed_where_it_stopped():
    with KubernetesStandIn(crd(*TRAINJOB), [RUNNING, RUNNING, ended("Complete")], drop_first_watch=True) as api:
        final = run_job(nodes_job(), "trainer", api.api_client(), retry_seconds=0.1)
    assert final["status"]["conditions"][0]["type"] == "Complete"
    assert len(api.watches) >= 2 and int(api.watches[1]) >= int(api.watches[0]), api.watches


def test_a_failed_job_fails_the_step_in_one_line_naming_its_failed_node():
    pod = failed_pod("yolo-kfp-train-3f9c2a-node-0-1-x7k2p", {"jobset.sigs.k8s.io/jobset-name": "yolo-kfp-train-3f9c2a",
                                                                "batch.kubernetes.io/job-completion-index": "1"},
                     137, "OOMKilled")
    script = [RUNNING, ended("Failed", "jobset failed: node-0 failed")]
    with KubernetesStandIn(crd(*TRAINJOB), script, pods=[pod]) as api, pytest.raises(JobFailed) as failure:
        run_job(nodes_job(), "trainer", api.api_client())
    line = str(failure.value)
    assert "\n" not in line and line.startswith("trainjobs yolo-kfp-train-3f9c2a failed; node 1 (pod "
                                                "yolo-kfp-train-3f9c2a-node-0-1-x7k2p) failed first: exit code 137 "
                                                "(OOMKilled): jobset failed: node-0 failed")
    assert api.deleted == [], "a failed job stays for its logs; its owner reference removes it with the pod"


def test_a_stopped_step_deletes_its_job():
    def stop(*_):
        raise KeyboardInterrupt  # what KFP's stop becomes in the step: its pod is sent SIGTERM

    previous = signal.signal(signal.SIGALRM, stop)
    try:
        with KubernetesStandIn(crd(*TRAINJOB), [RUNNING]) as api, pytest.raises(KeyboardInterrupt):
            signal.setitimer(signal.ITIMER_REAL, 1.0)
            run_job(nodes_job(), "trainer", api.api_client())
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert api.deleted == ["yolo-kfp-train-3f9c2a"]


def test_without_the_rolebinding_the_step_says_which_is_missing():
    with KubernetesStandIn(crd(*TRAINJOB), [], forbid=True) as api, pytest.raises(JobFailed) as failure:
        run_job(nodes_job(), "trainer", api.api_client())
    assert str(failure.value) == (
        "the pipeline's service account may not create trainjobs.trainer.kubeflow.org in yolo-project: it needs a "
        "RoleBinding of the ClusterRole training-edit to the pipeline's service account (oc apply -k "
        "manifests/train-across-nodes/)")
    assert api.created == []


def test_the_standin_holds_the_job_to_the_crd():
    """The stand-in is strict: a field the CRD does not declare is refused as the API server's pruning would
    lose it, and the step says so."""
    misspelled = [{"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "connection", "kee": "x"}}}]
    with KubernetesStandIn(crd(*TRAINJOB), [ended("Complete")]) as api, pytest.raises(JobFailed) as failure:
        run_job(nodes_job(env=misspelled), "trainer", api.api_client())
    assert str(failure.value).startswith("trainjobs.trainer.kubeflow.org in yolo-project refused the job "
                                         "yolo-kfp-train-3f9c2a: 422 ")
    assert api.refused == ["spec.trainer.env.0.valueFrom.secretKeyRef: 'key' is a required property",
                           "spec.trainer.env[0].valueFrom.secretKeyRef.kee: not declared by the CRD"]


def test_rank_0s_epochs_are_shown_in_the_steps_log(caplog):
    """The first node's pod's log, followed, in the step's log: each line as a progress bar left it, without
    the terminal's escapes."""
    labels = {"jobset.sigs.k8s.io/jobset-name": "yolo-kfp-train-3f9c2a",
              "batch.kubernetes.io/job-completion-index": "0"}
    first = {**failed_pod("yolo-kfp-train-3f9c2a-node-0-0-a1b2c", labels, 0, ""), "status": {"phase": "Running"}}
    text = "Starting training for 2 epochs...\n  1/2  box 1.2\r\x1b[K  1/2  box 1.1  100%\n  2/2  box 0.9\n"
    script = [RUNNING, RUNNING, ended("Complete")]
    with caplog.at_level("INFO", logger="yolo_kfp.model.job_launcher"), \
            KubernetesStandIn(crd(*TRAINJOB), script, pods=[first], log_text=text) as api:
        run_job(nodes_job(), "trainer", api.api_client(), retry_seconds=0.1)
    shown = [r.getMessage() for r in caplog.records if r.getMessage().startswith("node 0 | ")]
    assert shown == ["node 0 | Starting training for 2 epochs...", "node 0 |   1/2  box 1.1  100%",
                     "node 0 |   2/2  box 0.9"]
    assert api.logs_read == [("yolo-kfp-train-3f9c2a-node-0-0-a1b2c", "node", "True")]
