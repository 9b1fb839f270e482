"""The pipeline: download -> convert -> train (GPU node) -> evaluate.

The signature of the pipeline function is the one source of truth for parameters and their defaults:
the compiled YAML's form in the Data Science Pipelines UI, ``yolo-kfp run-local --param`` and the
notebook all read it. Settings Kubernetes needs before a run starts (the ``/dev/shm`` size) are compile
options instead, recorded in the pipeline's description.
"""

import inspect
from dataclasses import dataclass
from typing import NamedTuple

from kfp import compiler, dsl, kubernetes
from kfp.dsl import HTML, Artifact, Model

from components.convert import convert
from components.download import download
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
TIMEOUT_HOURS = {"preflight": 1, "download": 12, "convert": 4, "train": 72, "evaluate": 4, "export": 2, "gate": 4,
                 "publish": 2}
DATA_CONNECTION = "yolo-kfp-s3"  # the Secret manifests/ creates; OpenShift AI data connections have this shape


@dataclass(frozen=True)
class CompileOptions:
    """Pod settings KFP cannot take as runtime parameters."""

    shm_size: str = "8Gi"  # memory-backed /dev/shm for DataLoader workers (Docker's 64 MB default crashes them)
    # "emptydir": a Memory emptyDir (KFP backend 2.3+). "ephemeral": a generic ephemeral volume (a PVC
    # made per pod, disk-backed) for older servers that reject or ignore emptyDir mounts.
    shm_volume: str = "emptydir"
    image_registry: str = REGISTRY  # where the data and train images are pulled from
    image_tag: str = TAG

    def __post_init__(self):
        if self.shm_volume not in SHM_VOLUMES:
            raise ValueError(f"shm_volume must be one of {SHM_VOLUMES}, not {self.shm_volume!r}")

    def describe(self) -> str:
        return (f"compile options: shm_size={self.shm_size} shm_volume={self.shm_volume} "
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
        gpus: int = 1,
        train_cpu: str = "8",
        train_memory: str = "24Gi",
        data_connection: str = DATA_CONNECTION,
        publish_to: str = "",
        extra_data: str = "",
        open_images_cache: str = "",
        min_map50: float = 0.25,
        max_map50_drop: float = 0.01,
    ) -> Outputs:
        checks = preflight(publish_to=publish_to, base_model=base_model, extra_data=extra_data,
                           open_images_cache=open_images_cache, classes=classes,
                           max_samples_per_class=max_samples_per_class, split=split, split_ratios=split_ratios,
                           epochs=epochs, batch=batch, imgsz=imgsz, freeze=freeze, cache=cache, min_map50=min_map50,
                           max_map50_drop=max_map50_drop, base_model_sha256=base_model_sha256)
        checks.set_caching_options(False)  # access can change between runs: always check again
        download_task = download(classes=classes, max_samples_per_class=max_samples_per_class, split=split,
                                 seed=seed, open_images_cache=open_images_cache).after(checks)
        convert_task = convert(raw_dataset=download_task.outputs["raw_dataset"], classes=classes, seed=seed,
                               split_ratios=split_ratios, include_group_of=include_group_of, extra_data=extra_data,
                               extra_data_fingerprint=checks.output, allow_missing_classes=allow_missing_classes)
        train_task = train(dataset=convert_task.outputs["dataset"], base_model=base_model,
                           base_model_sha256=base_model_sha256, epochs=epochs, batch=batch, imgsz=imgsz,
                           freeze=freeze, workers=workers, cache=cache, patience=patience, optimizer=optimizer,
                           lr0=lr0, seed=seed, train_args=train_args, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        on_gpu_node(train_task, gpus, train_cpu, train_memory, options)
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
        for task in (checks, download_task, convert_task, train_task, gate_task, publish_task):
            with_data_connection(task, data_connection)
        for task in (checks, download_task, convert_task, train_task, evaluate_task, export_task, gate_task,
                     publish_task):
            task.container_spec.image = image_ref(task.container_spec.image, options.image_registry,
                                                  options.image_tag)
            kubernetes.set_timeout(task, TIMEOUT_HOURS[task.name] * 3600)
        # Transient faults (a dropped connection, a preempted GPU node): try again, later each time.
        # train resumes from its last epoch checkpoint.
        download_task.set_retry(num_retries=3, backoff_duration="60s", backoff_factor=2, backoff_max_duration="1h")
        train_task.set_retry(num_retries=3, backoff_duration="120s", backoff_factor=2, backoff_max_duration="1h")
        return Outputs(
            train_task.outputs["model"], evaluate_task.outputs["metrics_json"], evaluate_task.outputs["report"],
            export_task.outputs["onnx_model"])

    return yolo_pipeline


def with_data_connection(task, secret_name) -> None:
    """The data connection's keys as environment variables; a run without S3 needs no such Secret."""
    kubernetes.use_secret_as_env(task, secret_name=secret_name, secret_key_to_env={k: k for k in ENV_KEYS},
                                 optional=True)


def on_gpu_node(task, gpus, cpu, memory, options: CompileOptions) -> None:
    """GPU request, the GPU taint tolerated, CPU/memory requests and a memory-backed /dev/shm."""
    task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(gpus)
    task.set_cpu_request(cpu).set_memory_request(memory)
    kubernetes.add_toleration(task, key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")
    if options.shm_volume == "ephemeral":
        kubernetes.add_ephemeral_volume(task, volume_name="dshm", mount_path="/dev/shm",
                                        access_modes=["ReadWriteOnce"], size=options.shm_size)
    else:
        kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory",
                                   size_limit=options.shm_size)


yolo_pipeline = make_pipeline()


def parameter_defaults() -> dict:
    """The pipeline's parameters and their defaults, read from its signature."""
    signature = inspect.signature(yolo_pipeline.pipeline_func)
    return {name: p.default for name, p in signature.parameters.items()}


def compile_pipeline(output: str, options: CompileOptions = CompileOptions()) -> str:
    compiler.Compiler().compile(make_pipeline(options), package_path=output)
    return output
