"""The pipeline: download (sharded) -> convert -> [search: trials on GPU nodes] -> train (GPU node) -> evaluate.

The pipeline function's signature and its ``Args:`` are made from the parameter table
(``yolo_kfp/params/run_parameters.py``), which the compiled YAML's form in the Data Science Pipelines UI,
``yolo-kfp run-local --param`` and the notebook all follow. Settings KFP cannot take as run parameters (the
``/dev/shm`` size, the GPU count and the requests that scale with it, pod labels, the download's
parallelism) are compile options instead, declared once as ``CompileOptions`` fields and recorded in the
pipeline's description.
"""

import inspect
import json
import re
from dataclasses import MISSING, dataclass, field, fields
from typing import NamedTuple

from google.protobuf import json_format
from kfp import dsl, kubernetes
from kfp.compiler import pipeline_spec_builder
from kfp.dsl import HTML, Artifact, Model, pipeline_context
from kfp.pipeline_spec import pipeline_spec_pb2
from kubernetes.utils.quantity import parse_quantity

from yolo_kfp.components.convert import convert
from yolo_kfp.components.download import download, download_shard, merge_download, plan_download
from yolo_kfp.components.evaluate import evaluate
from yolo_kfp.components.export import export
from yolo_kfp.components.gate import gate
from yolo_kfp.components.preflight import preflight
from yolo_kfp.components.publish import publish
from yolo_kfp.components.search import choose_trial, no_search
from yolo_kfp.components.step_settings import (
    DATA_IMAGE,
    REGISTRY,
    SETTINGS,
    TAG,
    TRAIN_IMAGE,
    Resources,
    check_image_reference,
    check_registry,
    image_ref,
)
from yolo_kfp.components.track import track
from yolo_kfp.components.train import train
from yolo_kfp.components.train_trial import train_trial
from yolo_kfp.infra.storage import ENV_KEYS
from yolo_kfp.model.tracking import CREDENTIAL_KEYS
from yolo_kfp.params import run_parameters
from yolo_kfp.params.run_parameters import DATA_CONNECTION
from yolo_kfp.params.search_space import SEARCH_REFUSAL_ENV
from yolo_kfp.pipeline import servers
from yolo_kfp.release.gate import PROMOTE

PIPELINE_NAME = "yolo-kfp"
GPU_RESOURCE = "nvidia.com/gpu"
SHM_VOLUMES = ("emptydir", "ephemeral")
PIPELINE_DOC = ("Open Images subset -> YOLO labels -> YOLOv5 transfer learning -> test-split metrics -> published "
                "model.")
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
RESOURCE_FIELDS = ("cpu", "cpu_limit", "memory", "memory_limit")
TOLERATION_FIELDS = ("key", "operator", "value", "effect", "tolerationSeconds")
TOLERATION_ARGUMENTS = {"tolerationSeconds": "toleration_seconds"}  # kfp.kubernetes.add_toleration's name
BINARY_UNITS = {"Ti": 2 ** 40, "Gi": 2 ** 30, "Mi": 2 ** 20, "Ki": 2 ** 10}
GPUS_PER_NODE = 16  # the largest GPU nodes have 8-16; a pod runs on one node
# The train pod's size per GPU, by option: floor, ceiling, and why the floor. Below it the step cannot do its
# work; above the ceiling no node could hold the pod, which would wait Pending forever.
TRAIN_POD_LIMITS = {
    # yolo_kfp.infra.resources keeps one core per GPU for the training loop before any DataLoader worker;
    # the largest GPU nodes have 24-48 cores per GPU.
    "cpu_per_gpu": (1, 128, "one core per GPU runs the training loop"),
    # Importing PyTorch and Ultralytics and building YOLOv5n takes 0.7 GiB resident on CPU (measured), CUDA's
    # libraries about as much again; the largest nodes have 2 TiB for 8 GPUs.
    "memory_per_gpu": (2 * 2 ** 30, 2 ** 40, "PyTorch with CUDA and Ultralytics take about 1.5 GiB before the "
                                             "first batch"),
    # Docker's default /dev/shm, which this volume replaces: less gains nothing and leaves NCCL (which keeps
    # its DDP buffers there) short. It counts against the pod's memory: the same ceiling.
    "shm_size": (64 * 2 ** 20, 2 ** 40, "64Mi is Docker's default /dev/shm, which this volume replaces"),
}
# The steps a server without fan-in (``servers.Features.fan_in``) does not run: it downloads in one task instead,
# and has no search.
FAN_IN_STEPS = tuple(c.component_spec.name for c in (plan_download, download_shard, merge_download, choose_trial,
                                                     no_search))
