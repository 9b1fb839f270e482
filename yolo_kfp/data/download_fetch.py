"""The download's images: one shard of the plan fetched from Open Images' bucket by FiftyOne's code.

Run again on the same output folder, a fetch keeps the images an interrupted run left there intact.
"""

import json
import logging
import os
import shutil
import tempfile
import time

from yolo_kfp.data import fiftyone_openimages
from yolo_kfp.data import openimages as oi
from yolo_kfp.data.download_plan import read_plan
from yolo_kfp.data.openimages_metadata import copy_metadata
from yolo_kfp.infra.image_files import readable

log = logging.getLogger(__name__)

SHARD_RECORD = "shard.json"


def reuse_images(output_dir: str, split_dir: str) -> int:
    """Moves the readable images an earlier, interrupted run left in ``output_dir`` into the zoo dir,
    where FiftyOne counts them as downloaded; corrupt or truncated ones are fetched again."""
    previous = os.path.join(output_dir, oi.DATA_DIR)
    if not os.path.isdir(previous):
        return 0
    target = os.path.join(split_dir, oi.DATA_DIR)
    os.makedirs(target, exist_ok=True)
    kept = 0
    for name in os.listdir(previous):
        if name.endswith(".jpg") and readable(os.path.join(previous, name)):
            shutil.move(os.path.join(previous, name), os.path.join(target, name))
            kept += 1
    log.info("reusing %d images already in %s", kept, previous)
    return kept


def fetch_images(plan_dir: str, image_ids: list[str], output_dir: str) -> int:
    """Downloads ``image_ids`` (of the plan in ``plan_dir``) into ``output_dir/data``; returns how many of
    them an earlier, interrupted run had already left there intact."""
    split = read_plan(plan_dir)["split"]
    with tempfile.TemporaryDirectory(prefix="oi-zoo-") as split_dir:
        copy_metadata(plan_dir, split_dir)  # the plan's rows only: FiftyOne fetches no metadata
        reused = reuse_images(output_dir, split_dir)
        fiftyone_openimages.download_split(split_dir, split, image_ids)
        missing = [i for i in image_ids if not os.path.exists(os.path.join(split_dir, oi.DATA_DIR, f"{i}.jpg"))]
        if missing:
            raise RuntimeError(f"FiftyOne did not download {len(missing)} of {len(image_ids)} images, e.g. "
                               f"{missing[:5]}: are they in Open Images' bucket {oi.BUCKET} under {split}/?")
        os.makedirs(os.path.join(output_dir, oi.DATA_DIR), exist_ok=True)
        for image_id in image_ids:
            name = f"{image_id}.jpg"
            shutil.move(os.path.join(split_dir, oi.DATA_DIR, name), os.path.join(output_dir, oi.DATA_DIR, name))
    return reused


def fetch_shard(*, plan_dir: str, shard: str, output_dir: str) -> dict:
    """Downloads the images of one shard of the plan into ``output_dir/data``; writes ``shard.json``.

    Run again on the same ``output_dir``, it fetches only the images it does not have intact.
    """
    started = time.monotonic()
    image_ids = read_plan(plan_dir)["shards"][shard]
    reused = fetch_images(plan_dir, image_ids, output_dir)
    record = {"shard": shard, "images": len(image_ids), "reused_images": reused,
              "seconds": round(time.monotonic() - started, 2)}
    with open(os.path.join(output_dir, SHARD_RECORD), "w") as f:
        json.dump(record, f, indent=2)
    return record
