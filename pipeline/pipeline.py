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
from kfp.dsl import HTML, Artifact, Model, pipeline_context
from kubernetes.utils.quantity import parse_quantity

from components.convert import convert
from components.core.gate import PROMOTE
from components.core.storage import ENV_KEYS
from components.download import download_shard, merge_download, plan_download
from components.evaluate import evaluate
from components.export import export
from components.gate import gate
from components.images import REGISTRY, SETTINGS, TAG, image_ref
from components.preflight import preflight
from components.publish import publish
from components.train import train

PIPELINE_NAME = "yolo-kfp"
GPU_RESOURCE = "nvidia.com/gpu"
SHM_VOLUMES = ("emptydir", "ephemeral")
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
        """Open Images subset -> YOLO labels -> YOLOv5 transfer learning -> test-split metrics -> published model.

        Args:
            classes: [data] Open Images display names to detect; YOLO class ids follow this order.
            max_samples_per_class: [data] Images drawn from Open Images for each class.
            download_shard_size: [data] Images per download shard: a larger selection is fetched by several pods.
            split: [data] The Open Images split to draw from: train, validation or test.
            seed: [data] Seed of the image draw, the train/val/test split and training.
            split_ratios: [data] Shares of the images for train, val and test, e.g. [0.75, 0.125, 0.125].
            include_group_of: [data] Keep Open Images' group-of boxes (one box around several objects).
            allow_missing_classes: [data] Train even when a class ends up without any box (else the run fails).
            base_model: [training] Checkpoint to fine-tune: Ultralytics name (yolov5nu.pt), path or s3://bucket/key.
            base_model_sha256: [training] Expected SHA-256 of an s3:// base_model; empty: not checked.
            epochs: [training] Epochs to train.
            batch: [training] Images per batch over all GPUs; -1 fits it to the GPU's memory (AutoBatch).
            imgsz: [training] Training and evaluation image size in pixels, a multiple of 32.
            freeze: [training] Layers kept frozen from the first one; 10 is the YOLOv5 backbone.
            workers: [training] DataLoader workers per GPU at most; fewer when the pod's CPUs or /dev/shm are few.
            cache: [training] Cache decoded images: empty (no), ram or disk.
            patience: [training] Epochs without improvement before training stops early.
            optimizer: [training] Ultralytics optimizer: auto, SGD, AdamW, Adam, ...
            lr0: [training] Initial learning rate (optimizer=auto chooses its own).
            train_args: [training] Any other Ultralytics training argument, as JSON, e.g. {"cos_lr": true}.
            gpu_node_selector: [GPU] Node labels the train pod must land on, e.g. {"nvidia.com/gpu.product": "X"}.
            gpu_tolerations: [GPU] More tolerations for the train pod, in Kubernetes' form, beside nvidia.com/gpu.
            data_connection: [S3] The Secret (OpenShift AI data connection) whose AWS_* keys the S3 steps get.
            publish_to: [publishing] s3://bucket/prefix to publish a promoted model to; empty: publish nothing.
            extra_data: [data] s3://bucket/prefix of your own labelled images (YOLO or Open Images layout).
            open_images_cache: [data] s3://bucket/prefix keeping Open Images' metadata CSVs between runs.
            min_map50: [gate] A model below this test-split mAP50 is not published.
            max_map50_drop: [gate] How far below the published model's mAP50 a new one may fall.
        """
        run = locals()
        checks = preflight(**{name: run[name] for name in preflight.component_spec.inputs})
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
        evaluate_task = evaluate(dataset=convert_task.outputs["dataset"], model=train_task.outputs["model"],
                                 imgsz=imgsz, batch=batch)
        export_task = export(model=train_task.outputs["model"], dataset=convert_task.outputs["dataset"], imgsz=imgsz)
        with dsl.If(publish_to != "", name="publish-requested"):
            gate_task = gate(metrics_json=evaluate_task.outputs["metrics_json"],
                             dataset=convert_task.outputs["dataset"], publish_to=publish_to, min_map50=min_map50,
                             max_map50_drop=max_map50_drop, imgsz=imgsz, batch=batch)
            with dsl.If(gate_task.outputs["Output"] == PROMOTE, name="promoted"):
                publish(model=train_task.outputs["model"], onnx_model=export_task.outputs["onnx_model"],
                        metrics_json=evaluate_task.outputs["metrics_json"],
                        dataset_stats=convert_task.outputs["dataset_stats"], publish_to=publish_to,
                        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        apply_step_settings(options, data_connection, gpu_node_selector, gpu_tolerations)
        return Outputs(
            train_task.outputs["model"], evaluate_task.outputs["metrics_json"], evaluate_task.outputs["report"],
            export_task.outputs["onnx_model"])

    return yolo_pipeline


def apply_step_settings(options: CompileOptions, data_connection, gpu_node_selector, gpu_tolerations) -> None:
    """Every task of the pipeline being defined gets what its component declares (``components.images``)."""
    for task in pipeline_context.Pipeline.get_default_pipeline().tasks.values():
        settings = SETTINGS[task.component_spec.name]
        task.container_spec.image = image_ref(settings.image, options.image_registry, options.image_tag)
        kubernetes.set_timeout(task, settings.timeout_hours * 3600)
        if settings.retries:
            task.set_retry(num_retries=settings.retries, backoff_duration=f"{settings.retry_backoff_seconds}s",
                           backoff_factor=2, backoff_max_duration="1h")
        if settings.data_connection:
            with_data_connection(task, data_connection)
        if settings.gpu:
            on_gpu_node(task, gpu_node_selector, gpu_tolerations, options)
        if not settings.cache:
            task.set_caching_options(False)


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
