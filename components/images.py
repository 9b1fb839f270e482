"""The container images the components run in, and the decorator that defines a component with its task
settings: its image, its timeout, its retries, whether it needs the data connection or a GPU node.

Each component states these once, where it is defined; the pipeline applies them to every task alike
(``pipeline.pipeline.apply_step_settings``), so a new step is wired without lists to keep in sync.
The images carry this project's code, kfp and every dependency, so nothing is pip-installed when a step
starts. ``images/`` builds them; ``yolo-kfp compile --image-registry R --image-tag T`` points a compiled
pipeline at another registry or tag (a mirror on a disconnected cluster).
"""

import os
from dataclasses import dataclass

REGISTRY = "quay.io/yolo-kfp"
TAG = "0.1.0"
DATA_IMAGE = f"{REGISTRY}/data:{TAG}"  # preflight, download, convert, publish: FiftyOne, pandas, pyarrow, boto3
TRAIN_IMAGE = f"{REGISTRY}/train:{TAG}"  # train, evaluate, export, gate: CUDA PyTorch, Ultralytics, ONNX


@dataclass(frozen=True)
class StepSettings:
    """How a component's tasks run on the cluster."""

    image: str
    timeout_hours: int  # the pod's activeDeadlineSeconds: nothing holds a node (or a GPU) forever
    retries: int = 0  # for transient faults (a dropped connection, a preempted node), with backoff
    retry_backoff_seconds: int = 60  # doubled at each retry, at most an hour
    data_connection: bool = False  # gets the data connection's AWS_* variables
    gpu: bool = False  # runs on a GPU node (the compile options size it)
    cache: bool = True  # False: run every time (what it checks can change between runs)


# Every component's settings, by component name (as KFP names its tasks).
SETTINGS: dict[str, StepSettings] = {}


def image_ref(image: str, registry: str, tag: str) -> str:
    """``image`` (one of ours) moved to ``registry`` and ``tag``."""
    name = image.rsplit("/", 1)[-1].split(":", 1)[0]
    return f"{registry.rstrip('/')}/{name}:{tag}"


def component(image: str, timeout_hours: int, **settings):
    """``@dsl.component`` in our image, without a runtime kfp install, with its task settings (``StepSettings``).

    Inside a running step kfp loads only its runtime part (``_KFP_RUNTIME=true``), which has no
    decorator; the module is imported there for its core, so the function is left as it is.
    """
    def define(func):
        SETTINGS[func.__name__.replace("_", "-")] = StepSettings(image, timeout_hours, **settings)
        if os.environ.get("_KFP_RUNTIME") == "true":
            return func
        from kfp import dsl

        return dsl.component(base_image=image, install_kfp_package=False)(func)

    return define
