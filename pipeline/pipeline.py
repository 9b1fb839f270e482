"""The pipeline: download (sharded) -> convert -> train (GPU node) -> evaluate.

The signature of the pipeline function is the one source of truth for parameters and their defaults:
the compiled YAML's form in the Data Science Pipelines UI, ``yolo-kfp run-local --param`` and the
notebook all read it. Settings KFP cannot take as run parameters (the ``/dev/shm`` size, the GPU count
and the requests that scale with it, pod labels, the download's parallelism) are compile options
instead, recorded in the pipeline's description.
"""

import inspect
from dataclasses import dataclass
from typing import NamedTuple

from kfp import compiler, dsl, kubernetes
from kfp.dsl import HTML, Artifact, Model
from kubernetes.utils.quantity import parse_quantity

from components.convert import convert
from components.download import download_shard, merge_download, plan_download
from components.evaluate import evaluate
from components.export import export
from components.gate import PROMOTE, gate
from components.images import REGISTRY, TAG, image_ref
from components.preflight import preflight
from components.publish import publish
from components.storage import ENV_KEYS
from components.train import train

PIPELINE_NAME = "yolo-kfp"
GPU_RESOURCE = "nvidia.com/gpu"
SHM_VOLUMES = ("emptydir", "ephemeral")
# A step past its limit is stopped (the pod's activeDeadlineSeconds): nothing hangs a GPU forever.
TIMEOUT_HOURS = {"preflight": 1, "plan-download": 6, "download-shard": 12, "merge-download": 4, "convert": 4,
                 "train": 72, "evaluate": 4, "export": 2, "gate": 4, "publish": 2}
DATA_CONNECTION = "yolo-kfp-s3"  # the Secret manifests/ creates; OpenShift AI data connections have this shape
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
BINARY_UNITS = {"Ti": 2 ** 40, "Gi": 2 ** 30, "Mi": 2 ** 20, "Ki": 2 ** 10}


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


