"""Convert: Open Images boxes, and those of the exports under extra_data, to a YOLO dataset with a deterministic
train/val/test split.

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

from yolo_kfp.data.boxes import BOX_COLUMNS
from yolo_kfp.data.exports import Source, read_extra_data
from yolo_kfp.data.openimages import RECORD
from yolo_kfp.data.openimages_boxes import read_open_images
from yolo_kfp.infra.markdown_text import inert
from yolo_kfp.infra.packing import link_or_copy
from yolo_kfp.params.run_parameters import BY_NAME
from yolo_kfp.params.validation import check, parameter_problems

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")


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


def read_sources(raw_dir: str, classes: list[str], include_group_of: bool, extra_dirs: tuple[str, ...],
                 extra_names: tuple[str, ...], extra_data_format: str, class_map: dict) -> tuple[list[Source], list]:
    """The download's boxes and those of every export under ``extra_dirs``, each a ``Source``; the exports are read
    (and refused) first. Also returns the names of ``class_map`` no export has."""
    extra, unused = read_extra_data(extra_dirs, extra_names or extra_dirs, classes=classes, class_map=class_map,
                                    extra_data_format=extra_data_format, include_group_of=include_group_of)
    downloaded = Source("open_images", ".", "openimages")
    downloaded.boxes = read_open_images(raw_dir, classes, include_group_of, downloaded.dropped)
    return [downloaded, *extra], unused


def _total(sources: list[Source]) -> dict:
    dropped: dict[str, int] = {}
    for source in sources:
        for key, value in source.dropped.items():
            dropped[key] = dropped.get(key, 0) + value
    return dropped


def convert_to_yolo(*, raw_dir: str, output_dir: str, classes: list[str], seed: int = 42,
                    split_ratios: Sequence[float] = tuple(BY_NAME["split_ratios"].default),
                    include_group_of: bool = True, extra_dirs: tuple[str, ...] = (),
                    extra_names: tuple[str, ...] = (), extra_data_format: str = "", class_map: dict | None = None,
                    allow_missing_classes: bool = False) -> dict:
    """Writes ``images/{train,val,test}``, ``labels/...``, ``dataset.yaml`` and ``stats.json``; returns the stats.

    ``extra_dirs`` hold a user's own labelled exports (``yolo_kfp.data.exports``: COCO, VOC, CVAT, YOLO or Open
    Images; ``extra_data_format`` names theirs, ``class_map`` maps their class names), shown in refusals and the
    stats as ``extra_names`` (their URLs); they are merged in and split together with the rest. Nothing is written
    when an export is refused.
    """
    class_map = dict(class_map or {})
    check(parameter_problems({"classes": list(classes), "split_ratios": list(split_ratios), "class_map": class_map,
                              "extra_data_format": extra_data_format}))
    started = time.monotonic()
    classes = list(classes)
    sources, unused = read_sources(raw_dir, classes, include_group_of, tuple(extra_dirs), tuple(extra_names),
                                   extra_data_format, class_map)
    boxes = pd.concat([s.boxes for s in sources], ignore_index=True)
    check_every_class_present(boxes, classes, allow_missing_classes)
    labels = yolo_lines(boxes)
    splits = assign_splits(list(labels.index), seed, tuple(split_ratios))
    write_dataset(output_dir, boxes, labels, splits, classes)
    stats = {"classes": classes, "seed": seed, "split_ratios": list(split_ratios), "images": len(labels),
             "boxes": len(boxes), "extra_images": int(sum(s.summary(classes)["images"] for s in sources[1:])),
             "splits": class_statistics(boxes, splits, classes), "box_sizes": box_sizes(boxes, classes),
             "dropped": _total(sources), "sources": {s.name: s.summary(classes) for s in sources},
             **({"class_map_unused": unused} if unused else {}),
             "source": _download_record(raw_dir), "seconds": round(time.monotonic() - started, 2)}
    with open(os.path.join(output_dir, "stats.json"), "w") as f:
        json.dump(stats, f, indent=2)
    log.info("%d images, %d boxes -> train/val/test %s; dropped %s", len(labels), len(boxes),
             [stats["splits"][s]["images"] for s in SPLIT_NAMES], stats["dropped"])
    return stats


def write_dataset(output_dir: str, boxes: pd.DataFrame, labels: pd.Series, splits: dict[str, str],
                  classes: list[str]) -> None:
    """Each image (linked) and its label file in its split's folders, and ``dataset.yaml``."""
    image_of = boxes.groupby("ImageID")["image_path"].first().to_dict()  # a dict: a Series lookup costs 16 µs
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
    return "\n".join(lines + sources_markdown(stats)) + "\n"


def _dropped_text(dropped: dict) -> str:
    """What a source dropped, in short: "3 boxes of other classes (person 2, dog 1), 1 unreadable images"."""
    other = dropped.get("other_classes", {})
    parts = [f"{n} {key.replace('_', ' ')}" + (" (" + ", ".join(f"{k} {v}" for k, v in other.items()) + ")"
                                               if key == "boxes_of_other_classes" and other else "")
             for key, n in dropped.items() if key != "other_classes" and n]
    return ", ".join(parts) or "nothing"


def source_summaries(stats: dict) -> dict:
    """Each source in a line of the run's metadata: its format, images and boxes it gave, boxes it dropped."""
    return {name: {"format": s["format"], "images": s["images"], "boxes": sum(s["boxes"].values()),
                   "dropped": _dropped_text(s["dropped"])} for name, s in stats.get("sources", {}).items()}


def sources_markdown(stats: dict) -> list[str]:
    """The report's table of sources: each one's format, images and boxes per class it gave, what it dropped."""
    classes, sources = stats["classes"], stats.get("sources", {})
    if not sources:  # stats of an earlier version
        return []
    lines = ["", "## Sources", "", "| source | format | images | " + " | ".join(inert(c) for c in classes)
             + " | dropped |", "|---|---|---:|" + "---:|" * len(classes) + "---|"]
    for name, source in sources.items():
        cells = [inert(name), source["format"], str(source["images"]), *(str(source["boxes"][c]) for c in classes),
                 inert(_dropped_text(source["dropped"]))]
        lines.append("| " + " | ".join(cells) + " |")
    if stats.get("class_map_unused"):
        lines += ["", f"class_map names that no export has: {inert(', '.join(stats['class_map_unused']))}"]
    return lines


def _download_record(raw_dir: str) -> dict:
    path = os.path.join(raw_dir, RECORD)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)
