"""Ultralytics without a network, and without unpickling code: what a disconnected GPU node needs before
``import ultralytics``.

``YOLO_OFFLINE`` stops version checks, telemetry and pip auto-installs. Two downloads remain: the
Arial font behind every plot (answered by a local font placed where Ultralytics looks first) and the
AMP self-test on GPU, which fetches a weights file (replaced by a check that needs no download).
"""

import atexit
import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path

FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")
# Modules that copied Ultralytics' NUM_THREADS (from the node's core count) at import time.
THREAD_COUNT_USERS = ("ultralytics.utils", "ultralytics.utils.torch_utils", "ultralytics.data.base",
                      "ultralytics.data.dataset")
# GPUs that Ultralytics' own AMP check distrusts (NaN losses under AMP).
AMP_UNSAFE_GPU = re.compile(r"(nvidia|geforce|quadro|tesla).*?(1660|1650|1630|t400|t550|t600|t1000|t1200|t2000|k40m)",
                            re.IGNORECASE)


def _local_font() -> str:
    import matplotlib

    return os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf", "DejaVuSans.ttf")


def amp_supported(model) -> bool:
    """AMP on CUDA unless the GPU is one Ultralytics distrusts; never on CPU. No download."""
    import torch

    device = next(model.parameters()).device
    return device.type == "cuda" and not AMP_UNSAFE_GPU.search(torch.cuda.get_device_name(device))


INTEGRATIONS = ("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")


def _removed_at_exit(prefix: str) -> str:
    """A new temporary folder, removed when this process exits (a CLI step leaves nothing in /tmp). Processes
    it starts (DDP's workers) end before it and inherit the folder by the environment."""
    folder = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def disable_onnxruntime_telemetry() -> None:
    """onnxruntime's official builds report usage to Microsoft over HTTPS from the moment they load and leave a
    session file (``.ses``) in the temporary folder; ``ORT_DISABLE_TELEMETRY``, read as it loads, stops both."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def configure_offline() -> Path:
    """Sets up the environment and returns Ultralytics' config dir (writable, holding the fonts). Every
    checkpoint Ultralytics loads after this is loaded weights-only (``yolo_kfp.model.safe_checkpoint``)."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"  # read when Ultralytics is first imported
    disable_onnxruntime_telemetry()  # export checks its model in onnxruntime
    if os.environ.get("YOLO_CONFIG_DIR"):
        with contextlib.suppress(OSError):
            os.makedirs(os.environ["YOLO_CONFIG_DIR"], exist_ok=True)
    if not os.environ.get("YOLO_CONFIG_DIR") or not os.access(os.environ["YOLO_CONFIG_DIR"], os.W_OK):
        os.environ["YOLO_CONFIG_DIR"] = _removed_at_exit("yolo-config-")
    if not os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        # torch makes its compiler's cache at /tmp/torchinductor_<user> when Ultralytics imports torch._dynamo;
        # nothing here compiles, so the cache goes with the process
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = _removed_at_exit("torchinductor-")
    import ultralytics.engine.trainer
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR

    # Ultralytics' own integrations log wherever their library is importable (MLflow's client is: to
    # ./mlruns by default); tracking here is explicit (yolo_kfp.model.tracking). The settings file
    # lives in YOLO_CONFIG_DIR, so DDP's worker processes read the same.
    integrations = {name: False for name in INTEGRATIONS if SETTINGS.get(name)}
    if integrations:
        SETTINGS.update(integrations)

    for name in FONT_NAMES:
        if not (USER_CONFIG_DIR / name).exists():
            shutil.copyfile(_local_font(), USER_CONFIG_DIR / name)
    # the name trainer.py calls, replaced on purpose (it is trainer.py's import, not a name it exports)
    ultralytics.engine.trainer.check_amp = amp_supported  # pyright: ignore[reportPrivateImportUsage]
    return USER_CONFIG_DIR


def limit_threads(threads: int) -> None:
    """Ultralytics' thread pools (image caching, label checks) and its CPU training threads use ``threads``
    instead of a count from the node's cores, which a CPU-limited pod would only be throttled on."""
    import importlib

    for name in THREAD_COUNT_USERS:  # a module imported by name is a plain ModuleType to pyright
        importlib.import_module(name).NUM_THREADS = threads  # pyright: ignore[reportAttributeAccessIssue]
