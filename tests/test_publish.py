"""Publishing a model: complete versions, manifest last, `latest` moved only after it; on a real S3."""

import json

import pytest
import yaml

from yolo_kfp.infra.storage import S3Url, Storage, StorageError, sha256_of
from yolo_kfp.release.publish import LATEST, MANIFEST, RUNS, publish_model, read_latest


class RecordingStorage(Storage):
    """Records the order of writes; ``fail_at`` makes the n-th file upload fail like a dropped connection."""

    def __init__(self, *args, fail_at: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.writes, self.fail_at = [], fail_at

    def upload_file(self, path, url):
        if self.fail_at and len(self.writes) + 1 == self.fail_at:
            raise StorageError(f"S3 upload to {url} failed: connection reset (injected)")
        super().upload_file(path, url)
        self.writes.append(url.key)

    def put_bytes(self, url, data):
        super().put_bytes(url, data)
        self.writes.append(url.key)

    def put_if(self, url, data, etag):
        written = super().put_if(url, data, etag)
        if written:
            self.writes.append(url.key)
        return written


@pytest.fixture
def trained(tmp_path):
    """The files a train, evaluate and convert step leave, small."""
    model = tmp_path / "model"
    (model / "weights").mkdir(parents=True)
    (model / "weights" / "best.pt").write_bytes(b"w" * 1000)
    (model / "args.yaml").write_text(yaml.safe_dump({"epochs": 3, "imgsz": 160, "freeze": 10}))
    (model / "results.csv").write_text("epoch,metrics/mAP50(B)\n1,0.5\n")
    (model / "train_summary.json").write_text(json.dumps({"trainable_params": 10}))
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"map50": 0.8, "map50_95": 0.5, "precision": 0.9, "recall": 0.7}))
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"classes": ["Car"], "seed": 42, "split_ratios": [0.75, 0.125, 0.125],
                                 "source": {"split": "train", "max_samples_per_class": 300}}))
    return {"model_dir": str(model), "metrics_path": str(metrics), "stats_path": str(stats)}


@pytest.fixture
def target(bucket):
    return f"s3://{bucket}/yolo-kfp"


def storage_for(s3, **kwargs):
    return RecordingStorage(endpoint=s3.endpoint, access_key=s3.access_key, secret_key=s3.secret_key, **kwargs)


def test_publish_layout_and_manifest_last(s3, target, trained):
    storage = storage_for(s3)
    result = publish_model(publish_to=target, **trained, run_id="0123456789abcdef", storage=storage)
    version, prefix = result["version"], S3Url.parse(target)
    assert version.endswith("-01234567")
    files = {"weights/best.pt", "args.yaml", "results.csv", "train_summary.json", "metrics.json",
             "dataset_stats.json", "parameters.json"}
    assert storage.writes[0] == prefix.join(RUNS, "0123456789abcdef.json").key  # the run's version, first
    assert storage.writes[-2:] == [prefix.join(version, MANIFEST).key, prefix.join(LATEST).key]
    assert {k.split(f"{version}/", 1)[1] for k in storage.writes[1:-2]} == files
    manifest = json.loads(storage.get_bytes(prefix.join(version, MANIFEST)))
    assert set(manifest["files"]) == files and manifest["run_id"] == "0123456789abcdef"
    assert manifest["files"]["weights/best.pt"] == {"size": 1000,
                                                    "sha256": sha256_of(f"{trained['model_dir']}/weights/best.pt")}
    assert manifest["metrics"]["map50"] == 0.8 and manifest["names"] == ["Car"]
    assert manifest["parameters"]["train"]["freeze"] == 10
    assert manifest["parameters"]["download"]["max_samples_per_class"] == 300
    assert read_latest(target, storage)["version"] == version


def test_interrupted_upload_leaves_no_manifest_and_latest_unmoved(s3, target, trained):
    first = publish_model(publish_to=target, **trained, run_id="aaaaaaaa", storage=storage_for(s3))
    broken = storage_for(s3, fail_at=3)
    with pytest.raises(StorageError, match="injected"):
        publish_model(publish_to=target, **trained, run_id="bbbbbbbb", storage=broken)
    prefix = S3Url.parse(target)
    keys = [o["key"] for o in broken.list_objects(prefix)]
    half = [k for k in keys if "-bbbbbbbb/" in k]
    assert half, "the interrupted version should have left some files"
    assert not any(k.endswith(MANIFEST) for k in half)
    assert read_latest(target, broken)["version"] == first["version"]


def test_nothing_published_yet(s3, target):
    assert read_latest(target, storage_for(s3)) is None
