"""Where a training's epoch checkpoint outlives its pod, and which training may write it.

A training's key (``yolo_kfp.model.train.training_key``) is the same for a retried pod and for an
identical re-run, so that both resume where the last attempt stopped. Two identical runs at once
would share it too: both would overwrite one ``last.pt``, and the first to finish would delete the
checkpoint the other resumes from. A lease decides. The training that holds ``<place>/lease.json``
(renewed while it trains) keeps the shared checkpoint and removes it when it finishes; a training that
finds the lease held by a live training keeps its checkpoints in a place of its own
(``<place>/runs/<holder>``), removed when it finishes. A lease not renewed for ``LEASE_SECONDS``
belongs to a training that stopped without a word (a preempted node): the next attempt takes it over
and resumes. Leases are written with the S3 server's conditional writes (a lock file in a local
folder), so two pods cannot both take one.
"""

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import uuid

from yolo_kfp.infra.storage import S3Url, Storage, StorageError, is_s3

log = logging.getLogger(__name__)

CHECKPOINTS_ENV = "YOLO_KFP_CHECKPOINTS"  # a local folder for checkpoints (run-local sets it), else the bucket's
CHECKPOINT_POLL_SECONDS = 10.0  # how often the durable copy of last.pt is brought up to date, and the lease renewed
SETTLE_SECONDS = 1.0  # a last.pt unchanged for this long has been written whole
# Below the train step's first retry backoff (components/train.py): a retried pod finds its predecessor's lease
# lapsed and resumes at once.
LEASE_SECONDS = 90.0
LEASE = "lease.json"
LAST = "last.pt"
# What a lease may hand on, and the form of each: anyone who writes the bucket can write a lease too.
RECORD = {"mlflow_run": re.compile(r"[0-9a-f]{32}")}


def checkpoint_location(key: str) -> str:
    """Where a training's epoch checkpoints are kept: ``$YOLO_KFP_CHECKPOINTS/<key>``, else the data
    connection's bucket under ``yolo-kfp/checkpoints/<key>``, else nowhere ("")."""
    if os.environ.get(CHECKPOINTS_ENV):
        return os.path.join(os.environ[CHECKPOINTS_ENV], key)
    bucket = os.environ.get("AWS_S3_BUCKET", "")
    return f"s3://{bucket}/yolo-kfp/checkpoints/{key}" if bucket else ""


def read_lease(data: bytes) -> dict:
    """A lease as written here; anything else (damaged, or planted) reads as lapsed, without notes to hand on."""
    try:
        lease = json.loads(data)
    except ValueError:
        lease = None
    renewed = lease.get("renewed") if isinstance(lease, dict) else None
    if isinstance(renewed, bool) or not isinstance(renewed, (int, float)) or not math.isfinite(renewed):
        return {"renewed": 0.0}
    assert isinstance(lease, dict)
    return {"renewed": renewed, **{k: v for k, v in lease.items()
                                   if k in RECORD and isinstance(v, str) and RECORD[k].fullmatch(v)}}