# A Kubernetes label value (the Kueue queue is one): at most 63 characters, alphanumeric at both ends.
LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?", flags=re.ASCII)


def quantity(text: str) -> float:
    """A Kubernetes quantity ("8", "500m", "24Gi") as a number, by the Kubernetes client's own parser."""
    try:
        return float(parse_quantity(text))
    except ValueError:
        raise ValueError(f"{text!r} is not a Kubernetes quantity like 8, 500m or 24Gi") from None


def memory_quantity(size: float) -> str:
    """Bytes in the largest binary unit that divides them."""
    for suffix, unit in BINARY_UNITS.items():
        if size % unit == 0:
            return f"{int(size // unit)}{suffix}"
    return str(int(size))


def train_pod_range(name: str) -> str:
    """``TRAIN_POD_LIMITS[name]`` in words, as the option is written."""
    floor, ceiling, _ = TRAIN_POD_LIMITS[name]
    shown = (lambda size: f"{size:g}") if name == "cpu_per_gpu" else memory_quantity
    return f"{shown(floor)} to {shown(ceiling)}"


def option(default, help: str, **argparse_settings):
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
                         "docs/cluster.md says what each one drops", metavar="TARGET")
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
    download_parallelism: int = option(3, "download shards fetched at once")
    search_parallelism: int = option(4, "trials of a search (run parameter search_space) trained at once, each "
                                        "in a GPU pod like the train step's")
    step_resources: dict = option({}, "CPU and memory of other steps than train, e.g. '{\"evaluate\": {\"memory\": "
                                      "\"16Gi\", \"cpu_limit\": \"8\"}}' (keys cpu, cpu_limit, memory, memory_limit)")
    # Servers older than KFP 2.5 cannot take these from a run: they are fixed when compiling for one.
    data_connection: str = option(DATA_CONNECTION, "for servers older than KFP 2.5 only (elsewhere a run "
                                                   "parameter): the data connection Secret")
    gpu_node_selector: dict = option({}, "for servers older than KFP 2.5 only (elsewhere a run parameter): the train "
                                         "pod's node labels")
    gpu_tolerations: list = option([], "for servers older than KFP 2.5 only (elsewhere a run parameter): more train "
                                       "pod tolerations")
    # Servers older than KFP 2.15 require every Secret a pod names: the MLflow credentials' Secret is named
    # only when compiling for one, and must then exist.
    mlflow_connection: str = option("", "for servers older than KFP 2.15 only (elsewhere the run parameter "
                                        "mlflow_connection, optional): a Secret with MLflow's credentials, which "
                                        "must then exist", metavar="SECRET")

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
        self._check_pod_settings(target)
        self._check_images()
        if self.mlflow_connection and target.features.optional_secret:
            raise ValueError(f"--mlflow-connection is for servers that require every Secret (older than KFP 2.15); "
                             f"{target.name} can do without it: set the run parameter mlflow_connection")
        for step in self.step_resources:
            self.resources(step)

    def _check_train_pod_size(self) -> None:
        for name, (floor, ceiling, why) in TRAIN_POD_LIMITS.items():
            option, text = f"--{name.replace('_', '-')}", getattr(self, name)
            try:
                value = quantity(str(text))
            except ValueError as error:
                raise ValueError(f"{option}: {error}") from None
            shown = (lambda size: f"{size:g}") if name == "cpu_per_gpu" else memory_quantity  # as train_pod_range
            if value < floor:
                raise ValueError(f"{option} {text} is below {shown(floor)} per GPU ({why}): give at least "
                                 f"{shown(floor)}")
            if value > ceiling:
                raise ValueError(f"{option} {text} is above {shown(ceiling)} per GPU, more than any node has (the "
                                 f"pod would never be scheduled): give at most {shown(ceiling)}")

    def _check_pod_settings(self, target: servers.ServerTarget) -> None:
        given = [name for name, value in (("data_connection", self.data_connection != DATA_CONNECTION),
                                          ("gpu_node_selector", self.gpu_node_selector),
                                          ("gpu_tolerations", self.gpu_tolerations)) if value]
        if target.features.run_pod_settings:
            if given:
                raise ValueError(f"--{given[0].replace('_', '-')} is for servers that cannot take it from a run "
                                 f"(older than KFP 2.5); {target.name} can: set the run parameter {given[0]}")
            return
        if not isinstance(self.gpu_node_selector, dict) or not all(
                isinstance(v, str) for v in self.gpu_node_selector.values()):
            raise ValueError(f"gpu_node_selector must be a JSON object of label: value strings, "
                             f"not {self.gpu_node_selector!r}")
        for toleration in self.gpu_tolerations:
            if not isinstance(toleration, dict) or set(toleration) - set(TOLERATION_FIELDS):
                raise ValueError(f"each of gpu_tolerations must be a Kubernetes toleration with fields among "
                                 f"{', '.join(TOLERATION_FIELDS)}, not {toleration!r}")

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
    def train_cpu(self) -> str:
        return f"{round(quantity(self.cpu_per_gpu) * self.gpus, 3):g}"

    @property
    def shm_limit(self) -> str:
        return memory_quantity(quantity(self.shm_size) * self.gpus)

    @property
    def train_memory(self) -> str:
        """The memory request and limit: a memory-backed /dev/shm counts against the pod's memory."""
        return memory_quantity((quantity(self.memory_per_gpu) + quantity(self.shm_size)) * self.gpus)

    def resources(self, step: str) -> Resources:
        """What a (non-GPU) step's pod requests and may use: its own declaration, with any override."""
        if step not in SETTINGS or SETTINGS[step].gpu:
            steps = sorted(name for name, settings in SETTINGS.items() if not settings.gpu)
            raise ValueError(f"step_resources: {step!r} is not a step sized this way; the steps: {', '.join(steps)} "
                             "(the train pod: --cpu-per-gpu, --memory-per-gpu, --shm-size)")
        override = self.step_resources.get(step, {})
        if not isinstance(override, dict):
            raise ValueError(f"step_resources: {step} wants an object like {{\"memory\": \"8Gi\"}}, not {override!r}")
        unknown = set(override) - set(RESOURCE_FIELDS)
        if unknown:
            raise ValueError(f"step_resources: {step} has {sorted(unknown)[0]!r}; known: {', '.join(RESOURCE_FIELDS)}")
        declared = SETTINGS[step].resources
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
        return [step for step in sorted(SETTINGS) if not SETTINGS[step].gpu and step not in absent]

    def describe(self) -> str:
        sized = " ".join(f"{step}={r.cpu}/{r.cpu_limit}cpu,{r.memory}/{r.memory_limit}"
                         for step, r in ((s, self.resources(s)) for s in self.sized_steps))
        pod_settings = "" if self.target.features.run_pod_settings else (
            f" data_connection={self.data_connection} gpu_node_selector={json.dumps(self.gpu_node_selector)} "
            f"gpu_tolerations={json.dumps(self.gpu_tolerations)}")
        fan_outs = (f"download_parallelism={self.download_parallelism} search_parallelism={self.search_parallelism} "
                    if self.target.features.fan_in else "")
        return (f"compile options: {self.target.describe()} gpus={self.gpus} cpu_per_gpu={self.cpu_per_gpu} "
                f"memory_per_gpu={self.memory_per_gpu} shm_size={self.shm_size} shm_volume={self.shm_mount} "
                f"kueue_queue={self.kueue_queue or '-'} {fan_outs}{self._describe_images()}{pod_settings} "
                f"resources (request/limit): {sized}")

    def _describe_images(self) -> str:
        if self.data_image or self.train_image:
            return f"data_image={self.images[DATA_IMAGE]} train_image={self.images[TRAIN_IMAGE]}"
        return f"images={self.image_registry}/{{data,train}}:{self.image_tag}"


