"""The plan step on Open Images V7's train-split metadata at its real size, against the raw read floor;
then one download shard (and the merge) on the local S3 mirror, and what the shard reads.

Writes Open Images-shaped metadata (``--data``, default ``/work/bench-data/metadata-scale``; kept
for the next run, ``--clean`` removes it) in FiftyOne's zoo layout: ``labels/detections.csv``
(``oidv6-train-annotations-bbox.csv``: 14,610,229 box rows, its 21 columns, about 2.1 GB),
``metadata/image_ids.csv`` (``train-images-boxable-with-rotation.csv``: 1,743,042 rows, its 12
columns), ``metadata/classes.csv`` (600 classes, Bicycle, Car and Traffic sign under their real MIDs)
and ``metadata/hierarchy.json``. Values are drawn as Open Images has them: classes with a Zipf long tail
(the most frequent class 14% of the boxes, the rarest about 3,500 boxes), several boxes per image
(8.4 on average, one class often repeated), IsOccluded/IsTruncated/IsGroupOf/IsDepiction/IsInside
flags, xclick rows with their eight click coordinates and activemil rows without (-1), rows sorted by
ImageID; in the image list Flickr-like URLs, authors, titles (some quoted, with commas), sizes, MD5s
and rotations.

Then, each in a fresh child process whose process tree is sampled for its resident memory, the runs
alternating and each started once the CPUs are idle (other people's jobs would be measured too):

- the floors, with the two large CSVs evicted from the page cache first (cold) and read again (warm):
  ``cat`` of them to /dev/null (the machine's raw sequential read), and pyarrow reading them with no
  work (its multithreaded reader converting only ImageID);
- the plan step's core (``make_plan``, as the plan-download component runs it) for the notebook's 3
  classes at 300 per class and for 30 classes at 3,000 per class, cold and warm, and once more with
  FiftyOne imported as in a first run, which fetches the metadata through it (its memory);
- with ``--fiftyone-parse``, FiftyOne's whole Open Images download on the full-size files (what a first
  run did before the plan fetched the files with FiftyOne's helpers alone);
- one download shard of 1,000 planned images (the 30-class plan's first shard) fetched with FiftyOne's
  download code from SeaweedFS on 127.0.0.1 and packed as the component does, with the mirror's
  metadata (the full-size files) in its environment as in the demo: its time, memory and bytes read,
  and, run again under ``strace``, the files its process tree opens; then the merge of the whole plan
  (that shard and the others packed here from its images).

Times are medians of ``--repeats`` cold runs. The last line is ``RESULT metadata_scale <plan time / cat
time, the worse setting> <peak RSS GiB, the worse setting>``.

    python bench/metadata_scale.py [--data DIR] [--repeats 3] [--fiftyone-parse] [--skip-shard] [--clean]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from yolo_kfp.data import openimages as oi
from yolo_kfp.local import synthetic

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DATA = "/work/bench-data/metadata-scale"
SPLIT = "train"
ROWS = 14_610_229  # oidv6-train-annotations-bbox.csv
IMAGES = 1_743_042  # train-images-boxable-with-rotation.csv
CLASS_COUNT = 600
SEED = 42
# Ranks (1 = most boxes) of the notebook's classes in the generated Zipf distribution, near their real box counts.
NOTEBOOK_RANKS = {"Car": 8, "Bicycle": 70, "Traffic sign": 250}
SETTINGS = (("3 classes x 300", 3, 300), ("30 classes x 3,000", 30, 3000))
SHARD_IMAGES = 1000
GIB = 1 << 30


# ---------------------------------------------------------------- generating the metadata


def class_table() -> tuple[list[str], list[str]]:
    """MIDs and display names by rank: the notebook's classes under their real MIDs, the others made up."""
    rng = np.random.default_rng(SEED)
    alphabet = np.array(list("0123456789bcdfghjklmnpqrstvwxyz_"))
    mids, names = [], []
    real = {rank: name for name, rank in NOTEBOOK_RANKS.items()}
    for rank in range(1, CLASS_COUNT + 1):
        if rank in real:
            names.append(real[rank])
            mids.append(synthetic.TARGET_CLASSES[real[rank]])
        else:
            names.append(f"Class {rank:03d}")
            mids.append("/m/0" + "".join(rng.choice(alphabet, int(rng.integers(3, 6)))))
    return mids, names


