"""The on-disk layout of an Open Images V7 split as FiftyOne's zoo keeps it.

``<split dir>/data/<ImageID>.jpg``, ``labels/detections.csv``, ``metadata/classes.csv`` (no header:
MID, display name), ``metadata/hierarchy.json`` (display names) and ``metadata/image_ids.csv``.
The download step writes this layout, the convert step reads it, the demo mirror imitates it; both
steps check class names against its display names.
"""

from __future__ import annotations

import difflib
import os

ZOO_NAME = "open-images-v7"
BUCKET = "open-images-dataset"  # FiftyOne fetches images from here, key "<split>/<ImageID>.jpg"
RECORD = "download.json"  # what was asked for and what came, carried on to the published model

DATA_DIR = "data"
DETECTIONS_CSV = os.path.join("labels", "detections.csv")
CLASSES_CSV = os.path.join("metadata", "classes.csv")
HIERARCHY_JSON = os.path.join("metadata", "hierarchy.json")
IMAGE_IDS_CSV = os.path.join("metadata", "image_ids.csv")
METADATA_FILES = (DETECTIONS_CSV, CLASSES_CSV, HIERARCHY_JSON, IMAGE_IDS_CSV)

DETECTION_COLUMNS = (
    "ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax",
    "IsOccluded", "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside",
    "XClick1X", "XClick2X", "XClick3X", "XClick4X", "XClick1Y", "XClick2Y", "XClick3Y", "XClick4Y",
)
IMAGE_ID_COLUMNS = (
    "ImageID", "Subset", "OriginalURL", "OriginalLandingURL", "License", "AuthorProfileURL",
    "Author", "Title", "OriginalSize", "OriginalMD5", "Thumbnail300KURL", "Rotation",
)


def split_dir(zoo_dir: str, split: str) -> str:
    """Where FiftyOne's zoo keeps one split of Open Images V7."""
    return os.path.join(zoo_dir, ZOO_NAME, split)


def missing_files(raw_dir: str) -> list[str]:
    """The metadata files of the layout that ``raw_dir`` lacks."""
    return [name for name in METADATA_FILES if not os.path.isfile(os.path.join(raw_dir, name))]


def unknown_classes(requested: list[str], known: list[str]) -> str:
    """The names in ``requested`` that ``known`` lacks, each with the closest known ones; empty if none."""
    unknown = [c for c in requested if c not in known]
    hints = {c: difflib.get_close_matches(c, known, n=3, cutoff=0.6) for c in unknown}
    return "; ".join(repr(c) + (f" (did you mean {', '.join(map(repr, h))}?)" if h else "") for c, h in hints.items())


def check_classes(requested: list[str], known: list[str]) -> None:
    """Refuses names that are not Open Images display names, suggesting the closest ones (the form of the
    list is a parameter rule: ``yolo_kfp.params.validation``)."""
    unknown = unknown_classes(requested, known)
    if unknown:
        raise ValueError(f"unknown Open Images classes: {unknown}")
