"""Download: an Open Images V7 subset with a quota per class, fetched through FiftyOne's download code.

The pipeline runs it in three steps, so that the images are fetched in parallel: ``download_plan``
selects each class's images and cuts them into shards, ``download_fetch`` fetches one shard's images,
and ``download_merge`` joins the shards into one raw dataset holding only the selected images and
their rows. The rows come from the plan in Open Images' order, so the result does not depend on the
split into shards: ``download_open_images`` (everything in one process) writes the same dataset.
On a server that cannot collect a ``ParallelFor``'s outputs, ``download_in_turn`` does the three steps in
one task, a shard at a time, and writes what they write.
"""

import os
import tempfile
import time

from yolo_kfp.data.download_fetch import fetch_images, fetch_shard
from yolo_kfp.data.download_merge import complete_raw, merge_shards
from yolo_kfp.data.download_plan import make_plan


def download_open_images(*, output_dir: str, classes: list[str], max_samples_per_class: int, split: str,
                         seed: int, metadata_cache: str = "") -> dict:
    """Downloads up to ``max_samples_per_class`` images of each class into ``output_dir`` (raw layout), in one
    process: the same dataset as the pipeline's shards merged.

    ``metadata_cache`` (an S3 prefix) keeps Open Images' large metadata CSVs between runs. Run again
    on the same ``output_dir`` (same parameters), it fetches only the images it does not have intact.
    The summary returned is also written to ``output_dir/download.json``.
    """
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="download-plan-") as plan_dir:
        plan = make_plan(plan_dir=plan_dir, classes=classes, max_samples_per_class=max_samples_per_class, split=split,
                         seed=seed, shard_size=max_samples_per_class, metadata_cache=metadata_cache)
        reused = fetch_images(plan_dir, sorted(i for ids in plan["shards"].values() for i in ids), output_dir)
        return complete_raw(plan_dir, output_dir, reused, started)


def download_in_turn(*, output_dir: str, classes: list[str], max_samples_per_class: int, split: str, seed: int,
                     shard_size: int, metadata_cache: str = "") -> dict:
    """The pipeline's plan, shard fetches and merge in one process: each shard fetched and packed in turn (one
    shard's images in FiftyOne's hands at a time, as in a download-shard pod), then merged into ``output_dir``.
    The same packed raw dataset and summary as merge-download's."""
    from yolo_kfp.infra.packing import pack_in_place

    with tempfile.TemporaryDirectory(prefix="download-") as work:
        plan_dir = os.path.join(work, "plan")
        plan = make_plan(plan_dir=plan_dir, classes=classes, max_samples_per_class=max_samples_per_class, split=split,
                         seed=seed, shard_size=shard_size, metadata_cache=metadata_cache)
        shard_dirs = [os.path.join(work, f"shard-{n}") for n in range(len(plan["shards"]))]
        # in the plan's order, as the ParallelFor's
        for shard, shard_dir in zip(plan["shards"], shard_dirs, strict=True):
            fetch_shard(plan_dir=plan_dir, shard=shard, output_dir=shard_dir)
            pack_in_place(shard_dir, ("data",))
        return merge_shards(plan_dir=plan_dir, shard_dirs=shard_dirs, output_dir=output_dir)