class CheckpointPlace:
    """A local folder or an S3 prefix holding ``last.pt`` and its lease."""

    def __init__(self, location: str):
        self.location = location
        self.prefix = S3Url.parse(location) if is_s3(location) else None
        self.storage = Storage.from_env() if self.prefix else None

    def sub(self, *parts: str) -> "CheckpointPlace":
        return CheckpointPlace(str(self.prefix.join(*parts)) if self.prefix else os.path.join(self.location, *parts))

    def _path(self, name: str) -> str:
        return os.path.join(self.location, name)

    def exists(self) -> bool:
        return self.storage.exists(self.prefix.join(LAST)) if self.prefix and self.storage \
            else os.path.exists(self._path(LAST))

    def fetch(self, target: str) -> None:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if self.prefix and self.storage:
            self.storage.download_file(self.prefix.join(LAST), target)
        else:
            shutil.copyfile(self._path(LAST), target)

    def keep(self, path: str) -> None:
        """Stores ``path``; a failure is logged, not raised: training goes on, a retry resumes from an older epoch."""
        try:
            if self.prefix and self.storage:
                self.storage.upload_file(path, self.prefix.join(LAST))
            else:
                os.makedirs(self.location, exist_ok=True)
                shutil.copyfile(path, self._path(LAST) + ".partial")
                os.replace(self._path(LAST) + ".partial", self._path(LAST))
        except (StorageError, OSError) as error:
            log.warning("checkpoint not kept: %s", error)

    def remove(self, name: str = LAST) -> None:
        if self.prefix and self.storage:
            self.storage.delete(self.prefix.join(name))
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._path(name))

    def read(self, name: str) -> tuple[bytes, str] | None:
        """A small object's content and a tag that ``swap`` compares with; None where there is none."""
        if self.prefix and self.storage:
            return self.storage.get_tagged(self.prefix.join(name))
        try:
            with open(self._path(name), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        return data, hashlib.sha256(data).hexdigest()

    def swap(self, name: str, tag: str | None, data: bytes) -> bool:
        """Writes ``data`` only while the object is still the one ``tag`` names (None: while there is none)."""
        if self.prefix and self.storage:
            return self.storage.put_if(self.prefix.join(name), data, tag)
        os.makedirs(self.location, exist_ok=True)
        with open(self._path(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.read(name)
            if (current[1] if current else None) != tag:
                return False
            with open(self._path(name) + ".partial", "wb") as f:
                f.write(data)
            os.replace(self._path(name) + ".partial", self._path(name))
            return True


class Checkpoints:
    """One training's durable checkpoint under the lease of its key's place (see the module's docstring)."""

    def __init__(self, location: str):
        self.shared = CheckpointPlace(location)
        self.holder = uuid.uuid4().hex[:12]
        self.place: CheckpointPlace | None = None  # where this training keeps last.pt, once claimed
        self.record: dict = {}  # notes kept with the lease (the training's MLflow run), handed to the next holder
        self._tag: str | None = None

    @property
    def holds_lease(self) -> bool:
        return self.place is self.shared

    def _write_lease(self, tag: str | None, renewed: float | None = None) -> bool:
        lease = {"holder": self.holder, "renewed": time.time() if renewed is None else renewed, **self.record}
        if not self.shared.swap(LEASE, tag, json.dumps(lease).encode()):
            return False
        written = self.shared.read(LEASE)
        self._tag = written[1] if written else None  # None: it is gone already, as swap's tag says
        return True

    def claim(self, wait: float = LEASE_SECONDS + CHECKPOINT_POLL_SECONDS) -> "Checkpoints":
        """Takes the lease where it is free or lapsed (then ``record`` holds the last holder's notes), else,
        after waiting up to ``wait`` seconds for it to lapse, a place of this training's own."""
        deadline = time.monotonic() + wait
        first_seen: dict[str, float] = {}  # by version of the lease
        while True:
            current = self.shared.read(LEASE)
            lease = read_lease(current[0]) if current else None
            # a renewal later than when this version was first seen (planted, or another node's clock) counts
            # from then: every lease lapses within one lease period unless renewed
            seen = first_seen.setdefault(current[1], time.time()) if current else 0.0
            if lease is None or time.time() - min(lease["renewed"], seen) > LEASE_SECONDS:
                self.record = {k: v for k, v in (lease or {}).items() if k in RECORD}
                if self._write_lease(current[1] if current else None):
                    self.place = self.shared
                    return self
                continue  # another training took it first: look again
            if time.monotonic() >= deadline:
                self.place = self.shared.sub("runs", self.holder)
                log.info("the checkpoints of %s are in use by another training (an identical run): this one keeps "
                         "its own under %s", self.shared.location, self.place.location)
                return self
            time.sleep(min(CHECKPOINT_POLL_SECONDS, max(0.0, deadline - time.monotonic())))

    def note(self, **record) -> None:
        """Keeps ``record`` with the lease, for a later attempt that takes it over."""
        self.record.update(record)
        self.renew()

    def renew(self) -> bool:
        """Renews the lease; False (and the shared place no longer written) where another training took it."""
        if not self.holds_lease:
            return True
        if self._write_lease(self._tag):
            return True
        log.warning("the lease on %s was taken by another training: its checkpoint is no longer written here",
                    self.shared.location)
        self.place = None
        return False

    @contextlib.contextmanager
    def released_on_failure(self):
        """A training that fails lets the next attempt take the lease at once (its notes kept); the checkpoint
        stays for it to resume from."""
        try:
            yield self
        except BaseException:
            if self.holds_lease:
                self._write_lease(self._tag, renewed=0.0)
            raise

    def finish(self) -> None:
        """After a finished training: its checkpoint goes (an identical re-run then trains anew), and with it
        the lease, but never a checkpoint another training holds."""
        if self.holds_lease and self.renew():
            self.shared.remove(LAST)
            self.shared.remove(LEASE)
        elif self.place is not None:
            self.place.remove(LAST)


def _signature(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


@contextlib.contextmanager
def keeping_checkpoint(last: str, checkpoints: Checkpoints, resumable):
    """While the block runs, renews the lease and copies ``last`` to the training's place whenever it changes
    (polled: DDP workers write it in processes of their own). A file is copied once it has stayed the same
    for ``SETTLE_SECONDS``, and only while ``resumable(copy)`` (the finished run's stripped ``last.pt`` is the
    model artifact itself)."""
    stop = threading.Event()

    def keep() -> None:
        kept = _signature(last)
        with tempfile.TemporaryDirectory(prefix="checkpoint-") as work:
            while not stop.wait(CHECKPOINT_POLL_SECONDS):
                if not checkpoints.renew():
                    return
                current = _signature(last)
                if current is None or current == kept or stop.wait(SETTLE_SECONDS) or _signature(last) != current:
                    continue
                copy = shutil.copyfile(last, os.path.join(work, LAST))
                place = checkpoints.place  # None once the lease is lost (renew said so above)
                if place is not None and _signature(last) == current and resumable(copy):  # whole, and resumable
                    place.keep(copy)
                kept = current

    thread = threading.Thread(target=keep, name="keep-checkpoint", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
