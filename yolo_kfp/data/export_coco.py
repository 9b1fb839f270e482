"""A COCO detection export: one or more JSON files (``images``, ``annotations``, ``categories``; boxes
``[x, y, width, height]`` in pixels of the image's ``width`` and ``height``) and the images they name.

Its JSON files are the ``*.json`` at the export's top and in its ``annotations/`` folder (FiftyOne's
``labels.json``, CVAT's ``annotations/instances_default.json``, Label Studio's ``result.json``, Roboflow's
``_annotations.coco.json``). An image's ``file_name`` is looked up beside its JSON file, in ``images/`` or
``data/`` there, then at the export's top and its ``images/`` or ``data/``. Every entry is checked here first,
each problem one line; an export that passes is read by FiftyOne's COCO importer, with each image's file given
(so FiftyOne resolves no path the JSON gives).
"""

import json
import os
from typing import TypeGuard

from yolo_kfp.data.boxes import count
from yolo_kfp.data.export_boxes import (
    Found,
    Refusals,
    image_size,
    inside,
    number,
    pixel_box,
    relative,
    shown_box,
)

TABLES = ("images", "annotations", "categories")


def coco_files(folder: str) -> list[str]:
    """The JSON files of a COCO export in ``folder``."""
    found = []
    for sub in (folder, os.path.join(folder, "annotations")):
        if os.path.isdir(sub):
            found += sorted(os.path.join(sub, n) for n in os.listdir(sub)
                            if n.lower().endswith(".json") and os.path.isfile(os.path.join(sub, n)))
    return found


def _load(path: str, name: str, refusals: Refusals) -> dict | None:
    try:
        with open(path, "rb") as f:
            document = json.load(f)
    except json.JSONDecodeError as error:
        refusals.add(name, "", f"malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}")
        return None
    except (ValueError, RecursionError) as error:  # not UTF-8, nested beyond the parser's depth
        refusals.add(name, "", f"malformed JSON: {type(error).__name__}: {str(error)[:100]}")
        return None
    if not isinstance(document, dict) or not all(isinstance(document.get(t), list) for t in TABLES):
        refusals.add(name, "", "is not a COCO detection file: it needs the lists images, annotations and categories")
        return None
    return document


def _ident(value) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _categories(document: dict, name: str, refusals: Refusals) -> dict[int, str]:
    names: dict[int, str] = {}
    for i, category in enumerate(document["categories"]):
        ident = category.get("id") if isinstance(category, dict) else None
        label = category.get("name") if isinstance(category, dict) else None
        if not _ident(ident) or not isinstance(label, str) or not label.strip():
            refusals.add(name, f"categories[{i}]", "needs an integer id and a name")
        elif ident in names:
            refusals.add(name, f"category {ident}", "its id is defined twice")
        else:
            names[ident] = label.strip()
    return names


def _candidates(folder: str, json_dir: str) -> list[str]:
    roots = [json_dir, os.path.join(json_dir, "images"), os.path.join(json_dir, "data"), folder,
             os.path.join(folder, "images"), os.path.join(folder, "data")]
    return list(dict.fromkeys(roots))


def _image_file(folder: str, json_dir: str, file_name: str) -> str | None:
    """The file of ``file_name`` in the first place it is; "" when it names a path outside the export."""
    paths = [inside(root, file_name, folder) for root in _candidates(folder, json_dir)]
    if any(p is None for p in paths):
        return ""
    return next((p for p in paths if p and os.path.isfile(p)), None)


def _images(document: dict, folder: str, path: str, refusals: Refusals, seen: dict[str, str]) -> tuple[dict, set]:
    """Image id -> (its size, its file or None when absent, its path in the export, its file_name) of the entries
    that pass, and the ids of those refused."""
    name, images, ids = relative(path, folder), {}, set()
    for i, image in enumerate(document["images"]):
        image = image if isinstance(image, dict) else {}
        ident, file_name = image.get("id"), image.get("file_name")
        entry = f"image {ident}" if _ident(ident) else f"images[{i}]"
        size = image_size(image.get("width"), image.get("height"))
        if not _ident(ident) or not isinstance(file_name, str) or not file_name or size is None:
            refusals.add(name, entry, "needs an integer id, a file_name, and a width and height above 0")
            continue
        if ident in ids:
            refusals.add(name, entry, f"id {ident} is used by another image too")
            continue
        ids.add(ident)
        file = _image_file(folder, os.path.dirname(path), file_name)
        key = relative(file, folder) if file else file_name
        if file == "" or key in seen:
            refusals.add(name, entry, f"file_name {file_name!r} leaves the export" if file == ""
                         else f"file_name {file_name!r} is listed twice (also as {seen[key]})")
            continue
        seen[key] = f"{name} {entry}"
        images[ident] = (size, file, key, file_name)
    return images, ids - set(images)


