"""Download through FiftyOne's real Open Images zoo code, against the offline mirror (SeaweedFS + mongod)."""

import csv
import json
import os

import pytest
from conftest import CLASSES

from components import openimages as oi
from components.download import METADATA_ENV, download, download_open_images
from components.packing import materialized, shards
from components.storage import S3Url, Storage
from pipeline.synthetic import ALL_CLASSES


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def check_raw_layout(raw_dir, quota):
    """Only the downloaded images and their rows; every class's quota drawn."""
    assert oi.missing_files(raw_dir) == []
    images = {n[:-4] for n in os.listdir(os.path.join(raw_dir, oi.DATA_DIR))}
    detections = read_rows(os.path.join(raw_dir, oi.DETECTIONS_CSV))
    assert {r["ImageID"] for r in detections} == images
    assert {r["ImageID"] for r in read_rows(os.path.join(raw_dir, oi.IMAGE_IDS_CSV))} == images
    for name in CLASSES:
        with_class = {r["ImageID"] for r in detections if r["LabelName"] == ALL_CLASSES[name]}
        assert len(with_class) >= quota
    return images, detections


def test_download_draws_a_quota_per_class_and_keeps_only_their_rows(mirror, tmp_path):
    summary = download_open_images(str(tmp_path / "raw"), CLASSES, 6, "validation", seed=42)
    images, detections = check_raw_layout(str(tmp_path / "raw"), 6)
    assert summary["images_per_class"] == {name: 6 for name in CLASSES}
    assert summary["images"] == len(images) <= 18
    full = read_rows(os.path.join(mirror, oi.DETECTIONS_CSV))
    assert len(detections) == sum(r["ImageID"] in images for r in full) < len(full)
    with open(os.path.join(mirror, oi.DETECTIONS_CSV)) as f:
        header = f.readline()
    with open(tmp_path / "raw" / oi.DETECTIONS_CSV) as f:
        assert f.readline() == header  # the same columns, unquoted, as Open Images writes them


def test_download_is_determined_by_the_seed(mirror, tmp_path):
    first = download_open_images(str(tmp_path / "a"), CLASSES, 4, "validation", seed=1)
    again = download_open_images(str(tmp_path / "b"), CLASSES, 4, "validation", seed=1)
    other = download_open_images(str(tmp_path / "c"), CLASSES, 4, "validation", seed=2)
    listing = [sorted(os.listdir(tmp_path / d / oi.DATA_DIR)) for d in "abc"]
    assert first["images"] == again["images"] and listing[0] == listing[1] != listing[2]
    assert other["images_per_class"] == {name: 4 for name in CLASSES}


def test_unknown_class_fails_before_downloading(mirror, tmp_path):
    with pytest.raises(ValueError, match=r"'Carr' \(did you mean 'Car'"):
        download_open_images(str(tmp_path / "raw"), ["Bicycle", "Carr"], 5, "validation", seed=42)
    assert not (tmp_path / "raw").exists()


def test_download_component_through_kfp_local(mirror, local_kfp):
    task = download(classes=CLASSES, max_samples_per_class=5, split="validation", seed=42, open_images_cache="")
    raw = task.outputs["raw_dataset"]
    assert "data" not in os.listdir(raw.path) and shards(raw.path), "images travel packed"
    with materialized(raw.path) as folder:
        images, _ = check_raw_layout(folder, 5)
    assert raw.metadata["images"] == len(images)
    with open(os.path.join(os.path.dirname(raw.path), "executor_output.json")) as f:
        assert json.load(f)["artifacts"]["raw_dataset"]["artifacts"][0]["metadata"]["images_per_class"] == \
            {name: 5 for name in CLASSES}


def test_open_images_metadata_is_cached_in_s3(mirror, s3, tmp_path, monkeypatch):
    for key, value in s3.data_connection().items():
        monkeypatch.setenv(key, value)
    storage = Storage.from_env()
    storage.client.create_bucket(Bucket="oi-cache")
    download_open_images(str(tmp_path / "a"), CLASSES, 3, "validation", seed=42, metadata_cache="s3://oi-cache/v7")
    cached = sorted(o["key"] for o in storage.list_objects(S3Url("oi-cache", "v7")))
    assert cached == sorted(f"v7/validation/{name}" for name in oi.METADATA_FILES)
    # Without the mirror's local metadata FiftyOne would fetch the CSVs over HTTPS (the guard would
    # fail the test): the second run takes them from the cache.
    monkeypatch.delenv(METADATA_ENV)
    again = download_open_images(str(tmp_path / "b"), CLASSES, 3, "validation", seed=42,
                                 metadata_cache="s3://oi-cache/v7")
    assert sorted(os.listdir(tmp_path / "b" / oi.DATA_DIR)) == sorted(os.listdir(tmp_path / "a" / oi.DATA_DIR))
    assert again["images_per_class"] == {name: 3 for name in CLASSES}
