"""run-local's output folder: a new or empty one, or one an earlier run-local made (its marker says so), which
is reused. A folder holding anything else is refused untouched: the run replaces its logs and outputs."""

import json
import os

from yolo_kfp import __version__

MARKER = ".yolo-kfp-run"  # written first into every folder run-local writes into


def claim(output_dir: str) -> tuple[str, bool]:
    """The folder ``output_dir`` (absolute) marked as this run's, and whether an earlier run made it."""
    folder = os.path.abspath(output_dir)
    marker = os.path.join(folder, MARKER)
    reused = os.path.isfile(marker)
    if not reused and os.path.isdir(folder) and os.listdir(folder):
        raise ValueError(f"--output-dir {output_dir} holds files that no run-local made (it has no {MARKER}): name "
                         "a new or empty folder; nothing in it was touched")
    os.makedirs(folder, exist_ok=True)
    if not reused:
        with open(marker, "x") as f:
            json.dump({"made_by": "yolo-kfp run-local", "version": __version__}, f)
    return folder, reused
