"""Convert: Open Images boxes to a YOLO dataset with a deterministic train/val/test split.

Every box of every selected class is kept (an image with a car and a bicycle keeps both), boxes of
other classes are dropped (class display names match exactly, so "Bicycle wheel" is not "Bicycle"),
images left without a box are dropped, coordinates are clamped to [0, 1], and class ids follow the
order the user listed the classes in. The work is vectorized with pandas; only files are per image.
"""

import json
import logging
import os
import shutil
import time

import numpy as np
import pandas as pd
import yaml
from kfp.dsl import Dataset, Input, Output

from components import openimages as oi
from components.download import check_classes
from components.images import DATA_IMAGE, component

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")
DEFAULT_SPLIT_RATIOS = (0.75, 0.125, 0.125)
BOX_COLUMNS = ["XMin", "XMax", "YMin", "YMax"]


def split_counts(total: int, ratios: tuple[float, float, float]) -> tuple[int, int, int]:
    """Images per split: train and val rounded half up, test the rest; val and test get one at least."""
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1) > 1e-6:
        raise ValueError(f"split_ratios must be three non-negative numbers summing to 1, not {list(ratios)}")
    if total < 3:
        raise ValueError(f"only {total} images have boxes of the selected classes; at least 3 are needed")
    val = max(1, int(np.floor(total * ratios[1] + 0.5)))
    test = max(1, total - int(np.floor(total * ratios[0] + 0.5)) - val)
    return total - val - test, val, test


def assign_splits(image_ids: list[str], seed: int, ratios: tuple[float, float, float]) -> dict[str, str]:
    """Maps each image id to a split; depends only on the set of ids and the seed."""
    ordered = sorted(image_ids)
    permuted = [ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))]
    n_train, n_val, _ = split_counts(len(ordered), ratios)
    bounds = {"train": permuted[:n_train], "val": permuted[n_train:n_train + n_val],
              "test": permuted[n_train + n_val:]}
    return {image_id: split for split, ids in bounds.items() for image_id in ids}


def read_selected_boxes(raw_dir: str, classes: list[str], include_group_of: bool) -> tuple[pd.DataFrame, dict]:
    """The boxes of the selected classes with class ids, clamped, and counts of what was dropped."""
    missing = oi.missing_files(raw_dir)
    if missing:
        raise FileNotFoundError(f"{raw_dir} is not an Open Images V7 raw dataset: missing {', '.join(missing)}")
    names = pd.read_csv(os.path.join(raw_dir, oi.CLASSES_CSV), header=None, names=["mid", "name"], dtype=str)
    check_classes(list(classes), names["name"].tolist())
    class_of_mid = {mid: classes.index(name) for mid, name in names.itertuples(index=False) if name in classes}
    boxes = pd.read_csv(os.path.join(raw_dir, oi.DETECTIONS_CSV), usecols=["ImageID", "LabelName", "IsGroupOf",
                                                                            *BOX_COLUMNS],
                        dtype={"ImageID": str, "LabelName": str})
    dropped = {"boxes_of_other_classes": int((~boxes["LabelName"].isin(class_of_mid.keys())).sum())}
    boxes = boxes[boxes["LabelName"].isin(class_of_mid.keys())].copy()
    if not include_group_of:
        group_of = boxes["IsGroupOf"].fillna(0).astype(int) == 1
        dropped["group_of_boxes"] = int(group_of.sum())
        boxes = boxes[~group_of]
    coords = boxes[BOX_COLUMNS].apply(pd.to_numeric, errors="coerce")
    invalid = coords.isna().any(axis=1) | (coords["XMin"] > coords["XMax"]) | (coords["YMin"] > coords["YMax"])
    dropped["invalid_boxes"] = int(invalid.sum())
    clamped = coords[~invalid].clip(0.0, 1.0)
    dropped["boxes_clamped"] = int((clamped != coords[~invalid]).any(axis=1).sum())
    empty = (clamped["XMax"] <= clamped["XMin"]) | (clamped["YMax"] <= clamped["YMin"])
    dropped["boxes_outside_image"] = int(empty.sum())
    boxes = boxes[~invalid][~empty.values].copy()
    boxes[BOX_COLUMNS] = clamped[~empty.values]
    boxes["class_id"] = boxes["LabelName"].map(class_of_mid).astype(int)
    return boxes, dropped