def chosen_classes(count: int) -> list[str]:
    """The notebook's three classes, and for more a spread over the ranks from the most frequent to the rarest."""
    _, names = class_table()
    picked = [name for name in NOTEBOOK_RANKS]
    ranks = np.unique(np.round(np.geomspace(1, CLASS_COUNT, 200)).astype(int))
    ranks = [r for r in ranks if names[r - 1] not in picked]
    for i in np.linspace(0, len(ranks) - 1, count - len(picked)).round().astype(int):
        picked.append(names[ranks[i] - 1])
    return picked[:count]


def _strings(values: np.ndarray, width: int) -> pa.Array:
    """A fixed-width uint8 matrix (rows x width) as an Arrow string array, without a copy per row."""
    flat = np.ascontiguousarray(values, dtype=np.uint8).reshape(-1)
    offsets = np.arange(0, flat.size + 1, width, dtype=np.int32)
    return pa.StringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(flat))


def _hex(ids: np.ndarray) -> pa.Array:
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    as_bytes = ids.astype(">u8").view(np.uint8).reshape(-1, 8)
    return _strings(np.stack([digits[as_bytes >> 4], digits[as_bytes & 15]], axis=2).reshape(-1, 16), 16)


def _random_text(rng, count: int, width: int, alphabet: bytes) -> pa.Array:
    table = np.frombuffer(alphabet, dtype=np.uint8)
    return _strings(table[rng.integers(0, len(table), (count, width))], width)


