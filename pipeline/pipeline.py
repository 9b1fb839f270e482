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
from kfp.dsl import Artifact, Model

from components.convert import convert
from components.download import download
from components.evaluate import evaluate
from components.train import train

PIPELINE_NAME = "yolo-kfp"
GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class CompileOptions:
    """Pod settings KFP cannot take as runtime parameters."""

    shm_size: str = "8Gi"  # memory-backed /dev/shm for DataLoader workers (Docker's 64 MB default crashes them)

    def describe(self) -> str:
        return f"compile options: shm_size={self.shm_size}"


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
        base_model: str = "yolov5nu.pt",
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
    ) -> NamedTuple("Outputs", model=Model, metrics=Artifact):
        download_task = download(classes=classes, max_samples_per_class=max_samples_per_class, split=split,
                                 seed=seed)
        convert_task = convert(raw_dataset=download_task.outputs["raw_dataset"], classes=classes, seed=seed,
                               split_ratios=split_ratios, include_group_of=include_group_of)
        train_task = train(dataset=convert_task.outputs["dataset"], base_model=base_model, epochs=epochs,
                           batch=batch, imgsz=imgsz, freeze=freeze, workers=workers, cache=cache, patience=patience,
                           optimizer=optimizer, lr0=lr0, seed=seed, train_args=train_args)
        on_gpu_node(train_task, gpus, train_cpu, train_memory, options)
        evaluate_task = evaluate(dataset=convert_task.outputs["dataset"], model=train_task.outputs["model"],
                                 imgsz=imgsz, batch=batch)
        return NamedTuple("Outputs", model=Model, metrics=Artifact)(
            train_task.outputs["model"], evaluate_task.outputs["metrics_json"])

    return yolo_pipeline


def on_gpu_node(task, gpus, cpu, memory, options: CompileOptions) -> None:
    """GPU request, the GPU taint tolerated, CPU/memory requests and a memory-backed /dev/shm."""
    task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(gpus)
    task.set_cpu_request(cpu).set_memory_request(memory)
    kubernetes.add_toleration(task, key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")
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
