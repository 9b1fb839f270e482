"""The download's result: the shards' images and the plan's rows joined into one raw dataset in FiftyOne's
``OpenImagesV7Dataset`` layout, the same whatever the number of shards."""

import json
import os
import shutil
import time

from yolo_kfp.data import openimages as oi
from yolo_kfp.data.download_fetch import SHARD_RECORD
from yolo_kfp.data.download_plan import read_plan
from yolo_kfp.data.openimages import RECORD
from yolo_kfp.data.openimages_metadata import copy_metadata


def complete_raw(plan_dir: str, output_dir: str, reused: int, started: float) -> dict:
    """Puts the plan's metadata beside the images in ``output_dir`` (files under data/ or packed in its
    shards); checks every planned image is there and writes ``download.json``, which it returns."""
    from yolo_kfp.infra.packing import packed_files

    plan = read_plan(plan_dir)
    copy_metadata(plan_dir, output_dir)
    planned = {i for ids in plan["shards"].values() for i in ids}
    data_dir = os.path.join(output_dir, oi.DATA_DIR)
    files = [os.path.join(oi.DATA_DIR, n) for n in os.listdir(data_dir)] if os.path.isdir(data_dir) else []
    present = {os.path.basename(name)[:-len(".jpg")] for name in files + packed_files(output_dir)}
    if planned - present:
        raise RuntimeError(f"{len(planned - present)} planned images are missing, e.g. {sorted(planned - present)[:5]}")
    summary = {"images": len(planned), "detection_rows": plan["detection_rows"],
               **{k: plan[k] for k in ("split", "classes", "max_samples_per_class", "seed", "images_per_class")},
               "shards": len(plan["shards"]), "reused_images": reused, "seconds": round(time.monotonic() - started, 2)}
    with open(os.path.join(output_dir, RECORD), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def merge_shards(*, plan_dir: str, shard_dirs: list[str], output_dir: str) -> dict:
    """Joins the shards' images and the plan's metadata into one raw dataset in ``output_dir``.

    Packed shards keep their tar files (linked, or copied across file systems): nothing is unpacked
    and packed again, and the step needs no room for the images twice over. Plain folders (``yolo-kfp
    step`` outputs) have their images copied under data/.
    """
    from yolo_kfp.infra.packing import SHARD_PREFIX, link_or_copy, shards

    started = time.monotonic()
    os.makedirs(output_dir, exist_ok=True)
    carried, reused = 0, 0
    for shard_dir in shard_dirs:
        for archive in shards(shard_dir):
            link_or_copy(archive, os.path.join(output_dir, f"{SHARD_PREFIX}{carried:05d}.tar"))
            carried += 1
        plain = os.path.join(shard_dir, oi.DATA_DIR)
        if os.path.isdir(plain):
            os.makedirs(os.path.join(output_dir, oi.DATA_DIR), exist_ok=True)
            for name in os.listdir(plain):
                shutil.copyfile(os.path.join(plain, name), os.path.join(output_dir, oi.DATA_DIR, name))
        with open(os.path.join(shard_dir, SHARD_RECORD)) as f:
            reused += json.load(f)["reused_images"]
    return complete_raw(plan_dir, output_dir, reused, started)