def _fixed6(micro: np.ndarray) -> pa.Array:
    """Millionths as Open Images writes coordinates: ``0.012500``, ``1.000000``."""
    whole = pc.cast(pa.array(micro // 1_000_000), pa.string())
    fraction = pc.utf8_lpad(pc.cast(pa.array(micro % 1_000_000), pa.string()), 6, "0")
    return pc.binary_join_element_wise(whole, fraction, ".")


def _lines(columns: list) -> pa.Array:
    return pc.binary_join_element_wise(pc.binary_join_element_wise(*columns, ","), "", "\n")


def _write(out, lines: pa.Array) -> int:
    offsets, data = lines.buffers()[1], lines.buffers()[2]
    first, last = np.frombuffer(offsets, dtype=np.int32)[[lines.offset, lines.offset + len(lines)]]
    out.write(memoryview(data)[first:last])
    return int(last - first)


def image_ids(count: int) -> np.ndarray:
    """``count`` distinct random 64-bit ids, sorted (Open Images' ImageIDs are 16 hex digits)."""
    rng = np.random.default_rng(SEED + 1)
    ids = np.unique(rng.integers(0, 2 ** 63, int(count * 1.01), dtype=np.int64).astype(np.uint64))
    ids = ids[np.sort(rng.choice(len(ids), count, replace=False))]
    return ids


def boxes_per_image(count: int, rows: int) -> np.ndarray:
    """Several boxes per image (geometric, 8.4 on average, some with dozens), summing to ``rows``."""
    rng = np.random.default_rng(SEED + 2)
    per_image = rng.geometric(count / rows, count)
    while per_image.sum() != rows:
        diff = rows - int(per_image.sum())
        pick = rng.choice(count, min(abs(diff), count), replace=False)
        per_image[pick] = np.maximum(1, per_image[pick] + np.sign(diff))
    return per_image


def write_detections(path: str, ids: np.ndarray, per_image: np.ndarray, chunk: int = 1_000_000) -> int:
    mids, _ = class_table()
    mids = pa.array(mids)
    zipf = 1.0 / np.arange(1, CLASS_COUNT + 1)
    zipf /= zipf.sum()
    image_of_box = np.repeat(np.arange(len(ids)), per_image)
    first_box = np.zeros(len(image_of_box), dtype=bool)
    first_box[np.concatenate([[0], np.cumsum(per_image)[:-1]])] = True
    rng = np.random.default_rng(SEED + 3)
    written = 0
    with open(path, "wb") as out:
        out.write((",".join(oi.DETECTION_COLUMNS) + "\n").encode())
        for start in range(0, len(image_of_box), chunk):
            images = image_of_box[start:start + chunk]
            n = len(images)
            # one class often repeats within an image (several people, cars...): half the boxes copy the one before
            fresh = first_box[start:start + chunk] | (rng.random(n) < 0.5)
            fresh[0] = True
            label = rng.choice(CLASS_COUNT, n, p=zipf)
            label = label[np.maximum.accumulate(np.where(fresh, np.arange(n), 0))]
            x0, y0 = rng.integers(0, 900_000, n), rng.integers(0, 900_000, n)
            x1 = np.minimum(1_000_000, x0 + rng.integers(5_000, 1_000_000, n))
            y1 = np.minimum(1_000_000, y0 + rng.integers(5_000, 1_000_000, n))
            xclick = rng.random(n) < 0.8
            flags = [pc.cast(pa.array(np.where(rng.random(n) < p, 1, 0)), pa.string())
                     for p in (0.6, 0.3, 0.06, 0.05, 0.01)]
            clicks = []
            for lo, hi in ((x0, x1), (x0, x1), (x0, x1), (x0, x1), (y0, y1), (y0, y1), (y0, y1), (y0, y1)):
                click = _fixed6(lo + ((hi - lo) * rng.random(n)).astype(np.int64))
                clicks.append(pc.if_else(pa.array(xclick), click, pa.scalar("-1")))
            columns = [_hex(ids[images]), pc.if_else(pa.array(xclick), pa.scalar("xclick"), pa.scalar("activemil")),
                       mids.take(pa.array(label)), pa.scalar("1"), _fixed6(x0), _fixed6(x1), _fixed6(y0),
                       _fixed6(y1), *flags, *clicks]
            written += _write(out, _lines(columns))
    return written


AUTHORS = ["Michael Gil", "Dennis Jarvis", "Carlos", "Sharon Mollerus", "Tony Webster", "Jon Bunting", "Ana",
           "Marco Verch", "Guilhem Vellut", "m01229", "Matt Brown", "Fred Moore", "bob", "Jens Mayer"]
TITLES = ["Wilderness Canoe", "IMG_4410", "\"Bike, parked\"", "DSC_0021", "Street in Paris", "Untitled",
          "\"Red car, 1967\"", "Traffic", "Morning commute", "P1010042", "\"Signs, signs\"", "Holiday 2012",
          "Market day", "\"Him, \"\"the\"\" dog\""]


def write_image_list(path: str, ids: np.ndarray, chunk: int = 500_000) -> int:
    rng = np.random.default_rng(SEED + 4)
    written = 0

    def pick(values, n):
        return pa.array(values).take(pa.array(rng.integers(0, len(values), n)))

    def number(low, high, n):
        return pc.cast(pa.array(rng.integers(low, high, n)), pa.string())

    with open(path, "wb") as out:
        out.write((",".join(oi.IMAGE_ID_COLUMNS) + "\n").encode())
        for start in range(0, len(ids), chunk):
            n = len(ids[start:start + chunk])
            farm, server, photo = number(1, 10, n), number(1000, 9999, n), number(2_000_000_000, 9_999_999_999, n)
            secret = _random_text(rng, n, 10, b"0123456789abcdef")
            user = pc.binary_join_element_wise(number(10_000_000, 160_000_000, n), pick(["@N00", "@N03", "@N06"], n),
                                               "")
            original = pc.binary_join_element_wise("https://farm", farm, ".staticflickr.com/", server, "/", photo,
                                                   "_", secret, "_o.jpg", "")
            landing = pc.binary_join_element_wise("https://www.flickr.com/photos/", user, "/", photo, "")
            profile = pc.binary_join_element_wise("https://www.flickr.com/people/", user, "/", "")
            thumb = pc.binary_join_element_wise("https://c", number(1, 9, n), ".staticflickr.com/", farm, "/", server,
                                                "/", photo, "_", secret, "_z.jpg?zz=1", "")
            md5 = pc.binary_join_element_wise(
                _random_text(rng, n, 22, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"), "==", "")
            columns = [_hex(ids[start:start + n]), pa.scalar("train"), original, landing,
                       pick(["https://creativecommons.org/licenses/by/2.0/"] * 5
                            + ["https://creativecommons.org/licenses/by-sa/2.0/"], n),
                       profile, pick(AUTHORS, n), pick(TITLES, n), number(50_000, 9_000_000, n), md5, thumb,
                       pick(["0.0"] * 8 + ["", "90.0", "180.0", "270.0"], n)]
            written += _write(out, _lines(columns))
    return written


def write_metadata(split_dir: str, rows: int, images: int) -> dict:
    """The four metadata files of the split; returns their sizes."""
    for folder in ("labels", "metadata"):
        os.makedirs(os.path.join(split_dir, folder), exist_ok=True)
    ids = image_ids(images)
    write_detections(os.path.join(split_dir, oi.DETECTIONS_CSV), ids, boxes_per_image(images, rows))
    write_image_list(os.path.join(split_dir, oi.IMAGE_IDS_CSV), ids)
    mids, names = class_table()
    with open(os.path.join(split_dir, oi.CLASSES_CSV), "w") as f:
        f.writelines(f"{mid},{name}\n" for mid, name in zip(mids, names, strict=True))
    with open(os.path.join(split_dir, oi.HIERARCHY_JSON), "w") as f:
        json.dump({"LabelName": "Entity", "Subcategory": [{"LabelName": name} for name in names]}, f)
    return {name: os.path.getsize(os.path.join(split_dir, name)) for name in oi.METADATA_FILES}


# ---------------------------------------------------------------- measuring a process tree


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo.extend(children.get(found[-1], []))
    return found


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def measured(args: list[str], env: dict | None = None, interval: float = 0.05, refresh: int = 10) -> dict:
    """Runs ``args`` as a child and returns its wall seconds and the peak of its process tree's summed
    resident memory, sampled every ``interval`` s (the tree itself every ``refresh`` samples: walking /proc
    more often took a sixth of the plan step's time on 2 cores)."""
    started = time.perf_counter()
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, done = [0], threading.Event()

    def sample():
        tree, n = [process.pid], 0
        while not done.is_set():
            if n % refresh == 0:
                tree = _tree(process.pid)
            peak[0] = max(peak[0], sum(_rss(p) for p in tree))
            n += 1
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if process.returncode:
        raise RuntimeError(f"{args[:3]} failed ({process.returncode}):\n{stderr[-3000:]}")
    return {"seconds": seconds, "peak_rss": peak[0], "stdout": stdout, "stderr": stderr}


def evict(paths: list[str]) -> None:
    """Drops ``paths`` from the page cache, so that the next read comes from the disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


# What the child runs: the work, then its own counters (/proc/self/io) and peak as JSON on the last line.
CHILD = """
import json, os, sys, time
started = time.perf_counter()
{code}
seconds = time.perf_counter() - started
with open("/proc/self/io") as f:
    io = dict((k, int(v)) for k, v in (line.split(": ") for line in f.read().splitlines()))
with open("/proc/self/status") as f:  # VmHWM: ru_maxrss would count the parent's memory, which exec carries over
    maxrss = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) * 1024
print(json.dumps({{"work_seconds": seconds, "io": io, "maxrss": maxrss, "result": result}}))
"""


def child(code: str, env: dict | None = None) -> dict:
    run = measured([sys.executable, "-c", CHILD.format(code=code)], env=env)
    report = json.loads(run["stdout"].strip().splitlines()[-1])
    # the sampling can miss a short peak, which the kernel's high-water mark for the child itself does not
    return {**run, **report, "peak_rss": max(run["peak_rss"], report["maxrss"])}


# ---------------------------------------------------------------- the runs

PLAN_CODE = """
from yolo_kfp.data.download_plan import make_plan
{before}
plan = make_plan(plan_dir={plan_dir!r}, classes={classes!r}, max_samples_per_class={quota}, split="train", seed={seed},
                 shard_size={shard_size})
result = {{"images": plan["images"], "detection_rows": plan["detection_rows"], "shards": len(plan["shards"])}}
"""
SHARD_CODE = """
from yolo_kfp.data.download_fetch import fetch_shard
from yolo_kfp.infra.packing import pack_in_place
record = fetch_shard(plan_dir={plan_dir!r}, shard={shard!r}, output_dir={out!r})
pack_in_place({out!r}, ("data",))
result = record
"""
MERGE_CODE = """
from yolo_kfp.data.download_merge import merge_shards
from yolo_kfp.infra.packing import pack_in_place
result = merge_shards(plan_dir={plan_dir!r}, shard_dirs={shards!r}, output_dir={out!r})
pack_in_place({out!r}, ("data",))
"""
FIFTYONE_PARSE_CODE = """
from yolo_kfp.data.fiftyone_openimages import download_split
download_split({split_dir!r}, "train", [])
result = sorted(os.listdir(os.path.join({split_dir!r}, "metadata")))
"""


def prepare(data: str) -> str:
    """The full-size split (generated once, kept under ``data``); returns its folder."""
    split_dir = os.path.join(data, "open-images", SPLIT)
    marker = os.path.join(split_dir, "generated.json")
    wanted = {"rows": ROWS, "images": IMAGES, "classes": CLASS_COUNT, "seed": SEED, "version": 1}
    if os.path.exists(marker):
        with open(marker) as f:
            if json.load(f) == wanted:
                return split_dir
    shutil.rmtree(split_dir, ignore_errors=True)
    started = time.perf_counter()
    sizes = write_metadata(split_dir, ROWS, IMAGES)
    print(f"generated {ROWS:,} box rows and {IMAGES:,} images in {time.perf_counter() - started:.0f} s: "
          + ", ".join(f"{name} {size / 1e6:,.0f} MB" for name, size in sizes.items()), flush=True)
    with open(marker, "w") as f:
        json.dump(wanted, f)
    return split_dir


PARSE_CODE = """
import pyarrow as pa
from pyarrow import csv as pacsv
rows = [pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(include_columns=["ImageID"],
                                                               column_types={{"ImageID": pa.string()}})).num_rows
        for path in {files!r}]
result = {{"rows": rows}}
"""


def floor(files: list[str], cold: bool) -> dict:
    """The raw sequential read: ``cat`` of the files to /dev/null."""
    os.sync()  # every run after the writes before it are on disk
    if cold:
        evict(files)
    return measured(["sh", "-c", 'cat "$@" > /dev/null', "cat", *files])


def parse_floor(files: list[str], env: dict, cold: bool) -> dict:
    """pyarrow reading the files with no work: its multithreaded reader, only the ImageID column converted."""
    os.sync()
    if cold:
        evict(files)
    return child(PARSE_CODE.format(files=files), env)


def plan(files: list[str], env: dict, plan_dir: str, classes: list[str], quota: int, cold: bool,
         before: str = "") -> dict:
    shutil.rmtree(plan_dir, ignore_errors=True)
    os.sync()
    if cold:
        evict(files)
    return child(PLAN_CODE.format(before=before, plan_dir=plan_dir, classes=classes, quota=quota, seed=SEED,
                                  shard_size=SHARD_IMAGES), env)


def load() -> str:
    return "load average " + " ".join(open("/proc/loadavg").read().split()[:3])


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return sum(fields), fields[3] + fields[4]  # all, idle + iowait


def wait_until_idle(timeout: float, idle: float = 0.9, window: float = 2.0) -> float:
    """Waits (at most ``timeout`` s) until the CPUs were ``idle`` for a ``window`` of seconds: other people's
    jobs on a shared machine would be measured too. Returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        total, free = _cpu_times()
        time.sleep(window)
        total2, free2 = _cpu_times()
        if (free2 - free) >= idle * (total2 - total):
            break
    return time.monotonic() - started


def upload_images(s3, image_ids: list[str], work: str) -> int:
    """The shard's images into the mirror's bucket: a few synthetic JPEGs, one object per planned ImageID."""
    from concurrent.futures import ThreadPoolExecutor

    templates = synthetic.write_split(os.path.join(work, "templates"), SPLIT, 4, SEED)
    bodies = []
    for name in templates:
        with open(os.path.join(work, "templates", oi.DATA_DIR, f"{name}.jpg"), "rb") as f:
            bodies.append(f.read())
    client = s3.client()
    client.create_bucket(Bucket=oi.BUCKET)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda a: client.put_object(Bucket=oi.BUCKET, Key=f"{SPLIT}/{a[1]}.jpg",
                                                  Body=bodies[a[0] % len(bodies)]), enumerate(image_ids)))
    return sum(len(bodies[i % len(bodies)]) for i in range(len(image_ids)))


