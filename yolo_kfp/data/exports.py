"""The labelled exports under extra_data: where each is, its format, and its boxes mapped onto the run's classes.

Where: extra_data is one export when a format is found at its top; else each of its sub-folders is one
(``coco/``, ``voc/``, ...: one level down, and every sub-folder must then hold one). Which format: the one
``extra_data_format`` names, for every export; or the first whose files are there (``FORMATS``, in order).

Classes: ``class_map`` maps an export's class names onto the run's classes; a name that is one of the classes
maps to itself; boxes of any other name are dropped and counted by name. A ``class_map`` name no export has is
logged and recorded, not refused (one map serves every export under the prefix). The Open Images layout names
its classes as the run does, and ``class_map`` leaves it alone.

Refusals: every problem of every export is found first, one line each naming the file and the entry, and
raised at once (a ``ValueError``, at most ``MAX_LINES`` lines), before anything is written or FiftyOne loaded.
"""

import hashlib
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from yolo_kfp.data.boxes import BOX_COLUMNS, clean_boxes, with_images
from yolo_kfp.data.export_boxes import Found, Refusals
from yolo_kfp.data.export_coco import coco_files, read_coco
from yolo_kfp.data.export_cvat import LABELS_FILE, read_cvat
from yolo_kfp.data.export_voc import read_voc, voc_files
from yolo_kfp.data.export_yolo import read_yolo
from yolo_kfp.data.openimages import DETECTIONS_CSV
from yolo_kfp.data.openimages_boxes import read_open_images

log = logging.getLogger(__name__)

MAX_LINES = 20  # lines of a refusal; "and N more" after them
# Each format and what tells it, in the order they are tried.
FORMATS = {
    "openimages": ("labels/detections.csv", lambda d: os.path.isfile(os.path.join(d, DETECTIONS_CSV))),
    "voc": ("Annotations/, or *.xml beside the images", lambda d: os.path.isdir(os.path.join(d, "Annotations"))
            or bool(voc_files(d))),
    "cvat": (LABELS_FILE, lambda d: os.path.isfile(os.path.join(d, LABELS_FILE))),
    "yolo": ("images/ and labels/", lambda d: all(os.path.isdir(os.path.join(d, s)) for s in ("images", "labels"))),
    "coco": ("a *.json at the top or in annotations/", lambda d: bool(coco_files(d))),
}
EXPECTED = "; ".join(f"{name}: {marks}" for name, (marks, _) in FORMATS.items())


@dataclass
class Source:
    """One source of boxes: its name (the download's, or an export's URL), its path inside extra_data, its
    format, its boxes of the run's classes (ImageID, class_id, XMin, XMax, YMin, YMax, image_path) and what was
    dropped (reason -> count; ``other_classes``: class name -> boxes)."""

    name: str
    path: str
    format: str
    boxes: pd.DataFrame = field(default_factory=pd.DataFrame)
    dropped: dict = field(default_factory=dict)
    other_classes: dict[str, int] = field(default_factory=dict)

    def summary(self, classes: list[str]) -> dict:
        """Its entry of the stats: format, path, images and boxes per class it gave, what it dropped and why."""
        per_class = self.boxes["class_id"].value_counts().to_dict() if len(self.boxes) else {}
        dropped = dict(self.dropped)
        if self.other_classes:
            dropped["other_classes"] = dict(sorted(self.other_classes.items()))
        return {"format": self.format, "path": self.path,
                "images": int(self.boxes["ImageID"].nunique()) if len(self.boxes) else 0,
                "boxes": {name: int(per_class.get(i, 0)) for i, name in enumerate(classes)}, "dropped": dropped}


def format_of(folder: str, named: str) -> str | None:
    """The format of the export in ``folder``: ``named`` if its files are there, else the first found."""
    if named:
        return named if FORMATS[named][1](folder) else None
    return next((name for name, (_, present) in FORMATS.items() if present(folder)), None)


def find_sources(root: str, named: str, refusals: Refusals) -> list[tuple[str, str]]:
    """(path inside ``root``, format) of each export: ``root`` itself, or each of its sub-folders."""
    at_top = format_of(root, named)
    if at_top:
        return [(".", at_top)]
    wanted = f"a {named} export ({FORMATS[named][0]})" if named else f"an export ({EXPECTED})"
    subs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    if not subs:
        refusals.add("", "", f"holds no export: expected {wanted} at its top, or one in each sub-folder")
    found = [(sub, format_of(os.path.join(root, sub), named)) for sub in subs]
    for sub, kind in found:
        if kind is None:
            refusals.add(sub, "", f"holds no export: expected {wanted}")
    return [(sub, kind) for sub, kind in found if kind]


def _read(folder: str, root: str, kind: str, refusals: Refusals, include_group_of: bool) -> Found:
    if kind == "coco":
        return read_coco(folder, refusals, include_group_of)
    if kind == "voc":
        return read_voc(folder, refusals)
    if kind == "cvat":
        return read_cvat(folder, refusals)
    return read_yolo(folder, refusals, [root])


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def _stem(key: str) -> str:
    return os.path.splitext(os.path.basename(key))[0]