def _box(bbox, size: tuple[float, float]) -> tuple[tuple | None, str]:
    """A COCO ``bbox`` checked against its image's ``size``: the box, or None and what is wrong with it."""
    if not isinstance(bbox, list) or len(bbox) != 4 or any(number(v) is None for v in bbox):
        return None, f"bbox {bbox!r} is not [x, y, width, height] in numbers"
    x, y, w, h = (float(v) for v in bbox)
    box, problem = pixel_box([x, y, x + w, y + h], size)
    return box, f"bbox {shown_box(bbox)} {problem}"


def _annotations(document, categories, images, refused, name, refusals: Refusals, include_group_of: bool,
                 found: Found) -> set:
    """Checks every annotation; counts the crowd boxes left out and notes the class names of the rest in ``found``;
    returns the ids of the images with boxes."""
    used = set()
    for i, annotation in enumerate(document["annotations"]):
        annotation = annotation if isinstance(annotation, dict) else {}
        ident = annotation.get("id")
        entry = f"annotation {ident}" if _ident(ident) else f"annotations[{i}]"
        image_id, category_id = annotation.get("image_id"), annotation.get("category_id")
        if image_id in refused:  # told once, for the image
            continue
        if not _ident(image_id) or image_id not in images:
            refusals.add(name, entry, f"image_id {image_id!r} names no image")
        elif not _ident(category_id) or category_id not in categories:
            refusals.add(name, entry, f"category_id {category_id!r} names no category")
        else:
            box, problem = _box(annotation.get("bbox"), images[image_id][0])
            if box is None:
                refusals.add(name, entry, problem)
            elif annotation.get("iscrowd") == 1 and not include_group_of:
                count(found.dropped, crowd_boxes=1)
            else:
                used.add(image_id)
                found.names.add(categories[category_id])
    return used


def read_coco(folder: str, refusals: Refusals, include_group_of: bool) -> Found:
    """The images and boxes of the COCO export in ``folder``; a problem of any entry goes to ``refusals``."""
    found, seen = Found(), {}
    documents = []
    for path in coco_files(folder):
        name, before = relative(path, folder), len(refusals)
        document = _load(path, name, refusals)
        if document is None:
            continue
        categories = _categories(document, name, refusals)
        images, refused = _images(document, folder, path, refusals, seen)
        used = _annotations(document, categories, images, refused, name, refusals, include_group_of, found)
        for image_id in sorted(used):
            if images[image_id][1] is None:
                refusals.add(name, f"image {image_id}", f"its file {images[image_id][3]!r} is not in the export "
                             "(looked for beside the JSON file, in images/ and data/, and at the export's top)")
        if len(refusals) == before:
            documents.append((path, {i: v for i, v in images.items() if v[1] is not None}))
    found.later += [lambda path=path, images=images: _read_with_fiftyone(path, images, found, include_group_of)
                    for path, images in documents]
    return found


def _read_with_fiftyone(path: str, images: dict, found: Found, include_group_of: bool) -> None:
    """The boxes of the checked COCO file ``path``, read by FiftyOne's importer (no database: it is iterated, not
    imported into a dataset), for the images ``images`` (id -> (size, file, key, file_name)) whose files are here."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    import fiftyone.core.labels as fol
    import fiftyone.utils.coco as fouc

    key_of = {os.path.normpath(file): key for _, file, key, _ in images.values()}
    importer = fouc.COCODetectionDatasetImporter(
        data_path={file_name: file for _, file, _, file_name in images.values()}, labels_path=path,
        label_types=["detections"], image_ids=sorted(images), extra_attrs=False)
    with importer:
        for image_path, _, label in importer:
            key = key_of[os.path.normpath(image_path)]
            found.images[key] = image_path
            # FiftyOne declares the list as its database field type (a ListField), which pyright cannot iterate
            detections: list = label.detections if isinstance(label, fol.Detections) else []  # pyright: ignore[reportAssignmentType]
            for detection in detections:
                if detection.has_field("iscrowd") and detection["iscrowd"] == 1 and not include_group_of:
                    continue
                x, y, w, h = detection.bounding_box
                found.boxes.append((key, detection.label, x, x + w, y, y + h))
