"""The compile options: what the pods are (the ``/dev/shm`` size, the GPU count and the requests that scale with
it, where the train pod runs, pod labels, the download's and the search's parallelism, the images, the Secrets
the steps get) and the server the YAML is written for. None of them is a run parameter: whoever may start a run
chooses the data and the training, not the pods, nor whose Secrets they mount. Each is declared once, as a
``CompileOptions`` field (``option``): the CLI's flags and help, the table in docs/parameters.md and the checks
come from there, and the pipeline's description records their values.
"""

import json
import re
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from yolo_kfp.components import step_settings
from yolo_kfp.components.download import download, download_shard, merge_download, plan_download
from yolo_kfp.components.search import choose_trial, no_search
from yolo_kfp.components.step_settings import (
    DATA_IMAGE,
    REGISTRY,
    TAG,
    TRAIN_IMAGE,
    Resources,
    check_image_reference,
    check_registry,
    image_ref,
)
from yolo_kfp.components.train_on_nodes import train_on_nodes
from yolo_kfp.infra import pod_size
from yolo_kfp.infra.pod_size import GPUS_PER_NODE, TRAIN_POD_LIMITS, per_gpu_text, quantity, train_pod_range
from yolo_kfp.model.training_jobs import RUNTIME
from yolo_kfp.params.service_hosts import service_host_problems
from yolo_kfp.pipeline import servers
from yolo_kfp.release.modelcar import DEFAULT_BASE, base_problems

DATA_CONNECTION = "yolo-kfp-s3"  # the Secret manifests/ creates; OpenShift AI data connections have this shape
MLFLOW_CONNECTION = "yolo-kfp-mlflow"  # a Secret with MLflow's credentials, if its server wants any
REGISTRY_CONNECTION = "yolo-kfp-registry"  # a dockerconfigjson Secret: who pushes the model's image (publish_oci)
SHM_VOLUMES = ("emptydir", "ephemeral")
RESOURCE_FIELDS = ("cpu", "cpu_limit", "memory", "memory_limit")
TOLERATION_FIELDS = ("key", "operator", "value", "effect", "tolerationSeconds")
# The steps a server without fan-in (``servers.Features.fan_in``) does not run: it downloads in one task instead,
# and has no search.
FAN_IN_STEPS = tuple(c.component_spec.name for c in (plan_download, download_shard, merge_download, choose_trial,
                                                     no_search))
# A Kubernetes label value (the Kueue queue is one): at most 63 characters, alphanumeric at both ends.
LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?", flags=re.ASCII)
MAX_NODES = 64
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", flags=re.ASCII)  # a cluster-scoped object's name
# A Secret's name: a DNS subdomain (RFC 1123).
SECRET_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
                         flags=re.ASCII)


