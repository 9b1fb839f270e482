"""A YOLO export (Ultralytics' layout): ``images/`` and ``labels/`` (a ``.txt`` per image at the same path:
``labels/train/a.txt`` for ``images/train/a.jpg``), a line ``class cx cy w h`` per box in shares of the image,
and the class names in ``data.yaml`` / ``dataset.yaml`` (``names``) or ``classes.txt``, at the export's top or,
for an export in a sub-folder of extra_data (Roboflow's ``train/``, ``valid/``), at extra_data's top.

Boxes that reach beyond the image are clamped to it, as Ultralytics does; polygon lines are dropped and counted.
Read here, not by FiftyOne's YOLOv5 importer: that one reads one split at a time, through the folders
``data.yaml``'s ``path`` names (which may point anywhere), and knows no ``classes.txt``.
"""

import os

import yaml

from yolo_kfp.data.boxes import IMAGE_EXTENSIONS, count
from yolo_kfp.data.export_boxes import Found, Refusals, number, relative

NAME_FILES = ("data.yaml", "dataset.yaml", "classes.txt")


def _names_from(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        if path.endswith(".txt"):
            return [line.strip() for line in f if line.strip()]
        document = yaml.safe_load(f)
    names = document.get("names", []) if isinstance(document, dict) else []
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)] if all(isinstance(k, int) for k in names) else []
    return [str(n) for n in names] if isinstance(names, list) else []


def yolo_class_names(folders: list[str], refusals: Refusals) -> list[str]:
    """The class names of a YOLO export, from the first of ``folders`` that has a file naming them."""
    for folder in folders:
        for name in NAME_FILES:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                try:
                    names = _names_from(path)
                except (yaml.YAMLError, UnicodeDecodeError) as error:
                    refusals.add(name, "", f"malformed: {' '.join(str(error).split())[:200]}")
                    return []
                if names:
                    return names
    refusals.add("", "", "is in YOLO layout but names no classes: add data.yaml (names: [...]) or classes.txt")
    return []


def _images(folder: str) -> dict[str, str]:
    """The image files under ``images/``, by their path there without the extension."""
    top = os.path.join(folder, "images")
    return {os.path.splitext(relative(os.path.join(root, n), top))[0]: os.path.join(root, n)
            for root, _, names in os.walk(top) for n in names if n.lower().endswith(IMAGE_EXTENSIONS)}


def _line(fields: list[str], names: list[str]) -> tuple[tuple | None, str]:
    """(class name, box) of a label line, or None and what is wrong."""
    values = [number(f) for f in fields]
    if any(v is None for v in values):
        return None, f"{' '.join(fields)!r} is not five numbers"
    class_id, cx, cy, w, h = (float(v or 0) for v in values)
    if not class_id.is_integer() or not 0 <= class_id < len(names):
        return None, f"class {fields[0]} is not one of the classes its names file defines (0-{len(names) - 1})"
    if w <= 0 or h <= 0:
        return None, f"box {' '.join(fields[1:])} has no area"
    return (names[int(class_id)], (cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2)), ""


def read_yolo(folder: str, refusals: Refusals, names_folders: list[str]) -> Found:
    """The images and boxes of the YOLO export in ``folder``; a problem of any line goes to ``refusals``."""
    found = Found()
    names = yolo_class_names([folder, *names_folders], refusals)
    images = _images(folder)
    labels = os.path.join(folder, "labels")
    found.images = {relative(path, folder): path for path in images.values()}
    for root, _, files in os.walk(labels):
        for file in sorted(f for f in files if f.endswith(".txt")):
            path = os.path.join(root, file)
            name, stem = relative(path, folder), os.path.splitext(relative(path, labels))[0]
            if stem not in images:
                refusals.add(name, "", f"its image images/{stem}.jpg (or .jpeg, .png) is not in the export")
                continue
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
            for number_, line in enumerate(lines, start=1):
                fields = line.split()
                if len(fields) != 5:
                    count(found.dropped, unsupported_label_lines=int(bool(fields)))
                    continue
                box, problem = _line(fields, names) if names else (None, "")
                if box is None and problem:
                    refusals.add(name, f"line {number_}", problem)
                elif box is not None:
                    found.boxes.append((relative(images[stem], folder), box[0], *box[1]))
    return found
