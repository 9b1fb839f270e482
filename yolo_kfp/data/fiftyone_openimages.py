"""FiftyOne's Open Images download code, the one place this project calls it.

``download_split`` is FiftyOne's public split download (what its zoo runs, without importing a
dataset). The metadata files alone have no public function: FiftyOne's download fetches them and then
reads the split's whole image list into Python lists (1.7 M rows for train: 2.4 GiB, half a minute;
``bench/metadata_scale.py``), which a plan does not need. So each private helper it uses for them sits
behind one function below, read in FiftyOne ``FIFTYONE_VERSION``; ``tests/test_private_apis.py`` fails
when another version is installed, and ``has_metadata_helpers`` lets an image with another FiftyOne fall
back to the public download.
"""

import os

FIFTYONE_VERSION = "1.22.1"  # the private helpers below were read in this version (pyproject.toml pins it)
PRIVATE_HELPERS = ("_ANNOTATION_DOWNLOAD_URLS", "_download_file_if_necessary", "_get_classes_map", "_get_hierarchy")


def _openimages():
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    import fiftyone.utils.openimages as fouo

    return fouo


def installed_version() -> str:
    from importlib.metadata import version

    return version("fiftyone")


def download_split(split_dir: str, split: str, image_ids: list[str]) -> None:
    """Fetches the split's metadata files that ``split_dir`` lacks, then the images of ``image_ids`` it does
    not have (from Open Images' bucket)."""
    _openimages().download_open_images_split(split_dir, split, version="v7", label_types=["detections"],
                                             image_ids=image_ids)


def has_metadata_helpers(split: str) -> bool:
    """Whether this FiftyOne has the private helpers ``FIFTYONE_VERSION`` has, with URLs for ``split``."""
    fouo = _openimages()
    return all(hasattr(fouo, name) for name in PRIVATE_HELPERS) and split in fouo._ANNOTATION_DOWNLOAD_URLS


def annotation_url(split: str, kind: str) -> str:
    """Where Open Images serves a split's file of ``kind`` ("image_ids", "detections")."""
    return _openimages()._ANNOTATION_DOWNLOAD_URLS[split][kind]


def download_file_if_missing(path: str, url: str, quiet: int) -> None:
    """Fetches ``url`` to ``path`` unless the file is there (``quiet``: 0 logs it, -1 also shows progress)."""
    _openimages()._download_file_if_necessary(path, url, quiet=quiet)


def class_names(split_dir: str) -> dict[str, str]:
    """MID to display name, from ``metadata/classes.csv``, fetched first if missing."""
    return _openimages()._get_classes_map(split_dir, download=True)[0]


def fetch_hierarchy(split_dir: str, classes: dict[str, str]) -> None:
    """Fetches ``metadata/hierarchy.json`` if missing, its MIDs written as the display names of ``classes``."""
    _openimages()._get_hierarchy(split_dir, classes_map=classes, download=True)
