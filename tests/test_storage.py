"""S3 against a real SeaweedFS: data-connection settings, errors that say what failed, never a secret."""

import hashlib
import json
import os
import time
import urllib.request

import pytest

from yolo_kfp.infra.storage import S3Url, Storage, StorageError
from yolo_kfp.local.s3_server import VOLUME_SLOTS, free_ports
from yolo_kfp.model.train import fetch_base_model
from yolo_kfp.params.preflight import check_s3_inputs


def test_settings_come_from_the_data_connection_variables():
    env = {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value", "AWS_S3_ENDPOINT": "http://x:9000",
           "AWS_DEFAULT_REGION": "eu-west-1", "AWS_S3_BUCKET": "b"}
    storage = Storage.from_env(env)
    assert (storage.endpoint, storage.region, storage.access_key, storage.secret_key) == \
        ("http://x:9000", "eu-west-1", "AKID", "s3cr3t-value")
    assert "s3cr3t-value" not in repr(storage)


def test_the_test_server_has_room_for_every_tests_bucket(s3):
    """Each bucket takes a volume; weed's default count follows the free disk and ran out at 37 in CI."""
    with urllib.request.urlopen(f"{s3.master_url}/dir/status", timeout=5) as response:
        topology = json.load(response)["Topology"]
    assert topology["Max"] == VOLUME_SLOTS


def test_round_trip_listing_and_fingerprint(storage, bucket, tmp_path):
    (tmp_path / "src" / "a").mkdir(parents=True)
    (tmp_path / "src" / "a" / "one.txt").write_text("1")
    (tmp_path / "src" / "two.txt").write_text("2")
    prefix = S3Url(bucket, "data")
    assert storage.upload_dir(str(tmp_path / "src"), prefix) == ["a/one.txt", "two.txt"]
    before = storage.fingerprint(prefix)
    assert storage.download_prefix(prefix, str(tmp_path / "dst")) == ["a/one.txt", "two.txt"]
    assert (tmp_path / "dst" / "a" / "one.txt").read_text() == "1"
    storage.put_bytes(prefix.join("three.txt"), b"3")
    assert storage.fingerprint(prefix) != before
    assert storage.exists(prefix.join("three.txt")) and not storage.exists(prefix.join("four.txt"))


def _failure(call, secret: str, capfd) -> str:
    started = time.monotonic()
    with pytest.raises(StorageError) as error:
        call()
    assert time.monotonic() - started < 15, "a failure must be reported within seconds"
    message = str(error.value)
    captured = capfd.readouterr()
    assert secret not in message + captured.out + captured.err
    return message


def test_wrong_secret(s3, bucket, capfd):
    secret = "definitely-not-the-secret"
    wrong = Storage(endpoint=s3.endpoint, access_key=s3.access_key, secret_key=secret)
    message = _failure(lambda: wrong.put_bytes(S3Url(bucket, "k"), b"x"), secret, capfd)
    assert "SignatureDoesNotMatch" in message and f"s3://{bucket}/k" in message and s3.endpoint in message


def test_unknown_access_key(s3, bucket, capfd):
    stranger = Storage(endpoint=s3.endpoint, access_key="NOBODY", secret_key="nobody-secret")
    message = _failure(lambda: stranger.get_bytes(S3Url(bucket, "k")), "nobody-secret", capfd)
    assert "InvalidAccessKeyId" in message and bucket in message


def test_missing_bucket(storage, capfd):
    message = _failure(lambda: storage.put_bytes(S3Url("no-such-bucket-here", "k"), b"x"), storage.secret_key,
                       capfd)
    assert "NoSuchBucket" in message and "s3://no-such-bucket-here/k" in message


def test_missing_key(storage, bucket, tmp_path, capfd):
    message = _failure(lambda: storage.download_file(S3Url(bucket, "weights/none.pt"), str(tmp_path / "w.pt")),
                       storage.secret_key, capfd)
    assert f"s3://{bucket}/weights/none.pt" in message and "404" in message
    assert not os.path.exists(tmp_path / "w.pt") and not os.path.exists(tmp_path / "w.pt.partial")


def test_unreachable_endpoint(capfd):
    (port,) = free_ports(1)  # nothing listens there
    storage = Storage(endpoint=f"http://127.0.0.1:{port}", access_key="a", secret_key="unreachable-secret")
    message = _failure(lambda: storage.get_bytes(S3Url("b", "k")), "unreachable-secret", capfd)
    assert f"127.0.0.1:{port}" in message and "s3://b/k" in message


def test_base_model_from_s3_is_checked_against_its_sha256(storage, bucket, base_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(Storage, "from_env", classmethod(lambda cls, env=None: storage))
    weights = open(base_checkpoint, "rb").read()
    storage.put_bytes(S3Url(bucket, "base/yolo.pt"), weights)
    good = hashlib.sha256(weights).hexdigest()
    path = fetch_base_model(f"s3://{bucket}/base/yolo.pt", good, str(tmp_path))
    assert open(path, "rb").read() == weights
    with pytest.raises(ValueError, match="SHA-256 .* not the expected 0{64}: refusing"):
        fetch_base_model(f"s3://{bucket}/base/yolo.pt", "0" * 64, str(tmp_path / "again"))
    assert fetch_base_model("yolov5nu.pt", "", str(tmp_path)) == "yolov5nu.pt"


def test_preflight_names_what_is_not_usable(s3, storage, bucket, capfd):
    storage.put_bytes(S3Url(bucket, "extra/images/a.jpg"), b"x")
    fingerprint = check_s3_inputs(publish_to=f"s3://{bucket}/models", base_model="yolov5nu.pt",
                                  extra_data=f"s3://{bucket}/extra", storage=storage)
    assert len(fingerprint) == 64
    storage.put_bytes(S3Url(bucket, "extra/labels/a.txt"), b"0 0.5 0.5 0.1 0.1\n")
    assert check_s3_inputs(extra_data=f"s3://{bucket}/extra", storage=storage) != fingerprint
    wrong = Storage(endpoint=s3.endpoint, access_key=s3.access_key, secret_key="preflight-wrong-secret")
    message = _failure(lambda: check_s3_inputs(publish_to=f"s3://{bucket}/models", storage=wrong),
                       "preflight-wrong-secret", capfd)
    assert message.startswith(f"preflight: publish_to=s3://{bucket}/models is not usable")
    message = _failure(lambda: check_s3_inputs(base_model=f"s3://{bucket}/nope.pt", storage=storage),
                       storage.secret_key, capfd)
    assert "base_model" in message and f"s3://{bucket}/nope.pt" in message
    message = _failure(lambda: check_s3_inputs(extra_data=f"s3://{bucket}/empty", storage=storage),
                       storage.secret_key, capfd)
    assert "no objects under" in message


def test_preflight_without_s3_needs_no_credentials():
    assert check_s3_inputs(base_model="yolov5nu.pt", storage=Storage(endpoint="http://127.0.0.1:1")) == ""
