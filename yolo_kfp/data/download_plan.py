"""The download's plan: which Open Images images of each class, cut into shards fetched in parallel.

The selection is ours and deterministic: each class's images from the split's ``detections.csv`` (sorted,
shuffled with the seed and the class name, the first ``max_samples_per_class``); Open Images' CSV rows of
the selected images are kept, in Open Images' order, and the images cut into shards of ``shard_size`` (an
image wanted by two classes is fetched once).
"""

import json
import logging
import os
import random
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from yolo_kfp.data import openimages as oi
from yolo_kfp.data.csv_scan import CsvScan, keep_rows, scan_csv
from yolo_kfp.data.openimages import check_classes
from yolo_kfp.data.openimages_metadata import class_mids, metadata_dir
from yolo_kfp.params.validation import check, parameter_problems

log = logging.getLogger(__name__)

PLAN = "plan.json"  # the selection and its shards, beside the selected images' metadata


def draw(count: int, quota: int, seed: int, name: str) -> list[int]:
    """A class's draw, as positions among its ``count`` candidates sorted: shuffled with the seed and the class
    name, the first ``quota`` (the shuffle of a list depends only on its length)."""
    order = list(range(count))
    random.Random(f"{seed}:{name}").shuffle(order)
    return order[:quota]


def select_scanned(scan: CsvScan, mids: dict[str, str], quota: int, seed: int) -> dict[str, list[str]]:
    """Each class's draw (``mids``: class name to MID): its candidates in the scan of detections.csv sorted,
    shuffled with the seed and the class name, the first ``quota``; no Python object per candidate."""
    import pyarrow as pa

    selected = {}
    for name, mid in mids.items():
        ordered = scan.candidates(mid)
        selected[name] = ordered.take(pa.array(draw(len(ordered), quota, seed, name), pa.int64())).to_pylist()
    return selected


def cut_shards(selected: dict[str, list[str]], shard_size: int) -> dict[str, list[str]]:
    """The selected images, class after class (an image drawn for two classes once), in chunks of
    ``shard_size``: a download smaller than a shard stays one step, a larger one fans out evenly."""
    ordered = list(dict.fromkeys(i for ids in selected.values() for i in sorted(ids)))
    return {f"shard {n // shard_size}": ordered[n:n + shard_size] for n in range(0, len(ordered), shard_size)}


def make_plan(*, plan_dir: str, classes: list[str], max_samples_per_class: int, split: str, seed: int,
              shard_size: int, metadata_cache: str = "") -> dict:
    """Selects up to ``max_samples_per_class`` images of each class and cuts them into shards.

    Writes ``plan_dir``: the selected images' rows of Open Images' metadata (raw layout, no images) and
    ``plan.json`` (the shards' image ids). ``metadata_cache`` (an S3 prefix) keeps Open Images' large
    metadata CSVs between runs.
    """
    check(parameter_problems({"classes": list(classes), "split": split, "max_samples_per_class": max_samples_per_class,
                              "download_shard_size": shard_size}))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="oi-metadata-") as scratch:
        split_dir = metadata_dir(scratch, split, metadata_cache)
        mids = class_mids(split_dir)
        check_classes(list(classes), list(mids))
        detections, image_list = (os.path.join(split_dir, name) for name in (oi.DETECTIONS_CSV, oi.IMAGE_IDS_CSV))
        scan = scan_csv(detections, sorted({mids[name] for name in classes}))
        # The image list is read while this thread draws (its parsing leaves the GIL free, the draw needs it).
        with ThreadPoolExecutor(1) as background:
            listing = background.submit(scan_csv, image_list)
            selected = select_scanned(scan, {name: mids[name] for name in classes}, max_samples_per_class, seed)
            shards = cut_shards(selected, shard_size)
            image_ids = {i for ids in shards.values() for i in ids}
            rows = {oi.DETECTIONS_CSV: keep_rows(scan, detections, os.path.join(plan_dir, oi.DETECTIONS_CSV),
                                                 image_ids),
                    oi.IMAGE_IDS_CSV: keep_rows(listing.result(), image_list, os.path.join(plan_dir, oi.IMAGE_IDS_CSV),
                                                image_ids)}
        for name in (oi.CLASSES_CSV, oi.HIERARCHY_JSON):
            shutil.copyfile(os.path.join(split_dir, name), os.path.join(plan_dir, name))
    plan = {"split": split, "classes": list(classes), "max_samples_per_class": max_samples_per_class, "seed": seed,
            "images_per_class": {name: len(ids) for name, ids in selected.items()}, "images": len(image_ids),
            "detection_rows": rows[oi.DETECTIONS_CSV], "shard_size": shard_size, "shards": shards,
            "seconds": round(time.monotonic() - started, 2)}
    for name, ids in selected.items():
        log.info("%s: %d images (quota %d)", name, len(ids), max_samples_per_class)
    with open(os.path.join(plan_dir, PLAN), "w") as f:
        json.dump(plan, f, indent=2)
    return plan


def read_plan(plan_dir: str) -> dict:
    with open(os.path.join(plan_dir, PLAN)) as f:
        return json.load(f)