def option(default, help: str, **argparse_settings) -> Any:  # a dataclass field, typed as its value
    """A compile option, declared once: its default and description (the CLI's flag and help and the table of
    docs/parameters.md come from them), and how the CLI reads it where its type does not say."""
    kind = type(default)
    metadata = {"help": help, "kind": kind, **argparse_settings}
    if kind in (dict, list):
        return field(default_factory=lambda: kind(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def compile_options() -> list:
    """The compile options' fields, in their order: ``name``, ``metadata["help"]``, ``metadata["kind"]``."""
    return list(fields(CompileOptions))


def option_default(option_field):
    return option_field.default_factory() if option_field.default is MISSING else option_field.default


def compile_options_table() -> str:
    """The table of compile options in docs/parameters.md."""
    rows = ["| option | default | what it is |", "|---|---|---|"]
    for f in compile_options():
        description = f.metadata["help"].replace("|", "\\|")
        rows.append(f"| `--{f.name.replace('_', '-')}` | `{json.dumps(option_default(f))}` | {description} |")
    return "\n".join(rows) + "\n"


@dataclass(frozen=True)
class CompileOptions:
    """Pod settings KFP cannot take as runtime parameters, and the server the YAML is written for."""

    server: str = option(servers.DEFAULT, "the pipeline server the YAML is written for, kfp-X.Y (KFP backend) or "
                         f"rhoai-X.Y (OpenShift AI), from kfp-2.2 / rhoai-2.15 up, e.g. {', '.join(servers.TARGETS)}; "
                         "the compiled pipeline's description says what a target drops", metavar="TARGET")
    gpus: int = option(1, f"GPUs of the train pod, 1 to {GPUS_PER_NODE} (one node's); more than one trains with "
                          "Ultralytics' DDP (the batch split across them)")
    cpu_per_gpu: str = option("8", f"the train pod's CPU request and limit per GPU, {train_pod_range('cpu_per_gpu')}")
    memory_per_gpu: str = option("24Gi", "the train pod's memory request and limit per GPU, "
                                         f"{train_pod_range('memory_per_gpu')} (/dev/shm is added on top)")
    shm_size: str = option("8Gi", f"the train pod's memory-backed /dev/shm per GPU, {train_pod_range('shm_size')}, "
                                  "for DataLoader workers (a container's 64 MB crashes them)")
    shm_volume: str = option("", "emptydir: a Memory emptyDir (KFP backend 2.3+); ephemeral: a per-pod PVC, "
                                 "disk-backed, for older servers (default: emptydir where the server applies it)",
                             choices=SHM_VOLUMES)
    image_registry: str = option(REGISTRY, "registry (and namespace) of the data and train images, e.g. a mirror")
    image_tag: str = option(TAG, "tag of the data and train images")
    data_image: str = option("", "the data image in full, instead of --image-registry/--image-tag: "
                                 "registry/repository:tag or registry/repository@sha256:<digest>", metavar="REF")
    train_image: str = option("", "the train image in full, instead of --image-registry/--image-tag: "
                                  "registry/repository:tag or registry/repository@sha256:<digest>", metavar="REF")
    kueue_queue: str = option("", "Kueue LocalQueue the train pod waits in for its GPUs (label "
                                  "kueue.x-k8s.io/queue-name)")
    nodes: int = option(1, f"nodes the train step trains one model on, 1 to {MAX_NODES}: more than one runs the "
                           "cluster's own job across them (a TrainJob on OpenShift AI 3.2+, else a PyTorchJob), "
                           "each node sized and placed as the train pod, and the train step waits for it")
    training_runtime: str = option(RUNTIME, "the ClusterTrainingRuntime a TrainJob runs on (--nodes above 1, "
                                            "OpenShift AI 3.2+)", metavar="NAME")
    download_parallelism: int = option(3, "download shards fetched at once")
    search_parallelism: int = option(4, "trials of a search (run parameter search_space) trained at once, each "
                                        "in a GPU pod like the train step's")
    step_resources: dict = option({}, "CPU and memory of other steps than train, e.g. '{\"evaluate\": {\"memory\": "
                                      "\"16Gi\", \"cpu_limit\": \"8\"}}' (keys cpu, cpu_limit, memory, memory_limit)")
    gpu_node_selector: dict = option({}, "the train pod's node labels, e.g. '{\"nvidia.com/gpu.product\": "
                                         "\"NVIDIA-A100\"}'")
    gpu_tolerations: list = option([], "more tolerations of the train pod, in Kubernetes' form, beside the "
                                       "nvidia.com/gpu taint's")
    data_connection: str = option(DATA_CONNECTION, "the Secret (an OpenShift AI data connection) whose AWS_* keys "
                                                   "the S3 steps get", metavar="SECRET")
    # Servers older than KFP 2.15 require every Secret a pod names: there the MLflow credentials' Secret is
    # mounted only when named, and must then exist.
    mlflow_connection: str = option("", f"a Secret with MLFLOW_TRACKING_TOKEN (or _USERNAME and _PASSWORD) for the "
                                        f"run parameter mlflow_tracking_uri's server; default: {MLFLOW_CONNECTION}, "
                                        "mounted if it exists (KFP 2.15+; older servers: none unless named, and "
                                        "then it must exist)", metavar="SECRET")
    registry_secret: str = option("", f"a kubernetes.io/dockerconfigjson Secret with the credentials to push the "
                                      f"run parameter publish_oci's image; default: {REGISTRY_CONNECTION}, mounted "
                                      "if it exists (KFP 2.15+; older servers: none unless named, and then it must "
                                      "exist)", metavar="SECRET")
    modelcar_base: str = option(DEFAULT_BASE, "the image a published model's OCI image (publish_oci) is built on, "
                                              "by digest: it needs sh and sleep (KServe's ModelCar); mirror it for a "
                                              "disconnected cluster", metavar="REF")
    service_hosts: list = option([], "the hosts the run parameters mlflow_tracking_uri and model_registry_url may "
                                     "name, as they are sent MLflow's credentials and the pod's service-account "
                                     "token: plain http:// only to an in-cluster service (*.svc) named here; "
                                     "loopback always; e.g. '[\"mlflow.example.com\"]'")

    def __post_init__(self):
        target = self.target
        if self.shm_volume not in ("", *SHM_VOLUMES):
            raise ValueError(f"shm_volume must be one of {SHM_VOLUMES}, not {self.shm_volume!r}")
        if self.shm_volume == "emptydir" and not target.features.empty_dir:
            raise ValueError(f"{target.name} does not apply emptyDir mounts (KFP backend 2.3 does): use "
                             "--shm-volume ephemeral, or leave it out")
        for name in ("gpus", "download_parallelism", "search_parallelism"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be 1 or more, not {getattr(self, name)!r}")
        if self.gpus > GPUS_PER_NODE:
            raise ValueError(f"--gpus {self.gpus} is more than a node has (the largest have 8-16) and a pod runs on "
                             f"one node: use at most {GPUS_PER_NODE}")
        self._check_train_pod_size()
        if not LABEL_VALUE.fullmatch(self.kueue_queue):
            raise ValueError(f"--kueue-queue {self.kueue_queue!r} is not a Kubernetes label value: use at most 63 "
                             "letters, digits, '-', '_' or '.', with a letter or digit at both ends, e.g. gpu-team")
        self._check_pod_settings()
        self._check_nodes()
        self._check_images()
        for step in self.step_resources:
            self.resources(step)

    def _check_nodes(self) -> None:
        if not isinstance(self.nodes, int) or not 1 <= self.nodes <= MAX_NODES:
            raise ValueError(f"--nodes must be 1 to {MAX_NODES}, not {self.nodes!r}")
        if len(self.training_runtime) > 63 or not DNS_LABEL.fullmatch(self.training_runtime):
            raise ValueError(f"--training-runtime {self.training_runtime!r} is not a runtime's name (a-z, 0-9 and "
                             "'-', at most 63 characters), e.g. torch-distributed")

    @property
    def nodes_job(self) -> dict:
        """The nodes' pods of a training across nodes, as these options fix them (the train-on-nodes step's)."""
        return {"nodes": self.nodes, "engine": servers.training_engine(self.target), "runtime": self.training_runtime,
                "image": self.images[TRAIN_IMAGE], "shm_size": self.shm_limit,
                "requests": {"cpu": self.train_cpu, "memory": self.train_memory},
                "limits": {"cpu": self.train_cpu, "memory": self.train_memory},
                "node_selector": self.gpu_node_selector,
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                                *self.gpu_tolerations],
                "queue": self.kueue_queue, "data_connection": self.data_connection,
                "mlflow_connection": self.mlflow_secret}

    def _check_train_pod_size(self) -> None:
        for name, (floor, ceiling, why) in TRAIN_POD_LIMITS.items():
            option, text = f"--{name.replace('_', '-')}", getattr(self, name)
            try:
                value = quantity(str(text))
            except ValueError as error:
                raise ValueError(f"{option}: {error}") from None
            floor_text, ceiling_text = per_gpu_text(name, floor), per_gpu_text(name, ceiling)
            if value < floor:
                raise ValueError(f"{option} {text} is below {floor_text} per GPU ({why}): give at least {floor_text}")
            if value > ceiling:
                raise ValueError(f"{option} {text} is above {ceiling_text} per GPU, more than any node has (the "
                                 f"pod would never be scheduled): give at most {ceiling_text}")

    def _check_pod_settings(self) -> None:
        if not isinstance(self.gpu_node_selector, dict) or not all(
                isinstance(v, str) for v in self.gpu_node_selector.values()):
            raise ValueError(f"--gpu-node-selector must be a JSON object of label: value strings, "
                             f"not {self.gpu_node_selector!r}")
        for toleration in self.gpu_tolerations:
            if not isinstance(toleration, dict) or set(toleration) - set(TOLERATION_FIELDS):
                raise ValueError(f"each of --gpu-tolerations must be a Kubernetes toleration with fields among "
                                 f"{', '.join(TOLERATION_FIELDS)}, not {toleration!r}")
        for option, secret in (("--data-connection", self.data_connection),
                               ("--mlflow-connection", self.mlflow_connection),
                               ("--registry-secret", self.registry_secret)):
            if secret and not SECRET_NAME.fullmatch(secret):
                raise ValueError(f"{option} {secret!r} is not a Secret's name: use lowercase letters, digits, '-' "
                                 "and '.', at most 253, e.g. yolo-kfp-s3")
        problems = service_host_problems(self.service_hosts) + base_problems(self.modelcar_base)
        if problems:
            raise ValueError(problems[0])
        if not self.data_connection:
            raise ValueError(f"--data-connection is empty: name the data connection Secret (default "
                             f"{DATA_CONNECTION})")

    def _check_images(self) -> None:
        given = {option: reference for option, reference in (("--data-image", self.data_image),
                                                             ("--train-image", self.train_image)) if reference}
        if given and (self.image_registry != REGISTRY or self.image_tag != TAG):
            raise ValueError(f"{next(iter(given))} names an image in full, --image-registry and --image-tag move both: "
                             "give --data-image and --train-image, or the registry and tag, not both")
        for option, reference in given.items():
            check_image_reference(reference, option)
        if len(given) < 2:  # at least one image is moved by the registry and tag
            check_registry(self.image_registry, self.image_tag)

    @property
    def images(self) -> dict[str, str]:
        """The reference each of our images (as components declare it) is pulled by."""
        return {DATA_IMAGE: self.data_image or image_ref(DATA_IMAGE, self.image_registry, self.image_tag),
                TRAIN_IMAGE: self.train_image or image_ref(TRAIN_IMAGE, self.image_registry, self.image_tag)}

    @property
    def target(self) -> servers.ServerTarget:
        return servers.server_target(self.server)

    @property
    def shm_mount(self) -> str:
        return self.shm_volume or ("emptydir" if self.target.features.empty_dir else "ephemeral")

    @property
    def mlflow_secret(self) -> str:
        """The Secret the MLflow steps get, if any: named, or the default where a server mounts it optionally."""
        return self.mlflow_connection or (MLFLOW_CONNECTION if self.target.features.optional_secret else "")

    @property
    def registry_secret_name(self) -> str:
        """The registry credentials' Secret the publish step gets, if any, as ``mlflow_secret``."""
        return self.registry_secret or (REGISTRY_CONNECTION if self.target.features.optional_secret else "")

    @property
    def train_cpu(self) -> str:
        return pod_size.train_cpu(self.cpu_per_gpu, self.gpus)

    @property
    def shm_limit(self) -> str:
        return pod_size.shm_limit(self.shm_size, self.gpus)

    @property
    def train_memory(self) -> str:
        """The memory request and limit: a memory-backed /dev/shm counts against the pod's memory."""
        return pod_size.train_memory(self.memory_per_gpu, self.shm_size, self.gpus)

    def resources(self, step: str) -> Resources:
        """What a (non-GPU) step's pod requests and may use: its own declaration, with any override."""
        if step not in step_settings.SETTINGS or step_settings.SETTINGS[step].gpu:
            steps = sorted(name for name, settings in step_settings.SETTINGS.items() if not settings.gpu)
            raise ValueError(f"step_resources: {step!r} is not a step sized this way; the steps: {', '.join(steps)} "
                             "(the train pod: --cpu-per-gpu, --memory-per-gpu, --shm-size)")
        override = self.step_resources.get(step, {})
        if not isinstance(override, dict):
            raise ValueError(f"step_resources: {step} wants an object like {{\"memory\": \"8Gi\"}}, not {override!r}")
        unknown = set(override) - set(RESOURCE_FIELDS)
        if unknown:
            raise ValueError(f"step_resources: {step} has {sorted(unknown)[0]!r}; known: {', '.join(RESOURCE_FIELDS)}")
        declared = step_settings.SETTINGS[step].resources
        values = {name: str(override.get(name, getattr(declared, name))) for name in RESOURCE_FIELDS}
        if "memory" in override and "memory_limit" not in override:
            values["memory_limit"] = values["memory"]
        for kind in ("cpu", "memory"):
            try:
                request, limit = quantity(values[kind]), quantity(values[f"{kind}_limit"])
            except ValueError as error:
                raise ValueError(f"step_resources: {step}: {error}") from None
            if limit < request:
                raise ValueError(f"step_resources: {step}'s {kind}_limit {values[kind + '_limit']} is below its "
                                 f"{kind} request {values[kind]}")
        return Resources(**values)

    @property
    def sized_steps(self) -> list[str]:
        """The steps without a GPU that this target's pipeline runs, sized by their declarations and step_resources."""
        absent = FAN_IN_STEPS if not self.target.features.fan_in else (download.component_spec.name,)
        if self.nodes == 1:
            absent = (*absent, train_on_nodes.component_spec.name)
        return [step for step in sorted(step_settings.SETTINGS) if not step_settings.SETTINGS[step].gpu
                and step not in absent]

    def describe(self) -> str:
        sized = " ".join(f"{step}={r.cpu}/{r.cpu_limit}cpu,{r.memory}/{r.memory_limit}"
                         for step, r in ((s, self.resources(s)) for s in self.sized_steps))
        pod_settings = (f" data_connection={self.data_connection} mlflow_connection={self.mlflow_secret or '-'} "
                        f"registry_secret={self.registry_secret_name or '-'} modelcar_base={self.modelcar_base} "
                        f"gpu_node_selector={json.dumps(self.gpu_node_selector)} "
                        f"gpu_tolerations={json.dumps(self.gpu_tolerations)}"
                        + (f" service_hosts={','.join(self.service_hosts)}" if self.service_hosts else ""))
        fan_outs = (f"download_parallelism={self.download_parallelism} search_parallelism={self.search_parallelism} "
                    if self.target.features.fan_in else "")
        return (f"compile options: {self.target.describe()} gpus={self.gpus} cpu_per_gpu={self.cpu_per_gpu} "
                f"memory_per_gpu={self.memory_per_gpu} shm_size={self.shm_size} shm_volume={self.shm_mount} "
                f"kueue_queue={self.kueue_queue or '-'} {fan_outs}{self._describe_images()}{pod_settings} "
                f"resources (request/limit): {sized}"
                + (f" nodes={self.nodes} training_runtime={self.training_runtime}" if self.nodes > 1 else ""))

    def _describe_images(self) -> str:
        if self.data_image or self.train_image:
            return f"data_image={self.images[DATA_IMAGE]} train_image={self.images[TRAIN_IMAGE]}"
        return f"images={self.image_registry}/{{data,train}}:{self.image_tag}"


DEFAULT_OPTIONS = CompileOptions()  # frozen: one instance serves every call