def opened_files(log: str) -> list[str]:
    """The files a process tree opened (strace's successful open/openat lines)."""
    paths = []
    with open(log) as f:
        for line in f:
            if ("open(" in line or "openat(" in line) and '"' in line and " = -1 " not in line:
                paths.append(line.split('"', 2)[1])
    return paths


def shard_and_merge(split_dir: str, env: dict, plan_dir: str, work: str) -> dict:
    """One shard of the 30-class plan fetched from the mirror (plain, then under strace), then merged."""
    from yolo_kfp.local.s3_server import SeaweedS3

    with open(os.path.join(plan_dir, "plan.json")) as f:
        shard, image_ids = next(iter(json.load(f)["shards"].items()))
    report = {"shard": shard, "images": len(image_ids)}
    with SeaweedS3(public_read_buckets=(oi.BUCKET,)) as s3:
        report["image_bytes"] = upload_images(s3, image_ids, work)
        shard_env = {**env, "AWS_ENDPOINT_URL_S3": s3.endpoint}
        out = os.path.join(work, "shard")
        report["run"] = child(SHARD_CODE.format(plan_dir=plan_dir, shard=shard, out=out), shard_env)
        traced_out, log = os.path.join(work, "shard-traced"), os.path.join(work, "shard.strace")
        measured(["strace", "-f", "-qq", "-e", "trace=open,openat", "-o", log, sys.executable, "-c",
                  CHILD.format(code=SHARD_CODE.format(plan_dir=plan_dir, shard=shard, out=traced_out))],
                 env=shard_env)
    paths = opened_files(log)
    split_real = os.path.realpath(split_dir)
    report["opened_full_metadata"] = sorted({p for p in paths if os.path.realpath(p).startswith(split_real)})
    report["opened_plan"] = sorted({p for p in paths if os.path.realpath(p).startswith(os.path.realpath(plan_dir))})
    report["plan_bytes"] = sum(os.path.getsize(os.path.join(plan_dir, n)) for n in oi.METADATA_FILES)
    report["opened"] = len(set(paths))
    shard_dirs = [out, *packed_shards(plan_dir, shard, work)]
    report["merged_shards"] = len(shard_dirs)
    code = MERGE_CODE.format(plan_dir=plan_dir, shards=shard_dirs, out=os.path.join(work, "merged"))
    report["merge"] = child(code, env)
    return report