def yolo_lines(boxes: pd.DataFrame) -> pd.Series:
    """``class cx cy w h`` per box, joined into one label file text per ImageID."""
    cx = (boxes["XMin"] + boxes["XMax"]) / 2
    cy = (boxes["YMin"] + boxes["YMax"]) / 2
    w = boxes["XMax"] - boxes["XMin"]
    h = boxes["YMax"] - boxes["YMin"]
    lines = boxes["class_id"].astype(str)
    for values in (cx, cy, w, h):
        lines = lines + " " + values.map("{:.6f}".format)
    return lines.groupby(boxes["ImageID"]).agg("\n".join) + "\n"


def _place_image(source: str, target: str) -> None:
    try:
        os.link(source, target)  # same file system: no copy
    except OSError:
        shutil.copyfile(source, target)


def class_statistics(boxes: pd.DataFrame, splits: dict[str, str], classes: list[str]) -> dict:
    """Images and boxes per class in each split."""
    frame = boxes.assign(split=boxes["ImageID"].map(splits), name=boxes["class_id"].map(dict(enumerate(classes))))
    result = {}
    for split in SPLIT_NAMES:
        part = frame[frame["split"] == split]
        result[split] = {
            "images": int(part["ImageID"].nunique()),
            "per_class": {name: {"images": int(part.loc[part["name"] == name, "ImageID"].nunique()),
                                 "boxes": int((part["name"] == name).sum())} for name in classes},
        }
    return result


def convert_to_yolo(raw_dir: str, output_dir: str, classes: list[str], seed: int = 42,
                    split_ratios: tuple[float, float, float] = DEFAULT_SPLIT_RATIOS,
                    include_group_of: bool = True) -> dict:
    """Writes ``images/{train,val,test}``, ``labels/...``, ``dataset.yaml`` and ``stats.json``; returns the stats."""
    started = time.monotonic()
    classes = list(classes)
    boxes, dropped = read_selected_boxes(raw_dir, classes, include_group_of)
    data_dir = os.path.join(raw_dir, oi.DATA_DIR)
    on_disk = {os.path.splitext(n)[0] for n in os.listdir(data_dir) if n.endswith(".jpg")}
    has_image = boxes["ImageID"].isin(on_disk)
    dropped["boxes_without_image"] = int((~has_image).sum())
    boxes = boxes[has_image]
    labels = yolo_lines(boxes)
    dropped["images_without_selected_boxes"] = len(on_disk - set(labels.index))
    splits = assign_splits(list(labels.index), seed, tuple(split_ratios))
    for split in SPLIT_NAMES:
        for kind in ("images", "labels"):
            os.makedirs(os.path.join(output_dir, kind, split), exist_ok=True)
    for image_id, text in labels.items():
        split = splits[image_id]
        _place_image(os.path.join(data_dir, f"{image_id}.jpg"), os.path.join(output_dir, "images", split,
                                                                             f"{image_id}.jpg"))
        with open(os.path.join(output_dir, "labels", split, f"{image_id}.txt"), "w") as f:
            f.write(text)
    with open(os.path.join(output_dir, "dataset.yaml"), "w") as f:
        # No "path": Ultralytics then resolves these relative to the yaml's own folder.
        yaml.safe_dump({"train": "images/train", "val": "images/val", "test": "images/test",
                        "nc": len(classes), "names": classes}, f, sort_keys=False)
    stats = {"classes": classes, "seed": seed, "split_ratios": list(split_ratios), "images": len(labels),
             "boxes": len(boxes), "splits": class_statistics(boxes, splits, classes), "dropped": dropped,
             "seconds": round(time.monotonic() - started, 2)}
    with open(os.path.join(output_dir, "stats.json"), "w") as f:
        json.dump(stats, f, indent=2)
    log.info("%d images, %d boxes -> train/val/test %s; dropped %s", len(labels), len(boxes),
             [stats["splits"][s]["images"] for s in SPLIT_NAMES], dropped)
    return stats


@component(DATA_IMAGE)
def convert(raw_dataset: Input[Dataset], classes: list, seed: int, split_ratios: list, include_group_of: bool,
            dataset: Output[Dataset]):
    """Converts an Open Images V7 raw dataset to a YOLO dataset split train/val/test with a seed.

    Keeps every box of the selected classes (exact display names, ids in the listed order), clamps
    boxes to the image, drops images without one, and writes dataset.yaml (Ultralytics) and stats.json.
    """
    import logging

    from components.convert import convert_to_yolo

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stats = convert_to_yolo(raw_dataset.path, dataset.path, list(classes), seed, tuple(split_ratios),
                            include_group_of)
    dataset.metadata.update({"images": stats["images"], "boxes": stats["boxes"], "seconds": stats["seconds"],
                             "split_images": {s: stats["splits"][s]["images"] for s in stats["splits"]}})
