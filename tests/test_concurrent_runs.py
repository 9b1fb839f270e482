"""Runs that overlap stay correct: the checkpoints' lease, ``latest`` that only moves forward, one published and
registered version per run. Against the real S3 server the tests start, and a local folder."""

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import yolo_kfp.model.checkpoints as checkpoints_module
from yolo_kfp.infra.storage import S3Url, Storage
from yolo_kfp.model.checkpoints import Checkpoints
from yolo_kfp.release import publish


@pytest.fixture(params=["s3", "folder"])
def location(request, tmp_path, monkeypatch):
    """A checkpoint location of each kind: an S3 prefix on the test server, a local folder."""
    if request.param == "folder":
        return str(tmp_path / "checkpoints" / "k1")
    storage, bucket = request.getfixturevalue("storage"), request.getfixturevalue("bucket")
    monkeypatch.setattr(Storage, "from_env", classmethod(lambda cls, env=None: storage))
    return f"s3://{bucket}/yolo-kfp/checkpoints/k1"


def stored(place) -> bytes | None:
    found = place.read(checkpoints_module.LAST)
    return found and found[0]


def weights(tmp_path, content: bytes) -> str:
    path = tmp_path / f"{content.decode()}.pt"
    path.write_bytes(content)
    return str(path)


def test_an_identical_run_at_once_keeps_its_own_checkpoint(location, tmp_path):
    first = Checkpoints(location).claim(wait=0)
    second = Checkpoints(location).claim(wait=0)
    assert first.holds_lease and not second.holds_lease
    first.place.keep(weights(tmp_path, b"first"))
    second.place.keep(weights(tmp_path, b"second"))
    assert stored(first.place) == b"first" and stored(second.place) == b"second"
    first.finish()
    assert stored(first.place) is None and stored(second.place) == b"second", "the first took only its own"
    second.finish()
    assert stored(second.place) is None


def test_a_lapsed_lease_is_taken_over_with_its_notes(location, tmp_path, monkeypatch):
    stopped = Checkpoints(location).claim(wait=0)  # then its node went away: no renewal, no release
    stopped.note(mlflow_run="fedcba9876543210fedcba9876543210")
    stopped.place.keep(weights(tmp_path, b"epoch3"))
    monkeypatch.setattr(checkpoints_module, "LEASE_SECONDS", 0.2)
    time.sleep(0.3)
    retry = Checkpoints(location).claim(wait=0)
    assert retry.holds_lease and stored(retry.place) == b"epoch3"
    assert retry.record == {"mlflow_run": "fedcba9876543210fedcba9876543210"}
    assert not stopped.renew() and stopped.place is None, "the stopped one no longer writes there"
    stopped.finish()
    assert stored(retry.place) == b"epoch3", "nor removes what the new holder resumes from"


def test_a_damaged_or_planted_lease_lapses_and_hands_on_nothing_foreign(location):
    place = Checkpoints(location).shared
    for planted in (b"not json", b'{"renewed": "soon", "mlflow_run": "0123456789abcdef0123456789abcdef"}',
                    json.dumps({"renewed": 0, "mlflow_run": "../other-experiment", "holder": "x"}).encode()):
        current = place.read(checkpoints_module.LEASE)
        assert place.swap(checkpoints_module.LEASE, current and current[1], planted)
        taken = Checkpoints(location).claim(wait=0)
        assert taken.holds_lease and taken.record == {}, planted


def test_a_lease_renewed_in_the_future_lapses_within_one_lease_period(location, monkeypatch):
    """NaN, infinite or far-future renewal times (JSON parsers take NaN and Infinity) never hold a lease for good."""
    monkeypatch.setattr(checkpoints_module, "LEASE_SECONDS", 1.0)
    monkeypatch.setattr(checkpoints_module, "CHECKPOINT_POLL_SECONDS", 0.1)
    place = Checkpoints(location).shared
    for renewed in ("NaN", "Infinity", "-Infinity", "true", str(time.time() + 1e9)):
        current = place.read(checkpoints_module.LEASE)
        assert place.swap(checkpoints_module.LEASE, current and current[1], f'{{"renewed": {renewed}}}'.encode())
        started = time.monotonic()
        taken = Checkpoints(location).claim(wait=5)
        assert taken.holds_lease and time.monotonic() - started < 2.5, renewed