def packed_shards(plan_dir: str, fetched: str, work: str) -> list[str]:
    """The plan's other shards as download-shard leaves them (tar files of their images, shard.json), made
    here from the fetched shard's first image, so that the merge joins the whole plan."""
    import io
    import tarfile

    from yolo_kfp.data.download_fetch import SHARD_RECORD
    from yolo_kfp.infra.packing import shards as tar_files

    with tarfile.open(tar_files(os.path.join(work, "shard"))[0]) as tar:
        member = next(m for m in tar.getmembers() if m.isfile())
        body = tar.extractfile(member).read()
    with open(os.path.join(plan_dir, "plan.json")) as f:
        planned = json.load(f)["shards"]
    folders = []
    for n, (name, image_ids) in enumerate(planned.items()):
        if name == fetched:
            continue
        folder = os.path.join(work, "shards", f"{n:05d}")
        os.makedirs(folder)
        with tarfile.open(os.path.join(folder, "shard-00000.tar"), "w", format=tarfile.GNU_FORMAT) as tar:
            for image_id in image_ids:
                info = tarfile.TarInfo(f"{oi.DATA_DIR}/{image_id}.jpg")
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
        with open(os.path.join(folder, SHARD_RECORD), "w") as f:
            json.dump({"shard": name, "images": len(image_ids), "reused_images": 0}, f)
        folders.append(folder)
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DATA, help="where the generated metadata and the runs' outputs go")
    parser.add_argument("--repeats", type=int, default=3, help="cold runs of the floor and each plan (medians)")
    parser.add_argument("--skip-shard", action="store_true")
    parser.add_argument("--fiftyone-parse", action="store_true",
                        help="also measure FiftyOne's whole Open Images download on the full-size files (the "
                             "plan step's first run before it fetched the metadata itself: 15-35 s)")
    parser.add_argument("--wait-idle", type=float, default=300,
                        help="seconds to wait at most, before each repeat, for the CPUs to be idle (others' jobs)")
    parser.add_argument("--clean", action="store_true", help="remove --data at the end")
    args = parser.parse_args()
    split_dir = prepare(args.data)
    work = os.path.join(args.data, "work")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(work, "tmp"))
    tempfile.tempdir = os.path.join(work, "tmp")  # SeaweedFS's folder too: nothing left in /tmp
    env = {**os.environ, "YOLO_KFP_OPEN_IMAGES_METADATA": split_dir, "TMPDIR": os.path.join(work, "tmp"),
           "FIFTYONE_DO_NOT_TRACK": "true"}
    files = [os.path.join(split_dir, oi.DETECTIONS_CSV), os.path.join(split_dir, oi.IMAGE_IDS_CSV)]
    size = sum(os.path.getsize(f) for f in files)
    settings = [(label, chosen_classes(n), quota) for label, n, quota in SETTINGS]
    print(f"{os.cpu_count()} CPUs, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GIB:.0f} GiB; "
          f"{oi.DETECTIONS_CSV} {os.path.getsize(files[0]) / 1e9:.2f} GB + {oi.IMAGE_IDS_CSV} "
          f"{os.path.getsize(files[1]) / 1e9:.2f} GB; {load()}", flush=True)

    runs: dict[str, list[dict]] = {"floor": [], "parse": []}
    waited = 0.0
    for repeat in range(args.repeats):  # alternating, so that the machine's load falls on every way alike
        waited += wait_until_idle(args.wait_idle)
        runs["floor"].append(floor(files, cold=True))
        runs["parse"].append(parse_floor(files, env, cold=True))
        for label, classes, quota in settings:
            runs.setdefault(label, []).append(plan(files, env, os.path.join(work, "plan-" + label.split()[0]),
                                                   classes, quota, cold=True))
        print(f"repeat {repeat + 1}: cat {runs['floor'][-1]['seconds']:.2f} s, pyarrow "
              f"{runs['parse'][-1]['seconds']:.2f} s, "
              + ", ".join(f"{label} {runs[label][-1]['seconds']:.2f} s" for label, _, _ in settings)
              + f"; {load()}; waited {waited:.0f} s for idle CPUs so far", flush=True)
    wait_until_idle(args.wait_idle)
    warm = {"floor": floor(files, cold=False), "parse": parse_floor(files, env, cold=False)}
    for label, classes, quota in settings:
        warm[label] = plan(files, env, os.path.join(work, "plan-" + label.split()[0]), classes, quota, cold=False)
    label30, classes30, quota30 = settings[-1]
    first_run = plan(files, env, os.path.join(work, "plan-first"), classes30, quota30, cold=True,
                     before="import fiftyone.utils.openimages  # a first run fetches the metadata through it")

    def median(way: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[way])

    floor_s, parse_s = median("floor", "seconds"), median("parse", "seconds")
    print(f"\nplan step on the full-size metadata ({size / 1e9:.2f} GB), median of {args.repeats} cold runs "
          "(files evicted from the page cache first; warm: read again at once), each a fresh process")
    print(f"{'way':<36}{'cold s':>7}{'x cat':>7}{'x pyarrow':>10}{'MB/s':>6}{'warm s':>7}{'peak RSS GiB':>13}"
          f"{'disk read GB':>13}{'read() GB':>10}{'images':>7}{'rows':>9}")

    def row(name: str, seconds: float, warm_s: float | None, peak: int, run: dict | None = None) -> None:
        io = run["io"] if run and "io" in run else None
        print(f"{name:<36}{seconds:7.2f}{seconds / floor_s:7.2f}{seconds / parse_s:10.2f}{size / 1e6 / seconds:6.0f}"
              + (f"{warm_s:7.2f}" if warm_s is not None else f"{'':>7}") + f"{peak / GIB:13.3f}"
              + (f"{io['read_bytes'] / 1e9:13.2f}{io['rchar'] / 1e9:10.2f}" if io else "")
              + (f"{run['result']['images']:7d}{run['result']['detection_rows']:9d}"
                 if io and "images" in run["result"] else ""))

    row("floor: cat of the two CSVs", floor_s, warm["floor"]["seconds"], max(r["peak_rss"] for r in runs["floor"]))
    row("floor: pyarrow reading them, no work", parse_s, warm["parse"]["seconds"],
        max(r["peak_rss"] for r in runs["parse"]), runs["parse"][-1])
    ratios, parse_ratios, peaks = [], [], []
    for label, _, _ in settings:
        seconds = median(label, "seconds")
        peak = max(max(r["peak_rss"] for r in runs[label]), warm[label]["peak_rss"])
        ratios.append(seconds / floor_s)
        parse_ratios.append(seconds / parse_s)
        peaks.append(peak)
        row(f"plan, {label}", seconds, warm[label]["seconds"], peak, runs[label][-1])
    row(f"plan, {label30}, FiftyOne in", first_run["seconds"], None, first_run["peak_rss"], first_run)
    print("cold runs (s): " + "; ".join(f"{way} " + ", ".join(f"{r['seconds']:.2f}" for r in rs)
                                       for way, rs in runs.items()))
    if args.fiftyone_parse:
        linked = os.path.join(work, "fiftyone-split")
        for name in oi.METADATA_FILES:
            os.makedirs(os.path.dirname(os.path.join(linked, name)), exist_ok=True)
            os.link(os.path.join(split_dir, name), os.path.join(linked, name))
        old = child(FIFTYONE_PARSE_CODE.format(split_dir=linked), env)
        print(f"FiftyOne's whole download with every file present (what a first run did before): "
              f"{old['seconds']:.2f} s, peak RSS {old['peak_rss'] / GIB:.3f} GiB")
    if not args.skip_shard:
        shard = shard_and_merge(split_dir, env, os.path.join(work, "plan-30"), work)
        run, merge = shard["run"], shard["merge"]
        other = run["io"]["rchar"] - shard["image_bytes"] - shard["plan_bytes"]
        print(f"\ndownload shard ({shard['images']} images of the 30-class plan from SeaweedFS on 127.0.0.1, packed):"
              f" {run['seconds']:.2f} s, peak RSS {run['peak_rss'] / GIB:.3f} GiB")
        print(f"  read() {run['io']['rchar'] / 1e6:.1f} MB = images {shard['image_bytes'] / 1e6:.1f} MB (over S3) "
              f"+ the plan's metadata {shard['plan_bytes'] / 1e6:.1f} MB (copied whole into FiftyOne's folder) "
              f"+ {other / 1e6:.1f} MB else (FiftyOne reading the copied image list, Python modules); disk "
              f"reads {run['io']['read_bytes'] / 1e6:.1f} MB")
        print(f"  files opened (strace, process tree): {shard['opened']}; of the full-size metadata: "
              f"{shard['opened_full_metadata'] or 'none'}; of the plan: {len(shard['opened_plan'])}")
        print(f"merge of the plan's {shard['merged_shards']} shards (that one and the others packed here from its "
              f"images): {merge['seconds']:.2f} s, peak RSS {merge['peak_rss'] / GIB:.3f} GiB")
    print(f"peaks for the step defaults (GiB): plan-download {max(max(peaks), first_run['peak_rss']) / GIB:.3f}"
          + ("" if args.skip_shard else f", download-shard {run['peak_rss'] / GIB:.3f}, merge-download "
             f"{merge['peak_rss'] / GIB:.3f}"))
    print(load())
    if args.clean:
        shutil.rmtree(args.data, ignore_errors=True)
    print(f"worst plan / floor: {max(ratios):.2f} x cat, {max(parse_ratios):.2f} x pyarrow reading with no work")
    print(f"RESULT metadata_scale {max(ratios):.2f} {max(peaks) / GIB:.2f}")


if __name__ == "__main__":
    main()
