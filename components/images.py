"""The container images the components run in, and the decorator that binds a component to one.

The images carry this project's code, kfp and every dependency, so nothing is pip-installed when a
step starts.
"""

import os

DATA_IMAGE = "quay.io/yolo-kfp/data:0.1.0"  # download, convert: FiftyOne, pandas, pyarrow
TRAIN_IMAGE = "quay.io/yolo-kfp/train:0.1.0"  # train, evaluate: CUDA PyTorch, Ultralytics


def component(base_image: str):
    """``@dsl.component`` in our image, without a runtime kfp install.

    Inside a running step kfp loads only its runtime part (``_KFP_RUNTIME=true``), which has no
    decorator; the module is imported there for its core, so the function is left as it is.
    """
    if os.environ.get("_KFP_RUNTIME") == "true":
        return lambda func: func
    from kfp import dsl

    return dsl.component(base_image=base_image, install_kfp_package=False)
