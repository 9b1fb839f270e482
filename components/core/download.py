"""Download: an Open Images V7 subset with a quota per class, fetched through FiftyOne's download code.

The selection is ours and deterministic, so that it can be cut into shards fetched in parallel:
``make_plan`` takes each class's images from the split's ``detections.csv`` (sorted, shuffled with the
seed and the class name, the first ``max_samples_per_class``), keeps Open Images' CSV rows of the
selected images and cuts them into shards of ``shard_size`` images (an image wanted by two classes is
fetched once). ``fetch_shard`` downloads one shard's images with FiftyOne (Open Images' S3 bucket), and
``merge_shards`` joins the shards into one raw dataset in FiftyOne's ``OpenImagesV7Dataset`` layout
holding only the selected images and their rows. The rows come from the plan in Open Images' order, so
the result does not depend on the split into shards: ``download_open_images`` (everything in one
process) writes the same dataset.
"""


import csv
import json
import logging
import os
import random
import shutil
import tempfile
import time

from components.core import openimages as oi
from components.core.image_files import readable
from components.core.openimages import RECORD, check_classes
from components.core.storage import S3Url, Storage
from components.core.validation import check, parameter_problems

log = logging.getLogger(__name__)

# Files that seed a fresh zoo dir so FiftyOne does not fetch them (the demo's mirror, a cache).
METADATA_ENV = "YOLO_KFP_OPEN_IMAGES_METADATA"
PLAN = "plan.json"  # the selection and its shards, beside the selected images' metadata
SHARD_RECORD = "shard.json"


def _copy_metadata(source: str, split_dir: str) -> None:
    """Copies the metadata files ``source`` has into ``split_dir``, where FiftyOne will not fetch them."""
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


def _fiftyone_download(split_dir: str, split: str, image_ids: list[str]) -> None:
    """FiftyOne's Open Images download (what its zoo runs, without importing a dataset): fetches the
    split's metadata files that ``split_dir`` lacks, then the images of ``image_ids`` it does not have."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    import fiftyone.utils.openimages as fouo

    fouo.download_open_images_split(split_dir, split, version="v7", label_types=["detections"],
                                    image_ids=image_ids)


def _read_csv(path: str, columns: list[str]):
    """A streaming reader of ``columns`` of an Open Images CSV, every value a string (the train CSV is >2 GB)."""
    import pyarrow as pa
    from pyarrow import csv as pacsv

    convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in columns}, include_columns=columns,
                                   strings_can_be_null=False)
    return pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=64 << 20), convert_options=convert)


def _filter_csv(source: str, target: str, image_ids: set[str]) -> int:
    """Copies the rows of ``source`` whose ImageID is in ``image_ids``, in their order, streaming."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv as pacsv

    with open(source) as f:
        columns = f.readline().strip().split(",")
    reader = _read_csv(source, columns)
    wanted = pa.array(sorted(image_ids))
    kept = 0
    os.makedirs(os.path.dirname(target), exist_ok=True)
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    with open(target, "wb") as out:
        out.write((",".join(columns) + "\n").encode())  # pyarrow would quote the header's names
        with pacsv.CSVWriter(out, reader.schema, write_options=options) as writer:
            for batch in reader:
                rows = batch.filter(pc.is_in(batch.column("ImageID"), value_set=wanted))
                kept += rows.num_rows
                writer.write_batch(rows)
    return kept


def images_by_label(detections_csv: str, labels: set[str]) -> dict[str, set[str]]:
    """The ImageIDs that have a box of each of ``labels`` (MIDs), streaming."""
    import pyarrow as pa
    import pyarrow.compute as pc

    found: dict[str, set[str]] = {label: set() for label in labels}
    for batch in _read_csv(detections_csv, ["ImageID", "LabelName"]):
        rows = batch.filter(pc.is_in(batch.column("LabelName"), value_set=pa.array(sorted(labels))))
        for image_id, label in zip(rows.column("ImageID").to_pylist(), rows.column("LabelName").to_pylist()):
            found[label].add(image_id)
    return found


def select_images(candidates: dict[str, set[str]], quota: int, seed: int) -> dict[str, list[str]]:
    """Each class's draw: its candidates sorted, shuffled with the seed and the class name, the first ``quota``."""
    selected = {}
    for name, image_ids in candidates.items():
        ordered = sorted(image_ids)
        random.Random(f"{seed}:{name}").shuffle(ordered)
        selected[name] = ordered[:quota]
    return selected


def cut_shards(selected: dict[str, list[str]], shard_size: int) -> dict[str, list[str]]:
    """The selected images, class after class (an image drawn for two classes once), in chunks of
    ``shard_size``: a download smaller than a shard stays one step, a larger one fans out evenly."""
    ordered = list(dict.fromkeys(i for ids in selected.values() for i in sorted(ids)))
    return {f"shard {n // shard_size}": ordered[n:n + shard_size] for n in range(0, len(ordered), shard_size)}


def _class_mids(split_dir: str) -> dict[str, str]:
    with open(os.path.join(split_dir, oi.CLASSES_CSV)) as f:
        return {name: mid for mid, name in csv.reader(f)}


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
    with tempfile.TemporaryDirectory(prefix="oi-metadata-") as split_dir:
        if os.environ.get(METADATA_ENV):
            _copy_metadata(os.environ[METADATA_ENV], split_dir)
        cached = _metadata_from_cache(metadata_cache, split, split_dir) if metadata_cache else []
        if oi.missing_files(split_dir):  # FiftyOne fetches them (importing it alone takes seconds)
            _fiftyone_download(split_dir, split, [])
        mids = _class_mids(split_dir)
        check_classes(list(classes), list(mids))
        if metadata_cache:
            _metadata_to_cache(metadata_cache, split, split_dir, cached)
        found = images_by_label(os.path.join(split_dir, oi.DETECTIONS_CSV), {mids[name] for name in classes})
        selected = select_images({name: found[mids[name]] for name in classes}, max_samples_per_class, seed)
        shards = cut_shards(selected, shard_size)
        image_ids = {i for ids in shards.values() for i in ids}
        rows = {name: _filter_csv(os.path.join(split_dir, name), os.path.join(plan_dir, name), image_ids)
                for name in (oi.DETECTIONS_CSV, oi.IMAGE_IDS_CSV)}
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
        _copy_metadata(plan_dir, split_dir)  # the plan's rows only: FiftyOne fetches no metadata
        reused = reuse_images(output_dir, split_dir)
        _fiftyone_download(split_dir, split, image_ids)
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


def complete_raw(plan_dir: str, output_dir: str, reused: int, started: float) -> dict:
    """Puts the plan's metadata beside the images in ``output_dir`` (files under data/ or packed in its
    shards); checks every planned image is there and writes ``download.json``, which it returns."""
    from components.core.packing import packed_files

    plan = read_plan(plan_dir)
    _copy_metadata(plan_dir, output_dir)
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
    from components.core.packing import SHARD_PREFIX, link_or_copy, shards

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