@dataclass(frozen=True)
class CompileOptions:
    """Pod settings KFP cannot take as runtime parameters."""

    gpus: int = 1  # GPUs of the train pod; more than one trains with Ultralytics' DDP, the batch split across them
    cpu_per_gpu: str = "8"  # the train pod's CPU request per GPU
    memory_per_gpu: str = "24Gi"  # its memory request per GPU, /dev/shm added on top
    shm_size: str = "8Gi"  # memory-backed /dev/shm per GPU for DataLoader workers (Docker's 64 MB crashes them)
    # "emptydir": a Memory emptyDir (KFP backend 2.3+). "ephemeral": a generic ephemeral volume (a PVC
    # made per pod, disk-backed) for older servers that reject or ignore emptyDir mounts.
    shm_volume: str = "emptydir"
    image_registry: str = REGISTRY  # where the data and train images are pulled from
    image_tag: str = TAG
    kueue_queue: str = ""  # a Kueue LocalQueue: the train pod waits in it for its GPUs
    download_parallelism: int = 3  # download shards fetched at once

    def __post_init__(self):
        if self.shm_volume not in SHM_VOLUMES:
            raise ValueError(f"shm_volume must be one of {SHM_VOLUMES}, not {self.shm_volume!r}")
        for name in ("gpus", "download_parallelism"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be 1 or more, not {getattr(self, name)!r}")
        for text in (self.cpu_per_gpu, self.memory_per_gpu, self.shm_size):
            quantity(text)

    @property
    def train_cpu(self) -> str:
        return f"{round(quantity(self.cpu_per_gpu) * self.gpus, 3):g}"

    @property
    def shm_limit(self) -> str:
        return memory_quantity(quantity(self.shm_size) * self.gpus)

    @property
    def train_memory(self) -> str:
        """The memory request: a memory-backed /dev/shm counts against the pod's memory."""
        return memory_quantity((quantity(self.memory_per_gpu) + quantity(self.shm_size)) * self.gpus)

    def describe(self) -> str:
        return (f"compile options: gpus={self.gpus} cpu_per_gpu={self.cpu_per_gpu} "
                f"memory_per_gpu={self.memory_per_gpu} shm_size={self.shm_size} shm_volume={self.shm_volume} "
                f"kueue_queue={self.kueue_queue or '-'} download_parallelism={self.download_parallelism} "
                f"images={self.image_registry}/{{data,train}}:{self.image_tag}")


# What a run hands back (run-local gathers these into its output dir).
Outputs = NamedTuple("Outputs", model=Model, metrics=Artifact, report=HTML, onnx_model=Model)


def make_pipeline(options: CompileOptions = CompileOptions()):
    """Builds the pipeline function for ``options``."""

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Open Images subset (FiftyOne) -> YOLO labels -> YOLOv5 transfer learning (Ultralytics) -> "
                    f"test-split metrics. {options.describe()}",
    )
    def yolo_pipeline(
        classes: list = ["Bicycle", "Car", "Traffic sign"],
        max_samples_per_class: int = 300,
        download_shard_size: int = 1000,
        split: str = "train",
        seed: int = 42,
        split_ratios: list = [0.75, 0.125, 0.125],
        include_group_of: bool = True,
        allow_missing_classes: bool = False,
        base_model: str = "yolov5nu.pt",
        base_model_sha256: str = "",
        epochs: int = 50,
        batch: int = 256,
        imgsz: int = 640,
        freeze: int = 10,
        workers: int = 8,
        cache: str = "",
        patience: int = 100,
        optimizer: str = "auto",
        lr0: float = 0.01,
        train_args: dict = {},
        gpu_node_selector: dict = {},
        gpu_tolerations: list = [],
        data_connection: str = DATA_CONNECTION,
        publish_to: str = "",
        extra_data: str = "",
        open_images_cache: str = "",
        min_map50: float = 0.25,
        max_map50_drop: float = 0.01,
    ) -> Outputs:
        checks = preflight(publish_to=publish_to, base_model=base_model, extra_data=extra_data,
                           open_images_cache=open_images_cache, classes=classes,
                           max_samples_per_class=max_samples_per_class, download_shard_size=download_shard_size,
                           split=split, split_ratios=split_ratios, epochs=epochs, batch=batch, imgsz=imgsz,
                           freeze=freeze, cache=cache, optimizer=optimizer, train_args=train_args,
                           min_map50=min_map50, max_map50_drop=max_map50_drop, base_model_sha256=base_model_sha256)
        checks.set_caching_options(False)  # access can change between runs: always check again
        plan_task = plan_download(classes=classes, max_samples_per_class=max_samples_per_class, split=split, seed=seed,
                                  shard_size=download_shard_size, open_images_cache=open_images_cache).after(checks)
        with dsl.ParallelFor(plan_task.outputs["Output"], parallelism=options.download_parallelism,
                             name="download-shards") as shard:
            shard_task = download_shard(plan=plan_task.outputs["plan"], shard=shard)
        merge_task = merge_download(plan=plan_task.outputs["plan"],
                                    shards=dsl.Collected(shard_task.outputs["raw_shard"]))
        convert_task = convert(raw_dataset=merge_task.outputs["raw_dataset"], classes=classes, seed=seed,
                               split_ratios=split_ratios, include_group_of=include_group_of, extra_data=extra_data,
                               extra_data_fingerprint=checks.output, allow_missing_classes=allow_missing_classes)
        train_task = train(dataset=convert_task.outputs["dataset"], base_model=base_model,
                           base_model_sha256=base_model_sha256, epochs=epochs, batch=batch, imgsz=imgsz,
                           freeze=freeze, workers=workers, cache=cache, patience=patience, optimizer=optimizer,
                           lr0=lr0, seed=seed, train_args=train_args, gpus=options.gpus)
        on_gpu_node(train_task, gpu_node_selector, gpu_tolerations, options)
        evaluate_task = evaluate(dataset=convert_task.outputs["dataset"], model=train_task.outputs["model"],
                                 imgsz=imgsz, batch=batch)
        export_task = export(model=train_task.outputs["model"], dataset=convert_task.outputs["dataset"], imgsz=imgsz)
        with dsl.If(publish_to != "", name="publish-requested"):
            gate_task = gate(metrics_json=evaluate_task.outputs["metrics_json"],
                             dataset=convert_task.outputs["dataset"], publish_to=publish_to, min_map50=min_map50,
                             max_map50_drop=max_map50_drop, imgsz=imgsz, batch=batch)
            with dsl.If(gate_task.outputs["Output"] == PROMOTE, name="promoted"):
                publish_task = publish(model=train_task.outputs["model"], onnx_model=export_task.outputs["onnx_model"],
                                       metrics_json=evaluate_task.outputs["metrics_json"],
                                       dataset_stats=convert_task.outputs["dataset_stats"], publish_to=publish_to,
                                       run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        for task in (checks, plan_task, convert_task, train_task, gate_task, publish_task):
            with_data_connection(task, data_connection)
        for task in (checks, plan_task, shard_task, merge_task, convert_task, train_task, evaluate_task, export_task,
                     gate_task, publish_task):
            task.container_spec.image = image_ref(task.container_spec.image, options.image_registry,
                                                  options.image_tag)
            kubernetes.set_timeout(task, TIMEOUT_HOURS[task.name] * 3600)
        # Transient faults (a dropped connection, a preempted GPU node): try again, later each time.
        # A shard fetches only the images it lacks; train resumes from its last epoch checkpoint.
        for task in (plan_task, shard_task):
            task.set_retry(num_retries=3, backoff_duration="60s", backoff_factor=2, backoff_max_duration="1h")
        train_task.set_retry(num_retries=3, backoff_duration="120s", backoff_factor=2, backoff_max_duration="1h")
        return Outputs(
            train_task.outputs["model"], evaluate_task.outputs["metrics_json"], evaluate_task.outputs["report"],
            export_task.outputs["onnx_model"])

    return yolo_pipeline


def with_data_connection(task, secret_name) -> None:
    """The data connection's keys as environment variables; a run without S3 needs no such Secret."""
    kubernetes.use_secret_as_env(task, secret_name=secret_name, secret_key_to_env={k: k for k in ENV_KEYS},
                                 optional=True)


def on_gpu_node(task, node_selector, tolerations, options: CompileOptions) -> None:
    """GPUs, CPU and memory requests scaled by the GPU count, a memory-backed /dev/shm, the GPU taint and
    the run's extra tolerations tolerated, the run's node selector, and the Kueue queue if any."""
    task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(options.gpus)
    task.set_cpu_request(options.train_cpu).set_memory_request(options.train_memory)
    kubernetes.add_toleration(task, key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")
    kubernetes.add_toleration_json(task, tolerations)
    kubernetes.add_node_selector_json(task, node_selector)
    if options.kueue_queue:
        kubernetes.add_pod_label(task, KUEUE_QUEUE_LABEL, options.kueue_queue)
    if options.shm_volume == "ephemeral":
        kubernetes.add_ephemeral_volume(task, volume_name="dshm", mount_path="/dev/shm",
                                        access_modes=["ReadWriteOnce"], size=options.shm_limit)
    else:
        kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory",
                                   size_limit=options.shm_limit)


yolo_pipeline = make_pipeline()


def parameter_defaults() -> dict:
    """The pipeline's parameters and their defaults, read from its signature."""
    signature = inspect.signature(yolo_pipeline.pipeline_func)
    return {name: p.default for name, p in signature.parameters.items()}


def parameter_types() -> dict[str, type]:
    """The type KFP declares for each parameter (int, float, bool, str, list, dict), read from its signature."""
    signature = inspect.signature(yolo_pipeline.pipeline_func)
    return {name: p.annotation for name, p in signature.parameters.items()}


def compile_pipeline(output: str, options: CompileOptions = CompileOptions()) -> str:
    compiler.Compiler().compile(make_pipeline(options), package_path=output)
    return output
