"""The container images the components run in, and the decorator that defines a component with its task
settings: its image, its timeout, its retries, its CPU and memory, whether it needs the data connection
or a GPU node, or MLflow's credentials.

Each component states these once, where it is defined; the pipeline applies them to every task alike
(``yolo_kfp.pipeline.task_settings.apply_step_settings``), so a new step is wired without lists to keep in sync.
The images carry this project's code, kfp and every dependency, so nothing is pip-installed when a step
starts. ``images/`` builds them; ``yolo-kfp compile --image-registry R --image-tag T`` points a compiled
pipeline at another registry or tag (a mirror on a disconnected cluster), ``--data-image``/``--train-image``
name each image in full, e.g. pinned by digest.
"""

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from yolo_kfp.infra.oci_reference import IMAGE_REFERENCE, REGISTRY_REFERENCE
from yolo_kfp.infra.oci_reference import TAG as TAG_GRAMMAR

if TYPE_CHECKING:
    from kfp.dsl.python_component import PythonComponent

REGISTRY = "quay.io/yolo-kfp"
TAG = "0.1.0"
DATA_IMAGE = f"{REGISTRY}/data:{TAG}"  # preflight, download, convert, publish: FiftyOne, pandas, pyarrow, boto3
TRAIN_IMAGE = f"{REGISTRY}/train:{TAG}"  # train, evaluate, export, gate: CUDA PyTorch, Ultralytics, ONNX


@dataclass(frozen=True)
class Resources:
    """A pod's CPU and memory as Kubernetes quantities: the requests the scheduler reserves, the limits it
    may not pass. Every pod has both, so a namespace whose ResourceQuota counts ``limits.*`` admits it,
    and the code inside can size itself from its cgroup limits. Memory's limit defaults to its request:
    a pod that uses more than it reserved is the first one evicted when the node runs short."""

    cpu: str
    cpu_limit: str
    memory: str
    memory_limit: str = ""

    def __post_init__(self):
        if not self.memory_limit:
            object.__setattr__(self, "memory_limit", self.memory)


@dataclass(frozen=True)
class StepSettings:
    """How a component's tasks run on the cluster."""

    image: str
    timeout_hours: int  # the pod's activeDeadlineSeconds: nothing holds a node (or a GPU) forever
    retries: int = 0  # for transient faults (a dropped connection, a preempted node), with backoff
    retry_backoff_seconds: int = 60  # doubled at each retry, at most an hour
    data_connection: bool = False  # gets the data connection's AWS_* variables
    mlflow_connection: bool = False  # gets the MLflow connection's MLFLOW_TRACKING_* credentials
    registry_connection: bool = False  # gets the registry Secret's .dockerconfigjson (REGISTRY_AUTH_JSON)
    resources: Resources = Resources(cpu="500m", cpu_limit="1", memory="1Gi")  # a GPU step: the compile options'
    gpu: bool = False  # runs on a GPU node (the compile options size it)
    cache: bool = True  # False: run every time (what it checks can change between runs)


# Every component's settings, by component name (as KFP names its tasks).
SETTINGS: dict[str, StepSettings] = {}


def image_ref(image: str, registry: str, tag: str) -> str:
    """``image`` (one of ours) moved to ``registry`` and ``tag``."""
    name = image.rsplit("/", 1)[-1].split(":", 1)[0]
    return f"{registry.rstrip('/')}/{name}:{tag}"


def check_image_reference(reference: str, option: str) -> str:
    """``reference`` if it names an image as registry/repository:tag, @sha256:<digest> or both; else a
    ValueError naming ``option``."""
    match = IMAGE_REFERENCE.fullmatch(reference)
    if not match or not (match["tag"] or match["digest"]):
        raise ValueError(f"{option} {reference!r} is not an image reference: give registry/repository:tag or "
                         f"registry/repository@sha256:<64 hex digits>, e.g. {TRAIN_IMAGE}")
    return reference


def check_registry(registry: str, tag: str) -> None:
    """``--image-registry`` and ``--image-tag`` each as the OCI grammar spells them, named on their own."""
    if not REGISTRY_REFERENCE.fullmatch(registry):
        raise ValueError(f"--image-registry {registry!r} is not a registry: give host[:port][/namespace] in lower "
                         f"case, e.g. {REGISTRY} or mirror.example.com:5000/ml")
    if not re.fullmatch(TAG_GRAMMAR, tag, flags=re.ASCII):
        raise ValueError(f"--image-tag {tag!r} is not an image tag: use up to 128 letters, digits, '_', '.' or '-', "
                         f"not starting with '.' or '-', e.g. {TAG}")


def component(image: str, timeout_hours: int, **settings):
    """``@dsl.component`` in our image, without a runtime kfp install, with its task settings (``StepSettings``).

    Inside a running step kfp loads only its runtime part (``_KFP_RUNTIME=true``), which has no
    decorator; the module is imported there for its core, so the function is left as it is.
    """
    def define(func) -> "PythonComponent":
        SETTINGS[func.__name__.replace("_", "-")] = StepSettings(image, timeout_hours, **settings)
        if os.environ.get("_KFP_RUNTIME") == "true":
            return cast("PythonComponent", func)  # in the pod only its core is called, never the component
        from kfp import dsl

        func.__doc__ = with_table_args(func)
        return cast("PythonComponent", dsl.component(base_image=image, install_kfp_package=False)(func))

    return define


def with_table_args(func) -> str:
    """``func``'s docstring with an ``Args:`` line for each input named after a run parameter that has none: the
    parameter table's description, so that the run form and every step describe it alike
    (``tests/test_run_parameters.py`` holds any line a component writes itself to the table)."""
    import inspect

    from yolo_kfp.params.run_parameters import BY_NAME

    doc = inspect.cleandoc(func.__doc__ or "")
    lines = "".join(f"\n    {name}: {BY_NAME[name].description}" for name in inspect.signature(func).parameters
                    if name in BY_NAME and not re.search(rf"^ +{name}:", doc, flags=re.MULTILINE))
    if not lines:
        return doc
    if "\nArgs:" in doc:
        return doc.replace("\nArgs:", "\nArgs:" + lines, 1)
    return f"{doc}\n\nArgs:{lines}"
