"""The cluster's own job for a training across nodes: a Kubeflow Trainer ``TrainJob`` or a Training Operator
``PyTorchJob``, built from one description of the nodes (``NodesJob``).

Every node runs the train image with ``torchrun`` in front of the node's command: both engines give torchrun
the world through its ``PET_*`` variables (nodes, processes per node, node rank, rendezvous address). Each
node gets its GPUs, a memory-backed ``/dev/shm`` (PyTorch's DataLoader workers outgrow the container's 64 MB),
the GPU node selector and tolerations, and the environment the launcher names (the data connection's
credentials among it, by reference to their Secret). Kueue admits the job, not its pods: the queue is a label
on the job. The job is owned by the train step's pod, so that deleting the run's pod deletes the job.

- **TrainJob** (``trainer.kubeflow.org/v1alpha1``, OpenShift AI 3.2 and later): on a named
  ``ClusterTrainingRuntime`` (``torch-distributed``); the node's container is the runtime's ``node``, changed
  through ``podTemplateOverrides`` (the field OpenShift AI's Trainer reads; upstream 2.2 renamed it).
- **PyTorchJob** (``kubeflow.org/v1``, OpenShift AI 2.16 to 3.1): a ``Master`` and ``N - 1`` ``Worker``
  replicas of one pod template, whose container the operator requires to be named ``pytorch``.
"""

import re
from dataclasses import dataclass, field

TRAINER_API, PYTORCHJOB_API = "trainer.kubeflow.org/v1alpha1", "kubeflow.org/v1"
RUNTIME = "torch-distributed"  # OpenShift AI's ClusterTrainingRuntime for PyTorch on GPUs
RUNTIME_CONTAINER, RUNTIME_JOB = "node", "node"  # the runtime's replicated job and container
PYTORCH_CONTAINER = "pytorch"  # the name the Training Operator requires
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
SHM_VOLUME = "dshm"
NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")  # an RFC 1035 label: what a TrainJob's name must be


@dataclass(frozen=True)
class NodesJob:
    """What every node of one training runs and gets."""

    name: str  # the job's: an RFC 1035 label of at most 63 characters
    namespace: str
    image: str
    command: list[str]  # after torchrun: the node's program and its arguments
    nodes: int
    gpus_per_node: int
    shm_size: str  # the memory-backed /dev/shm, a Kubernetes quantity
    requests: dict[str, str] = field(default_factory=dict)  # cpu and memory per node
    limits: dict[str, str] = field(default_factory=dict)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict] = field(default_factory=list)
    env: list[dict] = field(default_factory=list)  # Kubernetes EnvVars, valueFrom included
    queue: str = ""  # a Kueue LocalQueue, or none
    owner: dict | None = None  # the ownerReference to the train step's pod
    runtime: str = RUNTIME

    def problems(self) -> list[str]:
        """What keeps this job from being created, each in one line."""
        found = []
        if len(self.name) > 63 or not NAME.fullmatch(self.name):
            found.append(f"job name {self.name!r} is not a DNS label (a-z, 0-9 and '-', at most 63 characters)")
        if self.nodes < 2:
            found.append(f"nodes={self.nodes}: a job across nodes has at least 2 (one node trains in the step)")
        if self.gpus_per_node < 0:
            found.append(f"gpus per node {self.gpus_per_node} is negative")
        if not self.command:
            found.append("no command for the nodes")
        return found

    @property
    def processes_per_node(self) -> int:
        return max(self.gpus_per_node, 1)  # one process a GPU, one on a CPU node

    def torchrun(self) -> list[str]:
        """torchrun, the world from its PET_* variables, in front of the node's command."""
        return ["torchrun", "--no-python", *self.command]

    def resources(self) -> dict:
        gpus = {"nvidia.com/gpu": str(self.gpus_per_node)} if self.gpus_per_node else {}
        return {key: value for key, value in (("requests", {**self.requests, **gpus}),
                                              ("limits", {**self.limits, **gpus})) if value}

    def metadata(self) -> dict:
        metadata: dict = {"name": self.name, "namespace": self.namespace,
                          "labels": {"app.kubernetes.io/part-of": "yolo-kfp"}}
        if self.queue:
            metadata["labels"][QUEUE_LABEL] = self.queue
        if self.owner:
            metadata["ownerReferences"] = [self.owner]
        return metadata

    def shm(self) -> tuple[dict, dict]:
        """The /dev/shm volume and its mount."""
        return ({"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": self.shm_size}},
                {"name": SHM_VOLUME, "mountPath": "/dev/shm"})


def owner_reference(pod_name: str, pod_uid: str) -> dict:
    """The train step's pod as the job's owner: the job goes when the pod does (KFP deletes a run's pods)."""
    return {"apiVersion": "v1", "kind": "Pod", "name": pod_name, "uid": pod_uid, "blockOwnerDeletion": False,
            "controller": False}


def train_job(job: NodesJob) -> dict:
    """A Kubeflow Trainer TrainJob on ``job.runtime``."""
    volume, mount = job.shm()
    placement = {key: value for key, value in (("nodeSelector", job.node_selector),
                                               ("tolerations", job.tolerations)) if value}
    trainer = {"image": job.image, "command": job.torchrun(), "numNodes": job.nodes,
               "numProcPerNode": job.processes_per_node, "resourcesPerNode": job.resources()}
    if job.env:
        trainer["env"] = job.env
    return {"apiVersion": TRAINER_API, "kind": "TrainJob", "metadata": job.metadata(),
            "spec": {"runtimeRef": {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime",
                                    "name": job.runtime},
                     "trainer": trainer,
                     "podTemplateOverrides": [{
                         "targetJobs": [{"name": RUNTIME_JOB}],
                         "spec": {**placement, "volumes": [volume],
                                  "containers": [{"name": RUNTIME_CONTAINER, "volumeMounts": [mount]}]}}]}}


def pytorch_job(job: NodesJob) -> dict:
    """A Training Operator PyTorchJob: one Master and ``nodes - 1`` Workers of one pod template."""
    volume, mount = job.shm()
    container = {"name": PYTORCH_CONTAINER, "image": job.image, "command": job.torchrun(),
                 "resources": job.resources(), "volumeMounts": [mount], **({"env": job.env} if job.env else {})}
    pod = {"containers": [container], "volumes": [volume], "restartPolicy": "Never",
           **({"nodeSelector": job.node_selector} if job.node_selector else {}),
           **({"tolerations": job.tolerations} if job.tolerations else {})}
    template = {"metadata": {"labels": {"app.kubernetes.io/part-of": "yolo-kfp"}}, "spec": pod}
    replicas = {"Master": {"replicas": 1, "restartPolicy": "Never", "template": template},
                "Worker": {"replicas": job.nodes - 1, "restartPolicy": "Never", "template": template}}
    # a failed node fails the job at once: the step's retry resumes every node from the S3 checkpoint
    run_policy: dict = {"backoffLimit": 0, "cleanPodPolicy": "None"}
    return {"apiVersion": PYTORCHJOB_API, "kind": "PyTorchJob", "metadata": job.metadata(),
            "spec": {"nprocPerNode": str(job.processes_per_node), "runPolicy": run_policy,
                     "pytorchReplicaSpecs": replicas}}
