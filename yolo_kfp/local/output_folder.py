"""An output folder of run-local or a step: a new or empty one, or one an earlier run of yolo-kfp wrote (its marker
says so), which is reused. A folder holding anything else is refused untouched: a run replaces its logs and
outputs."""

import contextlib
import json
import os

from yolo_kfp import __version__

MARKER = ".yolo-kfp-run"  # written first into every folder run-local or a step writes into


def checked(output_dir: str) -> tuple[str, bool]:
    """The folder ``output_dir`` (absolute) and whether an earlier run wrote it; refused if it holds anything else.
    Nothing is written."""
    folder = os.path.abspath(output_dir)
    reused = os.path.isfile(os.path.join(folder, MARKER))
    if not reused and os.path.isdir(folder) and os.listdir(folder):
        raise ValueError(f"--output-dir {output_dir} holds files that yolo-kfp did not write (it has no {MARKER}): "
                         "name a new or empty folder; nothing in it was touched")
    return folder, reused


def mark(folder: str) -> None:
    """Marks ``folder`` as written by yolo-kfp, where it exists (a step that failed before writing made none)."""
    marker = os.path.join(folder, MARKER)
    if os.path.isdir(folder) and not os.path.exists(marker):
        with open(marker, "x") as f:
            json.dump({"made_by": "yolo-kfp", "version": __version__}, f)


def claim(output_dir: str) -> tuple[str, bool]:
    """The folder ``output_dir`` (absolute), made if missing and marked as this run's, and whether an earlier run
    wrote it."""
    folder, reused = checked(output_dir)
    os.makedirs(folder, exist_ok=True)
    mark(folder)
    return folder, reused


@contextlib.contextmanager
def writing_into(output_dir: str):
    """``output_dir`` claimed (made and marked first, so that a step killed half-way is resumed into) while a
    command writes into it; a folder it made and the command left empty is removed if the command fails."""
    made = not os.path.exists(os.path.abspath(output_dir))
    folder, _ = claim(output_dir)
    try:
        yield folder
    except BaseException:
        if made and os.listdir(folder) == [MARKER]:
            os.remove(os.path.join(folder, MARKER))
            os.rmdir(folder)
        raise
