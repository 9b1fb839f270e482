"""The convert step at 1k, 10k and 100k images: seconds, peak memory and how they grow; against FiftyOne.

Each size is a raw dataset in the download step's layout made as ``bench/convert.py`` makes it (images
hard-linked to a few synthetic JPEGs, ``--boxes-per-image`` boxes each from the three classes and a
decoy), kept under ``--data`` (default ``/work/bench-data/convert-scale``; ``--clean`` removes it).
Every run is a fresh child process whose process tree is sampled for its resident memory:

- ours: the convert step's core (``convert_to_yolo``), ``--repeats`` times per size, sizes alternating;
- the whole step at the largest size once: its raw dataset packed in tar shards as the download step
  leaves it, unpacked (``materialized``), converted and packed again, as ``components/convert.py`` does;
- FiftyOne at ``--fiftyone-images`` (10k): ``bench/convert.py``'s route (import OpenImagesV7Dataset,
  ``random_split``, export YOLOv5Dataset), ``--repeats`` times, each right after one of ours at that
  size, against a mongod started here (so that its start is not counted).

Seconds are those of the work itself on both sides (Python's start and imports left out, as in
``bench/convert.py``), medians of the repeats; each repeat starts once the CPUs are idle, each run after
``os.sync`` and in a folder of its own (all removed at the end: on this VM's ext4, files created within
minutes of many deletions nearby cost several times more). The growth exponent is
log(t(100k) / t(10k)) / log(10): 1.0 is linear.
The last line is ``RESULT convert_scale <exponent 10k->100k> <peak RSS GiB at 100k> <FiftyOne / ours at
10k, medians>``.

    python bench/convert_scale.py [--sizes 1000 10000 100000] [--repeats 3] [--fiftyone-images 10000]
"""

import argparse
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(BENCH, "..")
sys.path.insert(0, BENCH)

from convert import make_raw  # noqa: E402
from metadata_scale import GIB, child, load, wait_until_idle  # noqa: E402

DATA = "/work/bench-data/convert-scale"
OURS = """
from yolo_kfp.data.convert import convert_to_yolo
began = time.perf_counter()
stats = convert_to_yolo(raw_dir={raw!r}, output_dir={out!r}, classes=["Bicycle", "Car", "Traffic sign"], seed=42)
result = {{"seconds": time.perf_counter() - began, "images": stats["images"], "boxes": stats["boxes"]}}
"""
STEP = """
from yolo_kfp.data.convert import convert_to_yolo
from yolo_kfp.infra.packing import materialized, pack_in_place
with materialized({raw!r}) as raw:
    stats = convert_to_yolo(raw_dir=raw, output_dir={out!r}, classes=["Bicycle", "Car", "Traffic sign"], seed=42)
pack_in_place({out!r}, ("images", "labels"))
result = {{"images": stats["images"], "boxes": stats["boxes"]}}
"""
FIFTYONE = """
sys.path.insert(0, {bench!r})
from convert import fiftyone_route
import_s, export_s, labels = fiftyone_route({raw!r}, {out!r})
result = {{"seconds": import_s + export_s, "import": import_s, "export": export_s, "labels": labels}}
"""


def raw_dataset(data: str, images: int, boxes_per_image: int) -> str:
    raw = os.path.join(data, f"raw-{images}")
    marker = os.path.join(raw, "made.txt")
    if not os.path.exists(marker) or open(marker).read() != f"{images} {boxes_per_image}":
        shutil.rmtree(raw, ignore_errors=True)
        make_raw(raw, images, boxes_per_image)
        with open(marker, "w") as f:
            f.write(f"{images} {boxes_per_image}")
    return raw


def packed_copy(raw: str, target: str) -> str:
    """The raw dataset as the download step leaves it: metadata beside data/ packed in tar shards (kept)."""
    from yolo_kfp.infra.packing import pack_in_place

    if not os.path.exists(os.path.join(target, "made.txt")):
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(raw, target, copy_function=os.link, ignore=shutil.ignore_patterns("templates"))
        pack_in_place(target, ("data",))
    return target