# What a run hands back (run-local gathers these into its output dir).
Outputs = NamedTuple("Outputs", model=Model, metrics=Artifact, report=HTML, onnx_model=Model)


def make_pipeline(options: CompileOptions = CompileOptions()):
    """Builds the pipeline function for ``options``."""

    def define(p: dict) -> Outputs:
        """The tasks of a run with the parameters ``p`` (pipeline channels, by name)."""
        checks = preflight(**{name: p[name] for name in preflight.component_spec.inputs})
        if not options.target.features.fan_in:  # a search_space is refused before any work
            checks.set_env_variable(SEARCH_REFUSAL_ENV, servers.search_refusal(options.target))
        raw_dataset = downloaded(options, checks, p)
        convert_task = convert(raw_dataset=raw_dataset, classes=p["classes"], seed=p["seed"],
                               split_ratios=p["split_ratios"], include_group_of=p["include_group_of"],
                               extra_data=p["extra_data"], extra_data_fingerprint=checks.outputs["fingerprint"],
                               allow_missing_classes=p["allow_missing_classes"])
        training = {name: p[name] for name in ("base_model", "base_model_sha256", "epochs", "batch", "imgsz", "freeze",
                                                "workers", "cache", "patience", "optimizer", "lr0", "seed",
                                                "train_args", "mlflow_tracking_uri", "mlflow_experiment")}
        search = search_trials(options, checks, convert_task.outputs["dataset"], training, p) if (
            options.target.features.fan_in) else ""
        train_task = train(dataset=convert_task.outputs["dataset"], gpus=options.gpus, search=search, **training)
        evaluate_task = evaluate(dataset=convert_task.outputs["dataset"], model=train_task.outputs["model"],
                                 imgsz=p["imgsz"], batch=p["batch"])
        export_task = export(model=train_task.outputs["model"], dataset=convert_task.outputs["dataset"],
                             imgsz=p["imgsz"])
        with dsl.If(p["mlflow_tracking_uri"] != "", name="tracking-requested"):
            track(model=train_task.outputs["model"], metrics_json=evaluate_task.outputs["metrics_json"],
                  mlflow_tracking_uri=p["mlflow_tracking_uri"], run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        with dsl.If(p["publish_to"] != "", name="publish-requested"):
            gate_task = gate(metrics_json=evaluate_task.outputs["metrics_json"],
                             dataset=convert_task.outputs["dataset"], publish_to=p["publish_to"],
                             min_map50=p["min_map50"], max_map50_drop=p["max_map50_drop"], imgsz=p["imgsz"],
                             batch=p["batch"],
                             run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
            with dsl.If(gate_task.outputs["Output"] == PROMOTE, name="promoted"):
                publish(model=train_task.outputs["model"], onnx_model=export_task.outputs["onnx_model"],
                        metrics_json=evaluate_task.outputs["metrics_json"],
                        dataset_stats=convert_task.outputs["dataset_stats"], publish_to=p["publish_to"],
                        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, mlflow_tracking_uri=p["mlflow_tracking_uri"],
                        registered_model_name=p["registered_model_name"],
                        model_registry_url=p["model_registry_url"])
        apply_step_settings(options, p["data_connection"], p["gpu_node_selector"], p["gpu_tolerations"],
                            p["mlflow_connection"])
        return Outputs(
            train_task.outputs["model"], evaluate_task.outputs["metrics_json"], evaluate_task.outputs["report"],
            export_task.outputs["onnx_model"])

    return dsl.pipeline(name=PIPELINE_NAME, description=(
        "Open Images subset (FiftyOne) -> YOLO labels -> YOLOv5 transfer learning (Ultralytics) -> test-split "
        f"metrics. {options.describe()}"))(pipeline_function(define))


def downloaded(options: CompileOptions, checks, p: dict):
    """The raw dataset: ``plan-download``, a ``ParallelFor`` of ``download-shard`` tasks (at most
    ``download_parallelism`` at once) and ``merge-download`` collecting them; on a server without fan-in, the one
    ``download`` task that does the same in turn."""
    selection = {"classes": p["classes"], "max_samples_per_class": p["max_samples_per_class"], "split": p["split"],
                 "seed": p["seed"], "shard_size": p["download_shard_size"],
                 "open_images_cache": p["open_images_cache"]}
    if not options.target.features.fan_in:
        return download(**selection).after(checks).outputs["raw_dataset"]
    plan_task = plan_download(**selection).after(checks)
    with dsl.ParallelFor(plan_task.outputs["Output"], parallelism=options.download_parallelism,
                         name="download-shards") as shard:
        shard_task = download_shard(plan=plan_task.outputs["plan"], shard=shard)
    return merge_download(plan=plan_task.outputs["plan"],
                          shards=dsl.Collected(shard_task.outputs["raw_shard"])).outputs["raw_dataset"]


def search_trials(options: CompileOptions, checks, dataset, training: dict, p: dict):
    """The search, where preflight planned trials: one ``train-trial`` GPU task per trial (at most
    ``search_parallelism`` at once), their records gathered by ``choose-trial``. Returns the search's
    ``search.json`` text, or "" from a run without a search (``no-search``, cached: no trial, no GPU).

    ``dsl.If`` and ``dsl.OneOf`` rather than collecting straight into the train step: a collecting
    consumer of an empty ``ParallelFor`` fails in kfp.local and on the KFP backend
    (``yolo_kfp.components.search``)."""
    with dsl.If(checks.outputs["trial_count"] > 0, name="search-requested"):
        with dsl.ParallelFor(checks.outputs["trials"], parallelism=options.search_parallelism,
                             name="search-trials") as trial:
            trial_task = train_trial(dataset=dataset, trial=trial, search_epochs=p["search_epochs"],
                                     gpus=options.gpus, **training)
        chosen = choose_trial(records=dsl.Collected(trial_task.outputs["record"]), search_space=p["search_space"])
    with dsl.Else(name="no-search"):
        nothing = no_search()
    return dsl.OneOf(chosen.output, nothing.output)


def pipeline_function(define):
    """``yolo_pipeline``: the function KFP reads a pipeline from, its signature and its ``Args:`` (the run form)
    made from the parameter table; KFP calls it with one pipeline channel per parameter, in order."""
    def yolo_pipeline(*channels) -> Outputs:
        return define(dict(zip(run_parameters.BY_NAME, channels)))

    yolo_pipeline.__signature__ = inspect.Signature(
        [inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=p.default, annotation=p.kind)
         for p in run_parameters.PARAMETERS], return_annotation=Outputs)
    yolo_pipeline.__doc__ = PIPELINE_DOC + "\n\nArgs:\n" + "".join(
        f"    {p.name}: {p.doc}\n" for p in run_parameters.PARAMETERS)
    return yolo_pipeline


def apply_step_settings(options: CompileOptions, data_connection, gpu_node_selector, gpu_tolerations,
                        mlflow_connection) -> None:
    """Every task of the pipeline being defined gets what its component declares
    (``yolo_kfp.components.step_settings``).

    On a server that cannot take pod settings from a run (``servers``), the compile options give them."""
    if not options.target.features.run_pod_settings:
        data_connection = options.data_connection
        gpu_node_selector, gpu_tolerations = options.gpu_node_selector, options.gpu_tolerations
    with_mlflow_connection = options.target.features.optional_secret or bool(options.mlflow_connection)
    if not options.target.features.optional_secret:
        mlflow_connection = options.mlflow_connection
    for task in pipeline_context.Pipeline.get_default_pipeline().tasks.values():
        settings = SETTINGS[task.component_spec.name]
        task.container_spec.image = options.images[settings.image]
        kubernetes.set_timeout(task, settings.timeout_hours * 3600)
        if options.target.features.security_context:  # the images run as UID 1001 (images/*.Containerfile)
            kubernetes.set_security_context(task, run_as_non_root=True)
        if settings.retries:
            task.set_retry(num_retries=settings.retries, backoff_duration=f"{settings.retry_backoff_seconds}s",
                           backoff_factor=2, backoff_max_duration="1h")
        if settings.data_connection:
            with_data_connection(task, data_connection)
        if settings.mlflow_connection and with_mlflow_connection:
            kubernetes.use_secret_as_env(task, secret_name=mlflow_connection,
                                         secret_key_to_env={k: k for k in CREDENTIAL_KEYS}, optional=True)
        if settings.gpu:
            on_gpu_node(task, gpu_node_selector, gpu_tolerations, options)
        else:
            sized(task, options.resources(task.component_spec.name))
        if not settings.cache:
            task.set_caching_options(False)


def sized(task, resources: Resources) -> None:
    task.set_cpu_request(resources.cpu).set_cpu_limit(resources.cpu_limit)
    task.set_memory_request(resources.memory).set_memory_limit(resources.memory_limit)


def with_data_connection(task, secret_name) -> None:
    """The data connection's keys as environment variables; a run without S3 needs no such Secret (on
    servers that apply ``optional``, ``servers``)."""
    kubernetes.use_secret_as_env(task, secret_name=secret_name, secret_key_to_env={k: k for k in ENV_KEYS},
                                 optional=True)


def on_gpu_node(task, node_selector, tolerations, options: CompileOptions) -> None:
    """GPUs, CPU and memory scaled by the GPU count (limits equal to requests: the pod holds the node's GPUs
    anyway), a /dev/shm the memory limit covers, the GPU taint and the extra tolerations tolerated, the
    node selector, and the Kueue queue if any. The selector and tolerations are run parameters (channels)
    where the server takes them from a run, else fixed values."""
    task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(options.gpus)
    sized(task, Resources(cpu=options.train_cpu, cpu_limit=options.train_cpu, memory=options.train_memory))
    kubernetes.add_toleration(task, key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")
    if options.target.features.run_pod_settings:
        kubernetes.add_toleration_json(task, tolerations)
        kubernetes.add_node_selector_json(task, node_selector)
    else:
        for toleration in tolerations:
            kubernetes.add_toleration(task, **{TOLERATION_ARGUMENTS.get(k, k): v for k, v in toleration.items()})
        for label, value in node_selector.items():
            kubernetes.add_node_selector(task, label, value)
    if options.kueue_queue:
        kubernetes.add_pod_label(task, KUEUE_QUEUE_LABEL, options.kueue_queue)
    if options.shm_mount == "ephemeral":
        kubernetes.add_ephemeral_volume(task, volume_name="dshm", mount_path="/dev/shm",
                                        access_modes=["ReadWriteOnce"], size=options.shm_limit)
    else:
        kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory",
                                   size_limit=options.shm_limit)


yolo_pipeline = make_pipeline()


def parameter_defaults() -> dict:
    """The pipeline's parameters and their defaults (the parameter table's)."""
    return run_parameters.defaults()


def parameter_types() -> dict[str, type]:
    """The type KFP declares for each parameter (int, float, bool, str, list, dict)."""
    return run_parameters.types()


def compile_pipeline(output: str, options: CompileOptions = CompileOptions()) -> str:
    """Writes the pipeline YAML for ``options.server``: kfp compiles it, ``servers.adapt`` rewrites it to what
    that server parses and applies, and kfp's own writer writes it."""
    func = make_pipeline(options)
    spec, platform = (json_format.MessageToDict(m) for m in (func.pipeline_spec, func.platform_spec))
    servers.adapt(spec, platform, options.target)
    pipeline_spec_builder.write_pipeline_spec_to_file(
        pipeline_spec=json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec()),
        pipeline_description=func.description,
        platform_spec=json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec()), package_path=output)
    return output