def image_ids(founds: list[tuple[str, Found]]) -> list[dict[str, str]]:
    """A dataset-wide image id for each image of each export (``(its path inside extra_data, what was found)``):
    ``extra_`` and the file's stem, after the export's folder when it is a sub-folder; its path inside the
    export where the stem is not unique there; a hash of it where the id still is not."""
    candidates = []
    for path, found in founds:
        prefix = "extra_" + ("" if path == "." else _safe(path) + "_")
        stems = Counter(_stem(key) for key in found.images)
        candidates.append({key: prefix + _safe(_stem(key) if stems[_stem(key)] == 1 else os.path.splitext(key)[0])
                           for key in found.images})
    taken = Counter(i for ids in candidates for i in ids.values())
    return [{key: i if taken[i] == 1 else f"{i}_{hashlib.sha256(f'{n}/{key}'.encode()).hexdigest()[:8]}"
             for key, i in ids.items()} for n, ids in enumerate(candidates)]


def mapped(source: Source, found: Found, ids: dict[str, str], classes: list[str], class_map: dict) -> pd.DataFrame:
    """The boxes ``found`` of the run's classes, by class id; others counted in ``source.other_classes``."""
    rows = []
    for key, label, *corners in found.boxes:
        name = label.strip()
        target = class_map.get(name, name)
        if target in classes:
            rows.append((ids[key], classes.index(target), *corners))
        else:
            source.other_classes[name] = source.other_classes.get(name, 0) + 1
    source.dropped["boxes_of_other_classes"] = sum(source.other_classes.values())
    frame = pd.DataFrame(rows, columns=["ImageID", "class_id", "XMin", "XMax", "YMin", "YMax"])
    frame = clean_boxes(frame.astype({c: float for c in BOX_COLUMNS}), source.dropped)
    return with_images(frame, {ids[key]: path for key, path in found.images.items()}, source.dropped)


def refuse(lines: list[str]) -> None:
    """Raises the problems found, one line each (``MAX_LINES`` at most), if there are any."""
    if lines:
        more = [f"and {len(lines) - MAX_LINES} more problems"] if len(lines) > MAX_LINES else []
        raise ValueError("\n".join(lines[:MAX_LINES] + more))


def read_extra_data(folders: tuple[str, ...], names: tuple[str, ...], *, classes: list[str], class_map: dict,
                    extra_data_format: str, include_group_of: bool) -> tuple[list[Source], list[str]]:
    """Every export under each of ``folders`` (shown as ``names``, their URLs), checked, then read; raises every
    problem at once. Returns the exports, and the names of ``class_map`` that none of them has."""
    lines, sources, founds = [], [], []
    for root, shown in zip(folders, names, strict=True):
        top = Refusals(shown)
        for path, kind in find_sources(root, extra_data_format, top):
            source = Source(shown.rstrip("/") + ("" if path == "." else f"/{path}"), path, kind)
            problems = Refusals(source.name)
            if kind == "openimages":
                _open_images(source, os.path.join(root, path), classes, include_group_of, problems)
            else:
                found = _read(os.path.join(root, path), root, kind, problems, include_group_of)
                founds.append((source, found))
                if not problems.lines and not any(class_map.get(n.strip(), n.strip()) in classes
                                                  for n in found.class_names()):
                    problems.add("", "", _no_class(found.class_names(), classes))
            sources.append(source)
            lines += problems.lines
        lines += top.lines
    refuse(lines)
    for _, found in founds:
        for read in found.later:  # what a library reads (FiftyOne), once nothing is refused
            read()
    _map_all(founds, classes, class_map)
    theirs = {name.strip() for _, found in founds for name in found.class_names()}
    return sources, sorted(set(class_map) - theirs)


def _no_class(names: set[str], classes: list[str]) -> str:
    theirs = ", ".join(repr(n) for n in sorted(names)[:10]) + (", ..." if len(names) > 10 else "")
    return (f"no box of the classes the run trains ({', '.join(classes)}); its boxes are of "
            f"{theirs or 'no class'}: map them with class_map")


def _open_images(source: Source, folder: str, classes: list[str], include_group_of: bool, problems: Refusals):
    try:
        source.boxes = read_open_images(folder, classes, include_group_of, source.dropped)
    except (ValueError, FileNotFoundError) as error:
        problems.add("", "", str(error))


def _map_all(founds: list[tuple[Source, Found]], classes: list[str], class_map: dict) -> None:
    """Maps each export's boxes onto ``classes``."""
    ids = image_ids([(source.path, found) for source, found in founds])
    for (source, found), image_id in zip(founds, ids, strict=True):
        source.dropped.update(found.dropped)
        source.boxes = mapped(source, found, image_id, classes, class_map)
        log.info("extra_data %s (%s): %d images, %d boxes; dropped %s", source.name, source.format,
                 source.boxes["ImageID"].nunique() if len(source.boxes) else 0, len(source.boxes), source.dropped)
