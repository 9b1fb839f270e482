"""The container images the components run in, and the decorator that binds a component to one.

The images carry this project's code, kfp and every dependency, so nothing is pip-installed when a
step starts. ``images/`` builds them; ``yolo-kfp compile --image-registry R --image-tag T`` points a
compiled pipeline at another registry or tag (a mirror on a disconnected cluster).
"""

import os

REGISTRY = "quay.io/yolo-kfp"
TAG = "0.1.0"
DATA_IMAGE = f"{REGISTRY}/data:{TAG}"  # preflight, download, convert, publish: FiftyOne, pandas, pyarrow, boto3
TRAIN_IMAGE = f"{REGISTRY}/train:{TAG}"  # train, evaluate, export, gate: CUDA PyTorch, Ultralytics, ONNX


def image_ref(image: str, registry: str, tag: str) -> str:
    """``image`` (one of ours) moved to ``registry`` and ``tag``."""
    name = image.rsplit("/", 1)[-1].split(":", 1)[0]
    return f"{registry.rstrip('/')}/{name}:{tag}"


def component(base_image: str):
    """``@dsl.component`` in our image, without a runtime kfp install.

    Inside a running step kfp loads only its runtime part (``_KFP_RUNTIME=true``), which has no
    decorator; the module is imported there for its core, so the function is left as it is.
    """
    if os.environ.get("_KFP_RUNTIME") == "true":
        return lambda func: func
    from kfp import dsl

    return dsl.component(base_image=base_image, install_kfp_package=False)
