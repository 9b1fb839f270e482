"""Moving a 2,000-image dataset artifact through S3 (SeaweedFS on 127.0.0.1), measured side by side:

- per-file:   one object per file, as KFP's launcher stores an unpacked artifact folder
              (sequential, as the launcher does, and with 8 threads);
- packed:     what the pipeline does: tar shards (components/packing.py), uploaded, downloaded, unpacked;
- floor:      one object holding the same bytes, no packing at all.

Each total is up + down (+ pack and unpack for the packed way). The last line is
``RESULT artifact_transfer <packed total / floor total>``.

    python bench/artifact_transfer.py [--images 2000] [--kb 30]
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from components.packing import materialized, pack_in_place, shards  # noqa: E402
from components.storage import S3Url, Storage  # noqa: E402
from pipeline.seaweed import SeaweedS3  # noqa: E402


def timed(func):
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


def packed(storage: Storage, source: str, work: str) -> tuple[float, float, float, float]:
    artifact = os.path.join(work, "packed")
    shutil.copytree(source, artifact)
    pack = timed(lambda: pack_in_place(artifact, ("images",)))
    prefix = S3Url("bench", "packed")
    up = timed(lambda: storage.upload_dir(artifact, prefix))
    fetched = os.path.join(work, "packed-down")
    down = timed(lambda: storage.download_prefix(prefix, fetched))
    assert shards(fetched)

    def unpack():
        with materialized(fetched) as folder:
            assert len(os.listdir(os.path.join(folder, "images", "train"))) > 0

    return pack, up, down, timed(unpack)


def floor(storage: Storage, total_bytes: int, work: str) -> tuple[float, float]:
    blob = os.path.join(work, "one-object")
    with open(blob, "wb") as f:
        f.write(os.urandom(total_bytes))
    url = S3Url("bench", "floor/one-object")
    return timed(lambda: storage.upload_file(blob, url)), timed(lambda: storage.download_file(url, blob + ".down"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--kb", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work, SeaweedS3() as s3:
        storage = Storage(endpoint=s3.endpoint, access_key=s3.access_key, secret_key=s3.secret_key)
        storage.client.create_bucket(Bucket="bench")
        source = os.path.join(work, "dataset")
        total = make_dataset(source, args.images, args.kb * 1000)
        print(f"{args.images} files x {args.kb} KB = {total / 1e6:.0f} MB through SeaweedFS at {s3.endpoint}")
        rows = {"per-file, sequential": per_file(storage, source, work, 1),
                "per-file, 8 threads": per_file(storage, source, work, 8)}
        pack, up, down, unpack = packed(storage, source, work)
        rows["packed (pipeline)"] = (pack + up, down + unpack)
        rows["floor: one object"] = floor(storage, total, work)
        floor_total = sum(rows["floor: one object"])
        print(f"{'way':<24}{'up s':>8}{'down s':>8}{'total s':>9}{'x floor':>9}")
        for name, (up_s, down_s) in rows.items():
            print(f"{name:<24}{up_s:8.2f}{down_s:8.2f}{up_s + down_s:9.2f}{(up_s + down_s) / floor_total:9.2f}")
        print(f"packed: pack {pack:.2f} s, unpack {unpack:.2f} s included")
        print(f"RESULT artifact_transfer {sum(rows['packed (pipeline)']) / floor_total:.2f}")


if __name__ == "__main__":
    main()