def test_a_failed_attempt_hands_its_lease_on_at_once(location, tmp_path):
    failed = Checkpoints(location).claim(wait=0)
    failed.note(mlflow_run="0123456789abcdef0123456789abcdef")
    with pytest.raises(RuntimeError), failed.released_on_failure():
        raise RuntimeError("preempted")
    retry = Checkpoints(location).claim(wait=0)
    assert retry.holds_lease and retry.record == {"mlflow_run": "0123456789abcdef0123456789abcdef"}


def test_a_held_lease_is_waited_for_before_going_alone(location, monkeypatch):
    holder = Checkpoints(location).claim(wait=0)
    monkeypatch.setattr(checkpoints_module, "CHECKPOINT_POLL_SECONDS", 0.1)
    started = time.monotonic()
    alone = Checkpoints(location).claim(wait=0.5)
    assert not alone.holds_lease and time.monotonic() - started >= 0.5
    assert holder.renew()


def test_lease_lapse_is_shorter_than_the_train_steps_first_retry():
    from yolo_kfp.components.step_settings import SETTINGS
    from yolo_kfp.components.train import train  # noqa: F401  (registers its settings)

    assert checkpoints_module.LEASE_SECONDS < SETTINGS["train"].retry_backoff_seconds


@pytest.mark.slow
def test_two_identical_trainings_at_once_both_finish(yolo_dataset, base_checkpoint, tmp_path):
    """Two processes train the same dataset with the same settings into one checkpoint location, overlapping."""
    location = str(tmp_path / "checkpoints" / "k1")
    script = textwrap.dedent(f"""
        import json, sys
        import yolo_kfp.model.checkpoints as c
        from yolo_kfp.model.train import train_yolo
        c.CHECKPOINT_POLL_SECONDS = c.SETTLE_SECONDS = 0.2
        checkpoints = c.Checkpoints({location!r}).claim(wait=1)
        summary = train_yolo(data_dir={yolo_dataset!r}, output_dir=sys.argv[1], base_model={base_checkpoint!r},
                             epochs=3, batch=8, imgsz=64, workers=0, train_args={{"nbs": 8, "plots": False}},
                             checkpoints=checkpoints)
        print(json.dumps({{"shared": checkpoints.holds_lease, "epochs": summary["epochs"]}}))
    """)
    runs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / f"model-{i}")], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for i in range(2)]
    answers = []
    for run in runs:
        out, err = run.communicate(timeout=600)
        assert run.returncode == 0, err[-2000:]
        answers.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(a["shared"] for a in answers) == [False, True] and all(a["epochs"] == 3 for a in answers)
    left = [os.path.join(root, f) for root, _, files in os.walk(location) for f in files if f.endswith(".pt")]
    assert left == [], "each removed its own checkpoint once finished"


def published(storage, prefix: S3Url) -> list[str]:
    return sorted({o["key"].split("/")[-2] for o in storage.list_objects(prefix) if o["key"].endswith("manifest.json")})


def latest(storage, prefix: S3Url) -> str:
    return json.loads(storage.get_bytes(prefix.join(publish.LATEST)))["version"]


def test_publishes_that_finish_out_of_order_leave_latest_on_the_newer(storage, bucket, tmp_path, monkeypatch):
    prefix = S3Url(bucket, "models/yolo")
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    older_may_finish = threading.Event()
    move = publish.move_latest

    def slow_for_the_older(prefix, version, storage):
        if version.endswith("aaaaaaaa"):
            assert older_may_finish.wait(60)
        return move(prefix, version, storage)

    monkeypatch.setattr(publish, "move_latest", slow_for_the_older)
    results = {}
    older = threading.Thread(target=lambda: results.update(older=publish.publish_files(
        publish_to=str(prefix), files={"model.bin": str(model)}, record={}, run_id="aaaaaaaa-1", storage=storage)))
    older.start()
    while len(published(storage, prefix)) < 1:  # the older run's manifest is up; it has not moved latest yet
        time.sleep(0.05)
    results["newer"] = publish.publish_files(publish_to=str(prefix), files={"model.bin": str(model)}, record={},
                                             run_id="bbbbbbbb-2", storage=storage)
    older_may_finish.set()
    older.join(60)
    assert results["older"]["version"] < results["newer"]["version"]
    assert latest(storage, prefix) == results["newer"]["version"] == results["older"]["latest"]


