"""Moving a 2,000-image dataset artifact through S3 (SeaweedFS on 127.0.0.1), measured side by side:

- per-file:   one object per file, as KFP's launcher stores an unpacked artifact folder
              (sequential, as the launcher does, and with 8 threads);
- packed:     what the pipeline does: tar shards (yolo_kfp/infra/packing.py), uploaded, downloaded, unpacked;
- floor:      one object holding the same bytes, no packing at all.

Each total is up + down (+ pack and unpack for the packed way); the packed way and the floor are
measured ``--repeats`` times, alternating, and their median runs reported. Pending writes are flushed
before each timed phase (``sync``), so that one phase's disk writes do not slow the next. The last line is
``RESULT artifact_transfer <packed total / floor total>``.

    python bench/artifact_transfer.py [--images 2000] [--kb 30] [--repeats 5] [--work-dir /dev/shm]
"""

import argparse
import contextlib
import os
import shutil
import tempfile
import time

from yolo_kfp.infra.packing import materialized, pack_in_place, shards
from yolo_kfp.infra.storage import S3Url, Storage
from yolo_kfp.local.s3_server import SeaweedS3


def timed(func):
    os.sync()  # earlier writes are flushed first, not during the timed work
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def make_dataset(root: str, images: int, size: int) -> int:
    for i in range(images):
        split = "train" if i % 8 < 6 else ("val" if i % 8 == 6 else "test")
        folder = os.path.join(root, "images", split)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{i:06d}.jpg"), "wb") as f:
            f.write(os.urandom(size))
    return images * size


def per_file(storage: Storage, source: str, work: str, threads: int) -> tuple[float, float]:
    prefix = S3Url("bench", f"per-file-{threads}")
    up = timed(lambda: storage.upload_dir(source, prefix, threads=threads))
    down = timed(lambda: storage.download_prefix(prefix, os.path.join(work, f"down-{threads}"), threads=threads))
    return up, down


def packed(storage: Storage, source: str, work: str, run: int) -> tuple[float, float, float, float]:
    artifact = os.path.join(work, f"packed-{run}")
    shutil.copytree(source, artifact)
    pack = timed(lambda: pack_in_place(artifact, ("images",)))
    prefix = S3Url("bench", f"packed-{run}")
    up = timed(lambda: storage.upload_dir(artifact, prefix))
    fetched = os.path.join(work, f"packed-down-{run}")
    down = timed(lambda: storage.download_prefix(prefix, fetched))
    assert shards(fetched)

    with contextlib.ExitStack() as stack:  # the unpacked folder's removal afterwards is not timed, as for the floor
        os.sync()
        started = time.perf_counter()
        folder = stack.enter_context(materialized(fetched))
        unpack = time.perf_counter() - started
        assert len(os.listdir(os.path.join(folder, "images", "train"))) > 0
    return pack, up, down, unpack


def floor(storage: Storage, total_bytes: int, work: str, run: int) -> tuple[float, float]:
    blob = os.path.join(work, f"one-object-{run}")
    with open(blob, "wb") as f:
        f.write(os.urandom(total_bytes))
    url = S3Url("bench", f"floor/one-object-{run}")
    return timed(lambda: storage.upload_file(blob, url)), timed(lambda: storage.download_file(url, blob + ".down"))


def median_run(runs: list[tuple]) -> tuple:
    """The run whose total is the median."""
    return sorted(runs, key=sum)[len(runs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--kb", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work-dir", help="where the files are written and read (default: the temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work, SeaweedS3() as s3:
        storage = Storage(endpoint=s3.endpoint, access_key=s3.access_key, secret_key=s3.secret_key)
        storage.client.create_bucket(Bucket="bench")
        source = os.path.join(work, "dataset")
        total = make_dataset(source, args.images, args.kb * 1000)
        print(f"{args.images} files x {args.kb} KB = {total / 1e6:.0f} MB through SeaweedFS at {s3.endpoint}")
        rows = {"per-file, sequential": per_file(storage, source, work, 1),
                "per-file, 8 threads": per_file(storage, source, work, 8)}
        packed_runs, floor_runs = [], []
        for run in range(args.repeats):
            packed_runs.append(packed(storage, source, work, run))
            floor_runs.append(floor(storage, total, work, run))
        pack, up, down, unpack = median_run(packed_runs)
        rows["packed (pipeline)"] = (pack + up, down + unpack)
        rows["floor: one object"] = median_run(floor_runs)
        floor_total = sum(rows["floor: one object"])
        print(f"{'way':<24}{'up s':>8}{'down s':>8}{'total s':>9}{'x floor':>9}")
        for name, (up_s, down_s) in rows.items():
            print(f"{name:<24}{up_s:8.2f}{down_s:8.2f}{up_s + down_s:9.2f}{(up_s + down_s) / floor_total:9.2f}")
        print(f"packed: pack {pack:.2f} s, unpack {unpack:.2f} s included")
        print(f"RESULT artifact_transfer {sum(rows['packed (pipeline)']) / floor_total:.2f}")


if __name__ == "__main__":
    main()
