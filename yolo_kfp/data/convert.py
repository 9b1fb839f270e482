"""Convert: Open Images boxes to a YOLO dataset with a deterministic train/val/test split.

Every box of every selected class is kept (an image with a car and a bicycle keeps both), boxes of
other classes are dropped (class display names match exactly, so "Bicycle wheel" is not "Bicycle"),
images left without a box are dropped, coordinates are clamped to [0, 1], and class ids follow the
order the user listed the classes in. The work is vectorized with pandas; only files are per image.
"""

import json
import logging
import os
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import yaml

from yolo_kfp.data import openimages as oi
from yolo_kfp.data.openimages import RECORD, check_classes
from yolo_kfp.infra.image_files import readable
from yolo_kfp.infra.markdown_text import inert
from yolo_kfp.infra.packing import link_or_copy
from yolo_kfp.params.run_parameters import BY_NAME
from yolo_kfp.params.validation import check, parameter_problems

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")
BOX_COLUMNS = ["XMin", "XMax", "YMin", "YMax"]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def split_counts(total: int, ratios: Sequence[float]) -> tuple[int, int, int]:
    """Images per split (``ratios``: train, val, test): train and val rounded half up, test the rest; val and
    test get one at least."""
    if total < 3:
        raise ValueError(f"only {total} images have boxes of the selected classes; at least 3 are needed")
    val = max(1, int(np.floor(total * ratios[1] + 0.5)))
    test = max(1, total - int(np.floor(total * ratios[0] + 0.5)) - val)
    return total - val - test, val, test


def assign_splits(image_ids: list[str], seed: int, ratios: Sequence[float]) -> dict[str, str]:
    """Maps each image id to a split; depends only on the set of ids and the seed."""
    ordered = sorted(image_ids)
    permuted = [ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))]
    n_train, n_val, _ = split_counts(len(ordered), ratios)
    bounds = {"train": permuted[:n_train], "val": permuted[n_train:n_train + n_val],
              "test": permuted[n_train + n_val:]}
    return {image_id: split for split, ids in bounds.items() for image_id in ids}


def clean_boxes(boxes: pd.DataFrame, dropped: dict) -> pd.DataFrame:
    """Drops boxes with missing or inverted coordinates, clamps the rest to [0, 1], drops empty ones."""
    coords = boxes[BOX_COLUMNS].apply(pd.to_numeric, errors="coerce")
    invalid = coords.isna().any(axis=1) | (coords["XMin"] > coords["XMax"]) | (coords["YMin"] > coords["YMax"])
    clamped = coords[~invalid].clip(0.0, 1.0)
    empty = (clamped["XMax"] <= clamped["XMin"]) | (clamped["YMax"] <= clamped["YMin"])
    _count(dropped, invalid_boxes=int(invalid.sum()), boxes_outside_image=int(empty.sum()),
           boxes_clamped=int((clamped != coords[~invalid]).any(axis=1).sum()))
    kept = boxes[~invalid][~empty.to_numpy()].copy()
    kept[BOX_COLUMNS] = clamped[~empty.to_numpy()]
    return kept


def _count(dropped: dict, **counts: int) -> None:
    for key, value in counts.items():
        dropped[key] = dropped.get(key, 0) + value


def images_in(folder: str) -> dict[str, str]:
    """Image id (file stem) -> path, for every image file under ``folder``."""
    return {os.path.splitext(name)[0]: os.path.join(root, name) for root, _, names in os.walk(folder)
            for name in names if name.lower().endswith(IMAGE_EXTENSIONS)}


def with_images(boxes: pd.DataFrame, images: dict[str, str], dropped: dict) -> pd.DataFrame:
    """Adds each box's image path; drops unreadable images, boxes without an image, and counts images
    without a box."""
    broken = {image_id for image_id in set(boxes["ImageID"]) & set(images) if not readable(images[image_id])}
    _count(dropped, unreadable_images=len(broken))
    if broken:
        log.warning("dropped %d unreadable images (zero-byte, corrupt or truncated): %s", len(broken),
                    sorted(broken)[:10])
    images = {k: v for k, v in images.items() if k not in broken}
    boxes = boxes.assign(image_path=boxes["ImageID"].map(images))
    _count(dropped, boxes_without_image=int(boxes["image_path"].isna().sum()),
           images_without_selected_boxes=len(set(images) - set(boxes["ImageID"])))
    return boxes[boxes["image_path"].notna()]


