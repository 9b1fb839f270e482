"""Boxes as the conversion holds them, whatever source they came from: one row per box with its image's id, its
class id and its corners as shares of the image (``XMin``, ``XMax``, ``YMin``, ``YMax``), cleaned the same way,
and what was dropped on the way counted by reason."""

import logging
import os

import pandas as pd

from yolo_kfp.infra.image_files import readable

log = logging.getLogger(__name__)

BOX_COLUMNS = ["XMin", "XMax", "YMin", "YMax"]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def count(dropped: dict, **counts: int) -> None:
    """Adds ``counts`` to the tally ``dropped`` (reason -> number)."""
    for key, value in counts.items():
        dropped[key] = dropped.get(key, 0) + value


def clean_boxes(boxes: pd.DataFrame, dropped: dict) -> pd.DataFrame:
    """Drops boxes with missing or inverted coordinates, clamps the rest to [0, 1], drops empty ones."""
    coords = boxes[BOX_COLUMNS].apply(pd.to_numeric, errors="coerce")
    invalid = coords.isna().any(axis=1) | (coords["XMin"] > coords["XMax"]) | (coords["YMin"] > coords["YMax"])
    clamped = coords[~invalid].clip(0.0, 1.0)
    empty = (clamped["XMax"] <= clamped["XMin"]) | (clamped["YMax"] <= clamped["YMin"])
    count(dropped, invalid_boxes=int(invalid.sum()), boxes_outside_image=int(empty.sum()),
          boxes_clamped=int((clamped != coords[~invalid]).any(axis=1).sum()))
    kept = boxes[~invalid][~empty.to_numpy()].copy()
    kept[BOX_COLUMNS] = clamped[~empty.to_numpy()]
    return kept


def images_in(folder: str) -> dict[str, str]:
    """Image id (file stem) -> path, for every image file under ``folder``."""
    return {os.path.splitext(name)[0]: os.path.join(root, name) for root, _, names in os.walk(folder)
            for name in names if name.lower().endswith(IMAGE_EXTENSIONS)}


def with_images(boxes: pd.DataFrame, images: dict[str, str], dropped: dict) -> pd.DataFrame:
    """Adds each box's image path; drops unreadable images, boxes without an image, and counts images
    without a box."""
    broken = {image_id for image_id in set(boxes["ImageID"]) & set(images) if not readable(images[image_id])}
    count(dropped, unreadable_images=len(broken))
    if broken:
        log.warning("dropped %d unreadable images (zero-byte, corrupt or truncated): %s", len(broken),
                    sorted(broken)[:10])
    images = {k: v for k, v in images.items() if k not in broken}
    boxes = boxes.assign(image_path=boxes["ImageID"].map(images))
    count(dropped, boxes_without_image=int(boxes["image_path"].isna().sum()),
          images_without_selected_boxes=len(set(images) - set(boxes["ImageID"])))
    return boxes[boxes["image_path"].notna()]
