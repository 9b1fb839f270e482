"""The train step as a launcher: it creates the training's job across nodes with the Kubernetes API, from inside
its pod, and waits for it.

The wait is a watch of the one job that survives a dropped connection (it goes on from the last version it saw,
or from the job as it is now when that version has expired). The job ends the step: finished, the step goes
on; failed, the step fails in one line that names the job and the node that failed. A step that is stopped
deletes its job (its nodes go with it; the job's owner reference to the step's pod does the same when the
pod is deleted). A 403 says which RoleBinding is missing (manifests/train-across-nodes/).
"""

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from yolo_kfp.model.training_jobs import PYTORCH_CONTAINER, RUNTIME_CONTAINER, NodesJob, pytorch_job, train_job

log = logging.getLogger(__name__)
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # a terminal's control sequences (colours, line erasing)


@dataclass(frozen=True)
class Engine:
    """One engine's job: where the API keeps it, how it is built, what its conditions say, how its pods are found."""

    group: str
    version: str
    plural: str
    build: Callable[[NodesJob], dict]
    finished: str  # the condition type of a job that succeeded
    pod_label: str  # the label its pods carry with the job's name
    node_labels: tuple[str, ...]  # the labels that say which node a pod is
    first_node: str  # the label selector of the pod of rank 0 (node 0)
    container: str  # the training container's name in the nodes' pods
    rbac: str  # what grants the pipeline's service account these jobs


ENGINES = {
    "trainer": Engine("trainer.kubeflow.org", "v1alpha1", "trainjobs", train_job, "Complete",
                      "jobset.sigs.k8s.io/jobset-name", ("batch.kubernetes.io/job-completion-index",),
                      "batch.kubernetes.io/job-completion-index=0", RUNTIME_CONTAINER,
                      "a RoleBinding of the ClusterRole training-edit to the pipeline's service account "
                      "(oc apply -k manifests/train-across-nodes/)"),
    "pytorchjob": Engine("kubeflow.org", "v1", "pytorchjobs", pytorch_job, "Succeeded",
                         "training.kubeflow.org/job-name",
                         ("training.kubeflow.org/replica-type", "training.kubeflow.org/replica-index"),
                         "training.kubeflow.org/replica-type=master", PYTORCH_CONTAINER,
                         "the pipeline server's pipeline-runner Role (kubeflow.org/*), as the Data Science "
                         "Pipelines operator makes it"),
}


class JobFailed(RuntimeError):
    """The job across nodes failed, or could not be made: one line, with what to do."""


def run_job(job: NodesJob, engine_name: str, api_client, retry_seconds: float = 2.0) -> dict:
    """Creates ``job`` for the engine, waits for it to end and returns its last state; deletes it if the wait
    is interrupted (the step stopped)."""
    from kubernetes import client

    engine = ENGINES[engine_name]
    problems = job.problems()
    if problems:
        raise ValueError(problems[0])
    api, core = client.CustomObjectsApi(api_client), client.CoreV1Api(api_client)
    created = _create(api, engine, job)
    stop = threading.Event()
    following = threading.Thread(target=_follow_first_node, args=(core, engine, job, stop, retry_seconds),
                                 name="first-node-log", daemon=True)
    following.start()
    try:
        final = _wait(api, engine, job, created, retry_seconds)
    except BaseException:
        _delete(api, engine, job)
        raise
    finally:
        stop.set()
    if _condition(final, "Failed"):
        raise JobFailed(_failure_line(core, engine, job, final))
    following.join(timeout=retry_seconds * 5)  # the log's last lines (the last epoch, the summary)
    return final


def _create(api, engine: Engine, job: NodesJob) -> dict:
    from kubernetes.client.exceptions import ApiException

    where = f"{engine.plural}.{engine.group} in {job.namespace}"
    try:
        return api.create_namespaced_custom_object(engine.group, engine.version, job.namespace, engine.plural,
                                                   engine.build(job))
    except ApiException as error:
        if error.status == 403:
            raise JobFailed(f"the pipeline's service account may not create {where}: it needs {engine.rbac}") from None
        if error.status == 404:
            raise JobFailed(f"the cluster serves no {where}: is the engine installed? (docs/scale.md)") from None
        if error.status == 409:  # a retried step: the job it made before goes on
            log.info("%s %s exists already: waiting for it", engine.plural, job.name)
            return api.get_namespaced_custom_object(engine.group, engine.version, job.namespace, engine.plural,
                                                    job.name)
        raise JobFailed(f"{where} refused the job {job.name}: {error.status} {error.reason}: "
                        f"{str(error.body)[:300]}") from None