def read_open_images(raw_dir: str, classes: list[str], include_group_of: bool, dropped: dict) -> pd.DataFrame:
    """The boxes of the selected classes in an Open Images V7 layout, with class ids and image paths."""
    missing = oi.missing_files(raw_dir)
    if missing:
        raise FileNotFoundError(f"{raw_dir} is not an Open Images V7 raw dataset: missing {', '.join(missing)}")
    names = pd.read_csv(os.path.join(raw_dir, oi.CLASSES_CSV), header=None, names=["mid", "name"], dtype=str)
    check_classes(list(classes), names["name"].tolist())
    class_of_mid = {mid: classes.index(name) for mid, name in names.itertuples(index=False) if name in classes}
    boxes = pd.read_csv(os.path.join(raw_dir, oi.DETECTIONS_CSV), usecols=["ImageID", "LabelName", "IsGroupOf",
                                                                            *BOX_COLUMNS],
                        dtype={"ImageID": str, "LabelName": str})
    selected = boxes["LabelName"].isin(class_of_mid.keys())
    _count(dropped, boxes_of_other_classes=int((~selected).sum()))
    boxes = boxes[selected]
    if not include_group_of:
        group_of = boxes["IsGroupOf"].fillna(0).astype(int) == 1
        _count(dropped, group_of_boxes=int(group_of.sum()))
        boxes = boxes[~group_of]
    boxes = clean_boxes(boxes, dropped)
    boxes["class_id"] = boxes["LabelName"].map(class_of_mid).astype(int)
    return with_images(boxes, images_in(os.path.join(raw_dir, oi.DATA_DIR)), dropped)