def start_mongod(work: str) -> tuple[subprocess.Popen, str]:
    import importlib.util

    from yolo_kfp.local.s3_server import free_ports

    binary = os.path.join(importlib.util.find_spec("fiftyone").submodule_search_locations[0], "db", "bin", "mongod")
    dbpath = os.path.join(work, "mongo")
    os.makedirs(dbpath, exist_ok=True)
    (port,) = free_ports(1)
    process = subprocess.Popen([binary, "--dbpath", dbpath, "--port", str(port), "--bind_ip", "127.0.0.1",
                                "--logpath", os.path.join(work, "mongod.log"), "--nounixsocket"],
                               stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return process, f"mongodb://127.0.0.1:{port}"
        time.sleep(0.2)
    process.terminate()
    raise TimeoutError("mongod did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--boxes-per-image", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fiftyone-images", type=int, default=10000)
    parser.add_argument("--wait-idle", type=float, default=300,
                        help="seconds to wait at most, before each repeat, for the CPUs to be idle (others' jobs)")
    parser.add_argument("--clean", action="store_true", help="remove --data at the end")
    args = parser.parse_args()
    started = time.perf_counter()
    sizes = sorted(set(args.sizes) | {args.fiftyone_images})
    raws = {n: raw_dataset(args.data, n, args.boxes_per_image) for n in sizes}
    largest = max(sizes)
    packed = packed_copy(raws[largest], os.path.join(args.data, f"packed-{largest}"))
    print(f"raw datasets ready ({', '.join(f'{n:,}' for n in sizes)} images, {args.boxes_per_image} boxes each) "
          f"in {time.perf_counter() - started:.0f} s; {load()}", flush=True)
    work = os.path.join(args.data, "work")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(work, "tmp"))
    tempfile.tempdir = os.path.join(work, "tmp")
    env = {**os.environ, "TMPDIR": os.path.join(work, "tmp"), "FIFTYONE_DO_NOT_TRACK": "true"}
    mongod, uri = start_mongod(work)
    env["FIFTYONE_DATABASE_URI"] = uri
    # Every run writes a folder of its own, all removed at the end: on this VM's ext4, files created within
    # about half a minute of many others' deletion cost several times more (the inode allocator skips the
    # recently deleted inodes, ``recently_deleted`` in a kernel profile), which would be measured too.
    outs = iter(os.path.join(work, f"out-{n}") for n in range(1_000_000))
    ours: dict[int, list[dict]] = {n: [] for n in sizes}
    fiftyone: list[dict] = []
    waited = 0.0
    try:
        for repeat in range(args.repeats):
            waited += wait_until_idle(args.wait_idle)
            for n in sizes:  # each run after the ones before are on disk (os.sync): their writeback would count
                os.sync()
                ours[n].append(child(OURS.format(raw=raws[n], out=next(outs)), env))
                if n == args.fiftyone_images:
                    os.sync()
                    fiftyone.append(child(FIFTYONE.format(bench=BENCH, raw=raws[n], out=next(outs)), env))
            print(f"repeat {repeat + 1}: " + ", ".join(f"{n:,} {ours[n][-1]['result']['seconds']:.2f} s" for n in sizes)
                  + f"; FiftyOne {fiftyone[-1]['result']['seconds']:.2f} s; {load()}; waited {waited:.0f} s for idle "
                  "CPUs so far", flush=True)
        os.sync()
        step = child(STEP.format(raw=packed, out=next(outs)), env)
    finally:
        mongod.terminate()
        mongod.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    def median(runs: list[dict], key: str = "seconds") -> float:
        """The median of the work's own seconds (Python's start and imports left out, on both sides)."""
        return statistics.median(r["result"][key] for r in runs)

    print(f"\nconvert, median of {args.repeats} (each run a fresh process; seconds of convert_to_yolo, process in "
          "brackets)")
    print(f"{'images':>8}{'boxes':>9}{'seconds':>9}{'process':>9}{'images/s':>10}{'peak RSS GiB':>14}{'growth':>8}"
          "   runs (s)")
    previous = None
    for n in sizes:
        seconds = median(ours[n])
        growth = f"{math.log(seconds / median(ours[previous])) / math.log(n / previous):8.2f}" if previous else ""
        process = statistics.median(r["seconds"] for r in ours[n])
        print(f"{n:8,}{ours[n][0]['result']['boxes']:9,}{seconds:9.2f}{f'({process:.2f})':>9}{n / seconds:10.0f}"
              f"{max(r['peak_rss'] for r in ours[n]) / GIB:14.3f}{growth:>8}   "
              + ", ".join(f"{r['result']['seconds']:.2f}" for r in ours[n]))
        previous = n
    print(f"the whole step at {largest:,} (packed raw dataset unpacked, converted, packed): {step['seconds']:.2f} s "
          "(process), "
          f"peak RSS {step['peak_rss'] / GIB:.3f} GiB")
    fo = median(fiftyone)
    ratio = fo / median(ours[args.fiftyone_images])
    pairs = [f["result"]["seconds"] / o["result"]["seconds"]
             for f, o in zip(fiftyone, ours[args.fiftyone_images], strict=True)]
    runs = ", ".join(f"{r['result']['seconds']:.2f}" for r in fiftyone)
    parts = {key: median(fiftyone, key) for key in ("import", "export")}
    print(f"FiftyOne at {args.fiftyone_images:,}: {fo:.2f} s (runs {runs}; import {parts['import']:.2f} s, split + "
          f"export {parts['export']:.2f} s), peak RSS {max(r['peak_rss'] for r in fiftyone) / GIB:.3f} GiB without "
          "its mongod")
    print(f"FiftyOne / ours at {args.fiftyone_images:,}: {ratio:.1f} (medians); run by run "
          + ", ".join(f"{p:.1f}" for p in pairs))
    below = sorted(args.sizes)[-2]
    exponent = math.log(median(ours[largest]) / median(ours[below])) / math.log(largest / below)
    peak = max(max(r["peak_rss"] for r in ours[largest]), step["peak_rss"])
    print(f"peaks for the step default (GiB): convert {peak / GIB:.3f}; total {time.perf_counter() - started:.0f} s; "
          f"{load()}")
    if args.clean:
        shutil.rmtree(args.data, ignore_errors=True)
    print(f"RESULT convert_scale {exponent:.2f} {max(r['peak_rss'] for r in ours[largest]) / GIB:.2f} {ratio:.1f}")


if __name__ == "__main__":
    main()