def test_latest_is_compared_and_set_against_a_writer_in_between(storage, bucket):
    """Another publish writes latest between this one's read and its write: the conditional write notices."""
    prefix = S3Url(bucket, "models/race")
    storage.put_bytes(prefix.join(publish.LATEST), json.dumps({"version": "20260101-000000-a"}).encode())
    read = storage.get_tagged
    sneaked = []

    def read_then_sneak_in(url):
        answer = read(url)
        if not sneaked:
            sneaked.append(storage.put_bytes(url, json.dumps({"version": "20260301-000000-c"}).encode()))
        return answer

    storage.get_tagged = read_then_sneak_in
    assert publish.move_latest(prefix, "20260201-000000-b", storage) == "20260301-000000-c"
    assert latest(storage, prefix) == "20260301-000000-c"


def test_a_retried_publish_goes_on_with_its_version(storage, bucket, tmp_path):
    prefix = S3Url(bucket, "models/retried")
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    first = publish.publish_files(publish_to=str(prefix), files={"model.bin": str(model)}, record={},
                                  run_id="cccccccc-3", storage=storage)
    time.sleep(1.1)  # a new stamp, were the version made anew
    again = publish.publish_files(publish_to=str(prefix), files={"model.bin": str(model)}, record={},
                                  run_id="cccccccc-3", storage=storage)
    assert again["version"] == first["version"] and published(storage, prefix) == [first["version"]]


def test_a_planted_version_claim_is_refused(storage, bucket, tmp_path):
    prefix = S3Url(bucket, "models/planted")
    storage.put_bytes(prefix.join(publish.RUNS, "dddddddd-4.json"), json.dumps({"version": "99999999-zzz"}).encode())
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    with pytest.raises(ValueError, match=r"does not name a version of run dddddddd-4 .* remove it"):
        publish.publish_files(publish_to=str(prefix), files={"model.bin": str(model)}, record={},
                              run_id="dddddddd-4", storage=storage)
    assert published(storage, prefix) == []


def test_a_planted_latest_does_not_stop_the_next_publish(storage, bucket, tmp_path, caplog):
    """``latest`` naming what no publish writes (a string that sorts after every version, a far-future stamp,
    a number, a path, damaged JSON) is taken as none: the next publish moves it forward, and the gate reads
    no model from it."""
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    planted = ['{"version": "~"}', '{"version": "99999999-x"}', '{"version": "29991231-235959-aaaaaaaa"}',
               '{"version": 20991231}', '{"version": "../other/20261207-000000"}', "[1]", "not json"]
    for i, text in enumerate(planted):
        prefix = S3Url(bucket, f"models/planted-{i}")
        storage.put_bytes(prefix.join(publish.LATEST), text.encode())
        assert publish.read_latest(str(prefix), storage) is None, text
        done = publish.publish_files(publish_to=str(prefix), files={"model.bin": str(model)}, record={},
                                     run_id=f"eeeeeee{i}-5", storage=storage)
        assert done["latest"] == done["version"], text
        assert publish.read_latest(str(prefix), storage)["version"] == done["version"], text
    assert caplog.text.count("not a version a publish writes") >= len(planted)


def test_a_manifest_that_is_not_its_versions_is_not_read(storage, bucket, caplog):
    """A planted manifest.json under a genuine version name cannot put its own text in the gate's report."""
    prefix = S3Url(bucket, "models/planted-manifest")
    storage.put_bytes(prefix.join(publish.LATEST), b'{"version": "20261201-000000-aaaaaaaa"}')
    storage.put_bytes(prefix.join("20261201-000000-aaaaaaaa", publish.MANIFEST),
                      b'{"version": "[promoted](http://evil.example)", "metrics": {"map50": 1.0}}')
    assert publish.read_latest(str(prefix), storage) is None
    assert "is not the manifest of version 20261201-000000-aaaaaaaa" in caplog.text
