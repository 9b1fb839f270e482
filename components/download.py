"""Download: an Open Images V7 subset through FiftyOne's dataset zoo, with a quota per class.

FiftyOne's own ``max_samples`` caps the total, so each class is drawn separately (shuffled with the
seed) and the union is kept. The output is a raw dataset in FiftyOne's ``OpenImagesV7Dataset`` layout
that holds only the downloaded images and the CSV rows about them, never Open Images' full CSVs.
"""


import difflib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid

from kfp.dsl import Dataset, Output

from components import openimages as oi
from components.images import DATA_IMAGE, component
from components.storage import S3Url, Storage

log = logging.getLogger(__name__)

# Files that seed a fresh zoo dir so FiftyOne does not fetch them (the demo's mirror, a cache).
METADATA_ENV = "YOLO_KFP_OPEN_IMAGES_METADATA"
RECORD = "download.json"  # what was asked for and what came, carried on to the published model


def check_classes(requested: list[str], known: list[str]) -> None:
    """Refuses names that are not Open Images display names, suggesting the closest ones."""
    if not requested:
        raise ValueError("classes is empty: name at least one Open Images class, e.g. 'Car'")
    duplicates = sorted({c for c in requested if requested.count(c) > 1})
    if duplicates:
        raise ValueError(f"classes lists {duplicates} more than once")
    unknown = [c for c in requested if c not in known]
    if unknown:
        hints = {c: difflib.get_close_matches(c, known, n=3, cutoff=0.6) for c in unknown}
        detail = "; ".join(f"{c!r} (did you mean {', '.join(map(repr, h)) or 'nothing close'}?)"
                           for c, h in hints.items())
        raise ValueError(f"unknown Open Images classes: {detail}")


def _seed_zoo_dir(split_dir: str) -> None:
    source = os.environ.get(METADATA_ENV)
    if not source:
        return
    for name in oi.METADATA_FILES:
        if os.path.exists(os.path.join(source, name)):
            os.makedirs(os.path.dirname(os.path.join(split_dir, name)), exist_ok=True)
            shutil.copyfile(os.path.join(source, name), os.path.join(split_dir, name))


def _metadata_from_cache(cache: str, split: str, split_dir: str) -> list[str]:
    """Fetches the split's metadata files held under ``cache``; returns the names it had."""
    storage, prefix = Storage.from_env(), S3Url.parse(cache).join(split)
    found = []
    for name in oi.METADATA_FILES:
        if storage.exists(prefix.join(name)):
            storage.download_file(prefix.join(name), os.path.join(split_dir, name))
            found.append(name)
    log.info("Open Images metadata from the cache %s: %s", prefix, found or "none yet")
    return found


def _metadata_to_cache(cache: str, split: str, split_dir: str, cached: list[str]) -> None:
    """Stores the metadata files FiftyOne fetched, so that the next run does not fetch them again."""
    storage, prefix = Storage.from_env(), S3Url.parse(cache).join(split)
    for name in oi.METADATA_FILES:
        if name not in cached and os.path.exists(os.path.join(split_dir, name)):
            storage.upload_file(os.path.join(split_dir, name), prefix.join(name))
            log.info("cached %s", prefix.join(name))