def yolo_class_names(folder: str) -> list[str]:
    """The class names of a YOLO-layout folder, from its data.yaml / dataset.yaml or classes.txt."""
    for name in ("data.yaml", "dataset.yaml"):
        if os.path.exists(os.path.join(folder, name)):
            with open(os.path.join(folder, name)) as f:
                names = yaml.safe_load(f).get("names", [])
            return [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
    if os.path.exists(os.path.join(folder, "classes.txt")):
        with open(os.path.join(folder, "classes.txt")) as f:
            return [line.strip() for line in f if line.strip()]
    raise FileNotFoundError(f"{folder} is in YOLO layout but names no classes: add data.yaml or classes.txt")


def read_yolo(folder: str, classes: list[str], dropped: dict) -> pd.DataFrame:
    """The boxes of the selected classes in a YOLO layout (images/, labels/), mapped by class name.

    Image ids get the prefix ``extra_`` so that they cannot collide with Open Images ids.
    """
    their_names = yolo_class_names(folder)
    images = {f"extra_{k}": v for k, v in images_in(os.path.join(folder, "images")).items()}
    rows = []
    # One label file per image (small, newly labelled sets): polygons and malformed lines are skipped.
    for root, _, names in os.walk(os.path.join(folder, "labels")):
        for name in names:
            if not name.endswith(".txt"):
                continue
            with open(os.path.join(root, name)) as f:
                for line in f.read().split("\n"):
                    fields = line.split()
                    if len(fields) == 5:
                        rows.append([f"extra_{name[:-4]}", *fields])
                    elif fields:
                        _count(dropped, unsupported_label_lines=1)
    frame = pd.DataFrame(rows, columns=["ImageID", "their_class", "cx", "cy", "w", "h"])
    values = frame[["their_class", "cx", "cy", "w", "h"]].apply(pd.to_numeric, errors="coerce")
    their_id = values["their_class"].fillna(-1).astype(int)
    mapping = {i: classes.index(n) for i, n in enumerate(their_names) if n in classes}
    frame["class_id"] = their_id.map(mapping)
    _count(dropped, boxes_of_other_classes=int(frame["class_id"].isna().sum()))
    frame = frame[frame["class_id"].notna()].astype({"class_id": int})
    values = values.loc[frame.index]
    frame = frame.assign(XMin=values["cx"] - values["w"] / 2, XMax=values["cx"] + values["w"] / 2,
                         YMin=values["cy"] - values["h"] / 2, YMax=values["cy"] + values["h"] / 2)
    return with_images(clean_boxes(frame, dropped), images, dropped)


def read_extra(folder: str, classes: list[str], include_group_of: bool, dropped: dict) -> pd.DataFrame:
    """Boxes of a user's own data, in Open Images or YOLO layout."""
    if os.path.exists(os.path.join(folder, oi.DETECTIONS_CSV)):
        return read_open_images(folder, classes, include_group_of, dropped)
    if os.path.isdir(os.path.join(folder, "images")) and os.path.isdir(os.path.join(folder, "labels")):
        return read_yolo(folder, classes, dropped)
    raise FileNotFoundError(f"{folder} is neither Open Images layout (labels/detections.csv) nor YOLO layout "
                            "(images/, labels/)")


def yolo_lines(boxes: pd.DataFrame) -> pd.Series:
    """``class cx cy w h`` per box, joined into one label file text per ImageID."""
    boxes = boxes.sort_values("ImageID", kind="stable")
    x0, x1, y0, y1 = (boxes[c].to_numpy() for c in BOX_COLUMNS)
    lines = [f"{c} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}" for c, cx, cy, w, h in
             zip(boxes["class_id"].tolist(), ((x0 + x1) / 2).tolist(), ((y0 + y1) / 2).tolist(),
                 (x1 - x0).tolist(), (y1 - y0).tolist(), strict=True)]
    image_ids, starts = np.unique(boxes["ImageID"].to_numpy(), return_index=True)
    ends = [*starts[1:], len(lines)]
    return pd.Series(["\n".join(lines[a:b]) + "\n" for a, b in zip(starts, ends, strict=True)], index=image_ids,
                     dtype=object)


def write_file(path: str, data: bytes) -> None:
    """Writes a small file unbuffered: a quarter faster than ``open`` for the many label files of a conversion."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


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


def check_every_class_present(boxes: pd.DataFrame, classes: list[str], allow_missing: bool) -> None:
    missing = [name for i, name in enumerate(classes) if not (boxes["class_id"] == i).any()]
    if not missing:
        return
    message = f"no image has a box of {missing}: the model could not learn them"
    if not allow_missing:
        raise ValueError(f"{message} (allow_missing_classes=true trains on the others)")
    log.warning(message)


def convert_to_yolo(*, raw_dir: str, output_dir: str, classes: list[str], seed: int = 42,
                    split_ratios: Sequence[float] = tuple(BY_NAME["split_ratios"].default),
                    include_group_of: bool = True, extra_dirs: tuple[str, ...] = (),
                    allow_missing_classes: bool = False) -> dict:
    """Writes ``images/{train,val,test}``, ``labels/...``, ``dataset.yaml`` and ``stats.json``; returns the stats.

    ``extra_dirs`` hold a user's own images and labels (Open Images or YOLO layout), merged in and
    split together with the rest.
    """
    check(parameter_problems({"classes": list(classes), "split_ratios": list(split_ratios)}))
    started = time.monotonic()
    classes, dropped = list(classes), {}
    parts = [read_open_images(raw_dir, classes, include_group_of, dropped)]
    parts += [read_extra(folder, classes, include_group_of, dropped) for folder in extra_dirs]
    boxes = pd.concat(parts, ignore_index=True)
    check_every_class_present(boxes, classes, allow_missing_classes)
    labels = yolo_lines(boxes)
    image_of = boxes.groupby("ImageID")["image_path"].first().to_dict()  # a dict: a Series lookup costs 16 µs
    splits = assign_splits(list(labels.index), seed, tuple(split_ratios))
    for split in SPLIT_NAMES:
        for kind in ("images", "labels"):
            os.makedirs(os.path.join(output_dir, kind, split), exist_ok=True)
    for image_id, text in zip(labels.index.tolist(), labels.tolist(), strict=True):
        split, source = splits[image_id], image_of[image_id]
        link_or_copy(source, os.path.join(output_dir, "images", split, image_id + os.path.splitext(source)[1]))
        write_file(os.path.join(output_dir, "labels", split, f"{image_id}.txt"), text.encode())
    with open(os.path.join(output_dir, "dataset.yaml"), "w") as f:
        # No "path": Ultralytics then resolves these relative to the yaml's own folder.
        yaml.safe_dump({"train": "images/train", "val": "images/val", "test": "images/test",
                        "nc": len(classes), "names": classes}, f, sort_keys=False)
    stats = {"classes": classes, "seed": seed, "split_ratios": list(split_ratios), "images": len(labels),
             "boxes": len(boxes), "extra_images": int(sum(p["ImageID"].nunique() for p in parts[1:])),
             "splits": class_statistics(boxes, splits, classes), "box_sizes": box_sizes(boxes, classes),
             "dropped": dropped,
             "source": _download_record(raw_dir), "seconds": round(time.monotonic() - started, 2)}
    with open(os.path.join(output_dir, "stats.json"), "w") as f:
        json.dump(stats, f, indent=2)
    log.info("%d images, %d boxes -> train/val/test %s; dropped %s", len(labels), len(boxes),
             [stats["splits"][s]["images"] for s in SPLIT_NAMES], dropped)
    return stats


BOX_SIZES = {"small (< 10% of the image side)": 0.1, "medium (10-30%)": 0.3, "large (> 30%)": float("inf")}


def box_sizes(boxes: pd.DataFrame, classes: list[str]) -> dict:
    """Boxes per class by size: the square root of their area as a share of the image."""
    side = np.sqrt((boxes["XMax"] - boxes["XMin"]) * (boxes["YMax"] - boxes["YMin"]))
    bucket = pd.cut(side, [0.0, *BOX_SIZES.values()], labels=list(BOX_SIZES), include_lowest=True)
    counts = pd.crosstab(boxes["class_id"], bucket).reindex(index=range(len(classes)), columns=list(BOX_SIZES),
                                                            fill_value=0)
    return {name: {size: int(n) for size, n in row.items()}
            for name, (_, row) in zip(classes, counts.iterrows(), strict=True)}


def dataset_markdown(stats: dict) -> str:
    """The dataset report the KFP UI renders: counts per class and split, box sizes, what was dropped."""
    classes, splits = stats["classes"], stats["splits"]
    lines = [f"# Dataset: {stats['images']} images, {stats['boxes']} boxes", "",
             f"Split train/val/test {stats['split_ratios']} with seed {stats['seed']}"
             + (f"; {stats['extra_images']} images from extra_data." if stats.get("extra_images") else "."), "",
             "| class | " + " | ".join(f"{s} images | {s} boxes" for s in SPLIT_NAMES) + " |",
             "|---|" + "---:|" * (2 * len(SPLIT_NAMES))]
    for name in classes:
        cells = [f"{splits[s]['per_class'][name]['images']} | {splits[s]['per_class'][name]['boxes']}"
                 for s in SPLIT_NAMES]
        lines.append(f"| {inert(name)} | " + " | ".join(cells) + " |")
    lines += ["", "## Box sizes", "", "| class | " + " | ".join(BOX_SIZES) + " |", "|---|" + "---:|" * len(BOX_SIZES)]
    lines += [f"| {inert(name)} | " + " | ".join(str(n) for n in stats["box_sizes"][name].values()) + " |"
              for name in classes]
    lines += ["", "## Dropped", "", *(f"- {key.replace('_', ' ')}: {n}" for key, n in stats["dropped"].items())]
    return "\n".join(lines) + "\n"


def _download_record(raw_dir: str) -> dict:
    path = os.path.join(raw_dir, RECORD)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)
