"""Checkpoints are loaded with PyTorch's weights-only unpickler, never with plain pickle.

A ``.pt`` file is a pickle: loaded the usual way (``torch.load(weights_only=False)``, Ultralytics' default)
it can run any code in the pod that holds the S3 and MLflow credentials. Whoever can write to the bucket
could plant one as an epoch checkpoint, an ``s3://`` base model or the published model the gate compares
with. Ultralytics' safe loading (``ULTRALYTICS_SAFE_LOAD``, set by ``configure_offline`` before it is
imported) rebuilds only the classes of its own allow-list; ``load`` asks for it explicitly and turns a
refusal into one line. Ultralytics' label caches (``labels/*.cache``) are pickles too, loaded with
``allow_pickle=True``: only those it writes itself in this pod are kept (``drop_label_caches``).
"""

import glob
import os
import pickle
import re
import tempfile


class UnsafeCheckpoint(ValueError):
    """A checkpoint that names Python objects outside an Ultralytics checkpoint's: never loaded. Retrying
    cannot help (the file stays what it is)."""


class UnreadableCheckpoint(ValueError):
    """A checkpoint cut off or damaged (a pod killed while it was written)."""


def load(path: str, what: str) -> dict:
    """The checkpoint at ``path`` (``what`` names it in errors), loaded weights-only against Ultralytics'
    allow-list; UnsafeCheckpoint or UnreadableCheckpoint otherwise."""
    from yolo_kfp.model.ultralytics_env import configure_offline

    configure_offline()
    from ultralytics.nn.tasks import torch_safe_load

    try:
        with tempfile.TemporaryDirectory(prefix="checkpoint-") as work:
            # a neutral name: Ultralytics takes a file called yolov5n.pt for yolov5nu.pt and downloads that
            os.symlink(os.path.abspath(path), os.path.join(work, "checkpoint.pt"))
            checkpoint, _ = torch_safe_load(os.path.join(work, "checkpoint.pt"), safe_only=True)
    except (TypeError, ModuleNotFoundError) as error:  # Ultralytics' wording of every refusal and damage
        cause = error.__cause__ or error
        refused = re.search(r"GLOBAL ([\w.]+)", str(cause)) if isinstance(cause, pickle.UnpicklingError) else None
        if refused:  # the weights-only unpickler refused a global
            raise UnsafeCheckpoint(
                f"{what} {path} holds {refused.group(1)}, which no Ultralytics checkpoint holds (unpickling it could "
                "run code): it was not loaded. Remove it and find out who wrote it, or use a checkpoint that "
                "Ultralytics wrote") from None
        raise UnreadableCheckpoint(f"{what} {path} does not load ({cause})") from None
    except (OSError, RuntimeError, EOFError) as error:  # torch's own reading of a cut-off zip, before Ultralytics'
        raise UnreadableCheckpoint(f"{what} {path} does not load ({error})") from None
    if not isinstance(checkpoint, dict):
        raise UnsafeCheckpoint(f"{what} {path} is not an Ultralytics checkpoint (it holds a "
                               f"{type(checkpoint).__name__}): it was not used")
    return checkpoint


def drop_label_caches(data_dir: str) -> list[str]:
    """Removes Ultralytics' label caches from a dataset (it rebuilds them from the label files in seconds);
    returns what it removed. A cache that came with the data would be unpickled as it is."""
    caches = sorted(glob.glob(os.path.join(data_dir, "labels", "**", "*.cache"), recursive=True))
    for path in caches:
        os.remove(path)
    return caches
