"""What a reader of one labelled export (COCO, VOC, CVAT, YOLO) hands on, and the checks its entries share.

An export comes from a bucket: a path its labels give must stay inside the export, and a box must lie in its
image. A reader records each problem as one line naming the file and the entry (``Refusals``); what passes
becomes a ``Found``: the export's images and its boxes, still under the export's own class names.
"""

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from yolo_kfp.data.boxes import IMAGE_EXTENSIONS

# How far, in pixels, a box may reach beyond its image: annotation tools round, and VOC counts pixels from 1.
# Such a box is clamped to the image; one that reaches further is refused.
TOLERANCE_PX = 1.0


@dataclass
class Found:
    """One export, read: its images (the image's path inside the export -> its file here), its boxes (that path,
    the export's class name, then XMin, XMax, YMin, YMax as shares of the image) and what its reader dropped
    (reason -> count). ``later`` reads what a library reads once every export has passed its checks; ``names``
    are the class names of its boxes where they are known before that."""

    images: dict[str, str] = field(default_factory=dict)
    boxes: list[tuple[str, str, float, float, float, float]] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    later: list[Callable[[], None]] = field(default_factory=list)
    names: set[str] = field(default_factory=set)

    def class_names(self) -> set[str]:
        return self.names | {name for _, name, *_ in self.boxes}


class Refusals:
    """The problems of one export, each a line ``extra_data: <file>: <entry>: <what>``, the file named under
    ``shown`` (the export's URL)."""

    def __init__(self, shown: str):
        self.shown = shown.rstrip("/")
        self.lines: list[str] = []

    def add(self, path: str, entry: str, what: str) -> None:
        where = f"{self.shown}/{path}" if path else self.shown
        self.lines.append(f"extra_data: {where}: " + (f"{entry}: " if entry else "") + what)

    def __len__(self) -> int:
        return len(self.lines)


def number(value) -> float | None:
    """A finite number from JSON or an XML attribute's text; None for anything else (true, "", "nan", a list)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        result = float(value)
    except ValueError:
        return None
    return result if math.isfinite(result) else None


def image_size(width, height) -> tuple[float, float] | None:
    """An image's width and height as numbers above 0, or None."""
    w, h = number(width), number(height)
    return (w, h) if w is not None and h is not None and w > 0 and h > 0 else None


def pixel_box(corners: list, size: tuple[float, float]) -> tuple[tuple[float, float, float, float] | None, str]:
    """``corners`` (x0, y0, x1, y1 in pixels) as (XMin, XMax, YMin, YMax) shares of an image of ``size``, or None
    and what is wrong: not numbers, no area, or reaching beyond the image by more than ``TOLERANCE_PX``."""
    values = [number(c) for c in corners]
    if len(values) != 4 or any(v is None for v in values):
        return None, "are not four numbers"
    x0, y0, x1, y1 = (float(v or 0) for v in values)
    width, height = size
    if x1 <= x0 or y1 <= y0:
        return None, "has no area"
    if min(x0, y0) < -TOLERANCE_PX or x1 > width + TOLERANCE_PX or y1 > height + TOLERANCE_PX:
        return None, f"lies outside its {width:g}x{height:g} image"
    return (x0 / width, x1 / width, y0 / height, y1 / height), ""


def shown_box(corners) -> str:
    return "[" + ", ".join(f"{c:g}" if isinstance(c, (int, float)) else repr(c) for c in corners) + "]"


def inside(base: str, name: str, export: str) -> str | None:
    """The file ``name`` (a path an export's labels give, ``/`` or ``\\`` between folders) under ``base``, a folder
    of the export ``export``; None for an absolute name, one with ``..``, or one that exists and whose real path
    (links followed) leaves ``export``."""
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name) or ".." in parts:
        return None
    path = os.path.join(base, *[p for p in parts if p not in ("", ".")])
    if os.path.lexists(path):
        root = os.path.realpath(export)
        if os.path.commonpath([root, os.path.realpath(path)]) != root:
            return None
    return path


def image_beside(folder: str, stem: str) -> str | None:
    """The image file ``<stem>.jpg`` (``.jpeg``, ``.png``, any case) in ``folder``, or None."""
    for extension in IMAGE_EXTENSIONS:
        for candidate in (stem + extension, stem + extension.upper()):
            if os.path.isfile(os.path.join(folder, candidate)):
                return os.path.join(folder, candidate)
    return None


def relative(path: str, folder: str) -> str:
    """``path`` as a name inside the export ``folder`` (``/`` between folders)."""
    return os.path.relpath(path, folder).replace(os.sep, "/")