def _wait(api, engine: Engine, job: NodesJob, current: dict, retry_seconds: float) -> dict:
    """The job once it has finished or failed; a watch that drops is resumed."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    while not _ended(engine, current):
        try:
            for event in _events(api, engine, job, current["metadata"]["resourceVersion"]):
                if event["type"] == "DELETED":
                    raise JobFailed(f"{engine.plural} {job.name} was deleted while it ran")
                current = event["object"]
                if _ended(engine, current):
                    break
        except ApiException as error:
            if error.status != 410:  # 410: the version seen last has expired; the job as it is now goes on
                raise
            current = _get(api, engine, job)
        except (OSError, HTTPError) as error:  # the connection dropped: go on where it stopped
            log.info("the watch of %s %s dropped (%s): resuming", engine.plural, job.name, type(error).__name__)
            time.sleep(retry_seconds)
            current = _get(api, engine, job)
    return current


def _events(api, engine: Engine, job: NodesJob, version: str) -> Iterator[dict]:
    from kubernetes import watch

    events = watch.Watch().stream(api.list_namespaced_custom_object, engine.group, engine.version, job.namespace,
                                  engine.plural, field_selector=f"metadata.name={job.name}", resource_version=version,
                                  timeout_seconds=300)
    return (event for event in events if isinstance(event, dict))  # custom objects come as dicts


def _follow_first_node(core, engine: Engine, job: NodesJob, stop: threading.Event, poll_seconds: float) -> None:
    """Rank 0's log (its epochs, as a step's own log shows them) in this step's log, once its pod has started;
    the log's end, or the job's, ends it. A log that cannot be read is left: the job's end still ends the step."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    selector = f"{engine.pod_label}={job.name},{engine.first_node}"
    try:
        pod = None
        while pod is None and not stop.is_set():
            started = [p for p in core.list_namespaced_pod(job.namespace, label_selector=selector).items
                       if p.status and p.status.phase in ("Running", "Succeeded", "Failed")]
            pod = started[0].metadata.name if started else None
            if pod is None:
                stop.wait(poll_seconds)
        if pod is None:
            return
        response = core.read_namespaced_pod_log(pod, job.namespace, container=engine.container, follow=True,
                                                _preload_content=False)
        pending = b""
        for chunk in response.stream():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                log.info("node 0 | %s", shown_line(line))
    except (ApiException, OSError, HTTPError) as error:
        log.warning("rank 0's log is not shown here (%s): read it with oc logs", type(error).__name__)


def shown_line(raw: bytes) -> str:
    """A line of a pod's log as this step's log may show it: what a progress bar left last (after its last
    carriage return), without terminal escapes or other unprintable characters."""
    text = ESCAPES.sub("", raw.decode(errors="replace")).rstrip("\r").rsplit("\r", 1)[-1]
    return "".join(c if c.isprintable() else "?" for c in text)


def _get(api, engine: Engine, job: NodesJob) -> dict:
    return api.get_namespaced_custom_object(engine.group, engine.version, job.namespace, engine.plural, job.name)


def _delete(api, engine: Engine, job: NodesJob) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        api.delete_namespaced_custom_object(engine.group, engine.version, job.namespace, engine.plural, job.name,
                                            propagation_policy="Foreground")
        log.info("%s %s deleted: the step was stopped", engine.plural, job.name)
    except ApiException as error:
        log.warning("%s %s not deleted (%s): its owner reference to this pod removes it", engine.plural, job.name,
                    error.status)


def _condition(obj: dict, kind: str) -> dict | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == kind and c.get("status") == "True"), None)


def _ended(engine: Engine, obj: dict) -> bool:
    return bool(_condition(obj, engine.finished) or _condition(obj, "Failed"))


def _failure_line(core, engine: Engine, job: NodesJob, obj: dict) -> str:
    """The job, its failed node (the first failed pod: which node, why) and the job's own reason."""
    reason = (_condition(obj, "Failed") or {}).get("message", "")
    pods = core.list_namespaced_pod(job.namespace, label_selector=f"{engine.pod_label}={job.name}").items
    failed = [pod for pod in pods if pod.status and pod.status.phase == "Failed"]
    node = ""
    if failed:
        pod = failed[0]
        labels = pod.metadata.labels or {}
        which = " ".join(labels.get(label, "?") for label in engine.node_labels)
        exits = [s.state.terminated for s in (pod.status.container_statuses or []) if s.state and s.state.terminated]
        why = f"exit code {exits[0].exit_code} ({exits[0].reason})" if exits else "no exit code"
        node = f"; node {which} (pod {pod.metadata.name}) failed first: {why}"
    return (f"{engine.plural} {job.name} failed{node}{': ' + reason[:300] if reason else ''} -- read that pod's log "
            f"(oc logs {failed[0].metadata.name if failed else '<pod>'}); a retry resumes from the last epoch's "
            "checkpoint")
