"""Unpacking a 2,000-image shard, measured side by side: this project's extraction (Python's ``tarfile``
reads and checks every member, and the module writes the checked members itself: one parser) against
GNU tar extracting the same shard (what the data steps did before, after the same checks: two parsers,
which read some hostile headers differently, see docs/threat-model.md).

Runs alternate, ``--repeats`` of each, pending writes flushed before each; the medians are reported. The
last line is ``RESULT extract <one parser / GNU tar>``.

    python bench/extract.py [--images 2000] [--kb 30] [--repeats 7] [--work-dir /dev/shm]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from artifact_transfer import make_dataset

from yolo_kfp.infra.packing import extract, gnu_tar, pack_in_place


def timed(func) -> float:
    os.sync()
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--kb", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--work-dir", help="where the files are written and read (default: the temp dir)")
    args = parser.parse_args()
    tar = gnu_tar()
    assert tar, "GNU tar is needed for the comparison"
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
        artifact = os.path.join(work, "artifact")
        total = make_dataset(artifact, args.images, args.kb * 1000)
        (shard,) = pack_in_place(artifact, ("images",))
        print(f"one shard of {args.images} files x {args.kb} KB = {total / 1e6:.0f} MB")
        ours, gnu = [], []
        for run in range(args.repeats):
            target = os.path.join(work, f"ours-{run}")
            ours.append(timed(lambda: extract(shard, target)))  # noqa: B023 (called at once)
            shutil.rmtree(target)
            target = os.path.join(work, f"gnu-{run}")
            os.makedirs(target)
            gnu.append(timed(lambda: subprocess.run([tar, "--extract", "--file", shard, "--directory", target],  # noqa: B023
                                                    check=True)))
            shutil.rmtree(target)
        one, two = statistics.median(ours), statistics.median(gnu)
        print(f"one parser (check and write): {one:.3f} s   GNU tar (write only): {two:.3f} s   "
              f"per file: {one / args.images * 1e6:.0f} us and {two / args.images * 1e6:.0f} us")
        print(f"RESULT extract {one / two:.2f}")


if __name__ == "__main__":
    main()