def _filter_csv(source: str, target: str, image_ids: set[str]) -> int:
    """Copies the rows of ``source`` whose ImageID is in ``image_ids``, streaming (the train CSV is >2 GB)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv

    with open(source) as f:
        columns = f.readline().strip().split(",")
    convert = csv.ConvertOptions(column_types={c: pa.string() for c in columns}, strings_can_be_null=False)
    reader = csv.open_csv(source, read_options=csv.ReadOptions(block_size=64 << 20), convert_options=convert)
    wanted = pa.array(sorted(image_ids))
    kept = 0
    os.makedirs(os.path.dirname(target), exist_ok=True)
    options = csv.WriteOptions(include_header=False, quoting_style="needed")
    with open(target, "wb") as out:
        out.write((",".join(columns) + "\n").encode())  # pyarrow would quote the header's names
        with csv.CSVWriter(out, reader.schema, write_options=options) as writer:
            for batch in reader:
                rows = batch.filter(pc.is_in(batch.column("ImageID"), value_set=wanted))
                kept += rows.num_rows
                writer.write_batch(rows)
    return kept


def reuse_images(output_dir: str, split_dir: str) -> int:
    """Moves the readable images an earlier, interrupted run left in ``output_dir`` into the zoo dir,
    where FiftyOne counts them as downloaded; corrupt or truncated ones are fetched again."""
    from components.convert import readable

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


def write_raw_subset(split_dir: str, image_ids: set[str], output_dir: str) -> dict:
    """Moves the images of ``image_ids`` and their CSV rows from a zoo split dir into ``output_dir``."""
    os.makedirs(os.path.join(output_dir, oi.DATA_DIR), exist_ok=True)
    for image_id in sorted(image_ids):
        name = f"{image_id}.jpg"
        shutil.move(os.path.join(split_dir, oi.DATA_DIR, name), os.path.join(output_dir, oi.DATA_DIR, name))
    rows = {name: _filter_csv(os.path.join(split_dir, name), os.path.join(output_dir, name), image_ids)
            for name in (oi.DETECTIONS_CSV, oi.IMAGE_IDS_CSV)}
    for name in (oi.CLASSES_CSV, oi.HIERARCHY_JSON):
        shutil.copyfile(os.path.join(split_dir, name), os.path.join(output_dir, name))
    return {"images": len(image_ids), "detection_rows": rows[oi.DETECTIONS_CSV]}


def download_open_images(output_dir: str, classes: list[str], max_samples_per_class: int, split: str,
                         seed: int, metadata_cache: str = "") -> dict:
    """Downloads up to ``max_samples_per_class`` images of each class into ``output_dir`` (raw layout).

    ``metadata_cache`` (an S3 prefix) keeps Open Images' large metadata CSVs between runs. Run again
    on the same ``output_dir`` (same parameters), it fetches only the images it does not have intact.
    The summary returned is also written to ``output_dir/download.json``.
    """
    if split not in oi.SPLITS:
        raise ValueError(f"split must be one of {oi.SPLITS}, not {split!r}")
    if max_samples_per_class <= 0:
        raise ValueError(f"max_samples_per_class must be positive, not {max_samples_per_class}")
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    import fiftyone as fo
    import fiftyone.utils.openimages as fouo
    import fiftyone.zoo as foz

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="oi-zoo-") as zoo_dir:
        # A fresh zoo dir per run: FiftyOne prefers images it already has, which would make the
        # selection depend on earlier runs instead of only on the seed.
        fo.config.dataset_zoo_dir = zoo_dir
        split_dir = oi.split_dir(zoo_dir, split)
        _seed_zoo_dir(split_dir)
        cached = _metadata_from_cache(metadata_cache, split, split_dir) if metadata_cache else []
        check_classes(list(classes), fouo.get_classes(version="v7", dataset_dir=split_dir))
        reused = reuse_images(output_dir, split_dir)
        image_ids: set[str] = set()
        per_class = {}
        for name in classes:
            dataset = foz.load_zoo_dataset(
                oi.ZOO_NAME, split=split, label_types=["detections"], classes=[name],
                max_samples=max_samples_per_class, seed=seed, shuffle=True,
                dataset_name=f"yolo-kfp-{uuid.uuid4().hex}",
            )
            ids = {os.path.splitext(os.path.basename(p))[0] for p in dataset.values("filepath")}
            dataset.delete()
            per_class[name] = len(ids)
            image_ids |= ids
            log.info("%s: %d images (quota %d), %d distinct so far", name, len(ids), max_samples_per_class,
                     len(image_ids))
        if metadata_cache:
            _metadata_to_cache(metadata_cache, split, split_dir, cached)
        summary = write_raw_subset(split_dir, image_ids, output_dir)
    summary.update(split=split, classes=list(classes), max_samples_per_class=max_samples_per_class, seed=seed,
                   images_per_class=per_class, reused_images=reused, seconds=round(time.monotonic() - started, 2))
    with open(os.path.join(output_dir, RECORD), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


@component(DATA_IMAGE)
def download(classes: list, max_samples_per_class: int, split: str, seed: int, open_images_cache: str,
             raw_dataset: Output[Dataset]):
    """Downloads up to max_samples_per_class Open Images V7 images per class (FiftyOne's dataset zoo).

    Writes a raw dataset in FiftyOne's OpenImagesV7Dataset layout, holding only the rows of the
    downloaded images: labels/detections.csv, metadata/{classes.csv,hierarchy.json,image_ids.csv}, and
    data/*.jpg packed into tar shards. open_images_cache (an S3 prefix, optional) keeps Open Images'
    metadata CSVs between runs.
    """
    import logging

    from components.download import download_open_images
    from components.packing import pack_in_place

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    summary = download_open_images(raw_dataset.path, list(classes), max_samples_per_class, split, seed,
                                   open_images_cache)
    pack_in_place(raw_dataset.path, ("data",))
    raw_dataset.metadata.update(summary)
