"""A split's Open Images metadata files (``openimages.METADATA_FILES``), from the nearest place that has them.

In order: a local mirror (the demo's, named by ``METADATA_ENV``), an S3 cache a run fills for the next,
and Open Images itself through FiftyOne's download code (``fiftyone_openimages``).
"""

import csv
import logging
import os
import shutil

from yolo_kfp.data import fiftyone_openimages
from yolo_kfp.data import openimages as oi
from yolo_kfp.infra.storage import S3Url, Storage

log = logging.getLogger(__name__)

# Files that seed a fresh zoo dir so FiftyOne does not fetch them (the demo's mirror, a cache).
METADATA_ENV = "YOLO_KFP_OPEN_IMAGES_METADATA"


def copy_metadata(source: str, split_dir: str) -> None:
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


def fetch_metadata(split_dir: str, split: str) -> None:
    """Fetches the split's metadata files that ``split_dir`` lacks from where FiftyOne's Open Images zoo
    fetches them, with its own download code, but without its download's next step: reading the split's
    whole image list into Python lists (1.7 M rows for train: 2.4 GiB and half a minute, measured in
    ``bench/metadata_scale.py``), which a plan does not need."""
    if not fiftyone_openimages.has_metadata_helpers(split):  # another FiftyOne: its whole download
        log.warning("FiftyOne %s has no Open Images metadata helpers as %s had: using its whole download",
                    fiftyone_openimages.installed_version(), fiftyone_openimages.FIFTYONE_VERSION)
        fiftyone_openimages.download_split(split_dir, split, [])
        return
    fiftyone_openimages.download_file_if_missing(os.path.join(split_dir, oi.IMAGE_IDS_CSV),
                                                 fiftyone_openimages.annotation_url(split, "image_ids"),
                                                 quiet=-1 if split == "train" else 0)
    fiftyone_openimages.fetch_hierarchy(split_dir, fiftyone_openimages.class_names(split_dir))
    fiftyone_openimages.download_file_if_missing(os.path.join(split_dir, oi.DETECTIONS_CSV),
                                                 fiftyone_openimages.annotation_url(split, "detections"), quiet=0)


def metadata_dir(scratch: str, split: str, metadata_cache: str) -> str:
    """A folder holding the split's metadata files: the local mirror's own folder when it has them all and
    no cache is asked for (read in place, not copied); else ``scratch``, filled from the mirror, the cache
    and Open Images (through FiftyOne's download code), which the cache then keeps."""
    local = os.environ.get(METADATA_ENV, "")
    if local and not metadata_cache and not oi.missing_files(local):
        return local
    if local:
        copy_metadata(local, scratch)
    cached = _metadata_from_cache(metadata_cache, split, scratch) if metadata_cache else []
    if oi.missing_files(scratch):  # FiftyOne's code fetches them (importing it alone takes seconds)
        fetch_metadata(scratch, split)
    if metadata_cache:
        _metadata_to_cache(metadata_cache, split, scratch, cached)
    return scratch


def class_mids(split_dir: str) -> dict[str, str]:
    """Display name to MID, from the split's ``metadata/classes.csv``."""
    with open(os.path.join(split_dir, oi.CLASSES_CSV)) as f:
        return {name: mid for mid, name in csv.reader(f)}
