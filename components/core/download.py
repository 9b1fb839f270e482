"""Download: an Open Images V7 subset with a quota per class, fetched through FiftyOne's download code.

The selection is ours and deterministic, so that it can be cut into shards fetched in parallel:
``make_plan`` takes each class's images from the split's ``detections.csv`` (sorted, shuffled with the
seed and the class name, the first ``max_samples_per_class``), keeps Open Images' CSV rows of the
selected images and cuts them into shards of ``shard_size`` images (an image wanted by two classes is
fetched once). ``fetch_shard`` downloads one shard's images with FiftyOne (Open Images' S3 bucket), and
``merge_shards`` joins the shards into one raw dataset in FiftyOne's ``OpenImagesV7Dataset`` layout
holding only the selected images and their rows. The rows come from the plan in Open Images' order, so
the result does not depend on the split into shards: ``download_open_images`` (everything in one
process) writes the same dataset.
"""


import collections
import csv
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from components.core import openimages as oi
from components.core.image_files import readable
from components.core.openimages import RECORD, check_classes
from components.core.storage import S3Url, Storage
from components.core.validation import check, parameter_problems

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

# Files that seed a fresh zoo dir so FiftyOne does not fetch them (the demo's mirror, a cache).
METADATA_ENV = "YOLO_KFP_OPEN_IMAGES_METADATA"
PLAN = "plan.json"  # the selection and its shards, beside the selected images' metadata
SHARD_RECORD = "shard.json"


def _copy_metadata(source: str, split_dir: str) -> None:
    """Copies the metadata files ``source`` has into ``split_dir``, where FiftyOne will not fetch them."""
    for name in oi.METADATA_FILES:
        if os.path.exists(os.path.join(source, name)):
            os.makedirs(os.path.dirname(os.path.join(split_dir, name)), exist_ok=True)
            shutil.copyfile(os.path.join(source, name), os.path.join(split_dir, name))


def _metadata_from_cache(cache: str, split: str, split_dir: str) -> list[str]:
    """Fetches the split's metadata files held under ``cache``; returns the names it had."""
    storage, prefix = Storage.from_env(), S3Url.parse(cache).join(split)
    found = []
    for name in oi.METADATA_FILES:
        if storage.exists(prefix.join(name)):
            storage.download_file(prefix.join(name), os.path.join(split_dir, name))
            found.append(name)
    log.info("Open Images metadata from the cache %s: %s", prefix, found or "none yet")
    return found


def _metadata_to_cache(cache: str, split: str, split_dir: str, cached: list[str]) -> None:
    """Stores the metadata files FiftyOne fetched, so that the next run does not fetch them again."""
    storage, prefix = Storage.from_env(), S3Url.parse(cache).join(split)
    for name in oi.METADATA_FILES:
        if name not in cached and os.path.exists(os.path.join(split_dir, name)):
            storage.upload_file(os.path.join(split_dir, name), prefix.join(name))
            log.info("cached %s", prefix.join(name))


def _fiftyone_download(split_dir: str, split: str, image_ids: list[str]) -> None:
    """FiftyOne's Open Images download (what its zoo runs, without importing a dataset): fetches the
    split's metadata files that ``split_dir`` lacks, then the images of ``image_ids`` it does not have."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    import fiftyone.utils.openimages as fouo

    fouo.download_open_images_split(split_dir, split, version="v7", label_types=["detections"],
                                    image_ids=image_ids)


def _fetch_metadata(split_dir: str, split: str) -> None:
    """Fetches the split's metadata files that ``split_dir`` lacks from where FiftyOne's Open Images zoo
    fetches them, with its own download code, but without its download's next step: reading the split's
    whole image list into Python lists (1.7 M rows for train: 2.4 GiB and half a minute, measured in
    ``bench/metadata_scale.py``), which a plan does not need."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    import fiftyone.utils.openimages as fouo

    try:
        urls = fouo._ANNOTATION_DOWNLOAD_URLS[split]
        fetch, classes_map, hierarchy = fouo._download_file_if_necessary, fouo._get_classes_map, fouo._get_hierarchy
    except (AttributeError, KeyError):  # another FiftyOne: its whole download, which reads the image list
        log.warning("FiftyOne %s has no Open Images metadata helpers as 1.22 had: using its whole download",
                    getattr(fouo.fo, "__version__", "?"))
        _fiftyone_download(split_dir, split, [])
        return
    fetch(os.path.join(split_dir, oi.IMAGE_IDS_CSV), urls["image_ids"], quiet=-1 if split == "train" else 0)
    hierarchy(split_dir, classes_map=classes_map(split_dir, download=True)[0], download=True)
    fetch(os.path.join(split_dir, oi.DETECTIONS_CSV), urls["detections"], quiet=0)


def _metadata_dir(scratch: str, split: str, metadata_cache: str) -> str:
    """A folder holding the split's metadata files: the local mirror's own folder when it has them all and
    no cache is asked for (read in place, not copied); else ``scratch``, filled from the mirror, the cache
    and Open Images (through FiftyOne's download code), which the cache then keeps."""
    local = os.environ.get(METADATA_ENV, "")
    if local and not metadata_cache and not oi.missing_files(local):
        return local
    if local:
        _copy_metadata(local, scratch)
    cached = _metadata_from_cache(metadata_cache, split, scratch) if metadata_cache else []
    if oi.missing_files(scratch):  # FiftyOne's code fetches them (importing it alone takes seconds)
        _fetch_metadata(scratch, split)
    if metadata_cache:
        _metadata_to_cache(metadata_cache, split, scratch, cached)
    return scratch


CHUNK_BYTES = 16 << 20  # the metadata CSVs are read in pieces of this size, cut at line ends


def _threads() -> int:
    """Threads for the CSV passes: the pod's CPU limit (a pod sees the node's cores), at least one."""
    from components.core.resources import cpu_limit

    cores = os.cpu_count() or 1
    return max(1, min(cores, math.ceil(cpu_limit() or cores)))


def _header(path: str) -> tuple[list[str], int]:
    """The column names of a CSV and the length in bytes of its header line."""
    with open(path, "rb") as f:
        line = f.readline()
    return line.decode().strip().split(","), len(line)


def _pieces(path: str, work, threads: int, size: int = 0):
    """``work(file offset, piece)`` for the lines after the CSV's header, in pieces of about ``size`` bytes
    that end at a line end, on ``threads`` threads (pyarrow and numpy release the GIL); yields the results
    in order. The pieces are read into a few buffers used again and again (a result must not keep its
    piece), so that memory holds a few pieces, whatever the file's size."""
    _, header = _header(path)
    size = size or CHUNK_BYTES
    ring = [bytearray(size) for _ in range(threads + 2)]
    pending: collections.deque = collections.deque()
    with open(path, "rb") as f, ThreadPoolExecutor(threads) as pool:
        f.seek(header)
        offset, rest, n = header, b"", 0
        while True:
            if len(ring[n % len(ring)]) <= len(rest):  # after a long line
                ring[n % len(ring)] = bytearray(len(rest) + size)
            buffer = ring[n % len(ring)]
            view = memoryview(buffer)
            view[:len(rest)] = rest
            read = f.readinto(view[len(rest):])
            filled = len(rest) + read
            cut = buffer.rfind(b"\n", 0, filled) + 1 if read else filled
            if read and cut == 0:  # a line longer than a buffer: a larger one
                rest = bytes(view[:filled])
                view.release()
                ring[n % len(ring)] = bytearray(2 * len(rest) + size)
                continue
            if cut:
                pending.append(pool.submit(work, offset, view[:cut]))
            if not read:
                break
            offset, rest, n = offset + cut, bytes(view[cut:filled]), n + 1
            while len(pending) > threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _line_spans(data) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (after its newline) of every non-empty line of ``data``: the rows pyarrow parses."""
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(raw == 10) + 1
    if len(raw) and raw[-1] != 10:
        ends = np.append(ends, len(raw))
    starts = np.empty_like(ends)
    starts[:1], starts[1:] = 0, ends[:-1]
    short = np.flatnonzero(ends - starts <= 2)  # "\n" or "\r\n" alone: an empty line pyarrow skips
    if len(short):
        empty = short[(raw[starts[short]] == 10) | ((raw[starts[short]] == 13) & (ends[short] - starts[short] == 2)
                                                    & (raw[ends[short] - 1] == 10))]
        starts, ends = np.delete(starts, empty), np.delete(ends, empty)
    return starts, ends


def _parse(data, columns: list[str], types: dict):
    """The columns ``types`` names of a piece of a CSV (whose lines are rows) as one Arrow record batch each."""
    import pyarrow as pa
    from pyarrow import csv as pacsv

    table = pacsv.read_csv(pa.py_buffer(data),
                           read_options=pacsv.ReadOptions(column_names=columns, use_threads=False,
                                                          block_size=len(data) + 1),
                           convert_options=pacsv.ConvertOptions(column_types=types, include_columns=list(types),
                                                                strings_can_be_null=False))
    return {name: table.column(name).combine_chunks() for name in types}


def _rows_of(data, columns: list[str], types: dict) -> tuple[dict, np.ndarray, np.ndarray]:
    parsed = _parse(data, columns, types)
    starts, ends = _line_spans(data)
    rows = len(next(iter(parsed.values())))
    if rows != len(starts):
        raise ValueError(f"{rows} CSV rows in {len(starts)} lines: a quoted value holds a line break")
    return parsed, starts, ends


@dataclass
class CsvScan:
    """What one pass over an Open Images CSV keeps, as a few arrays (no Python object per row): where each
    image's rows lie in the file, as blocks (a run of rows of one image: Open Images sorts its rows by
    ImageID, so one block per image there, or two where a block crosses a piece), and, in detections.csv,
    which blocks have a box of which of the ``labels`` asked for (its position in them)."""

    labels: list[str]
    block_ids: "pa.Array"
    block_start: np.ndarray
    block_end: np.ndarray
    block_rows: np.ndarray
    wanted_blocks: np.ndarray
    wanted_labels: np.ndarray

    def _index(self) -> None:
        """Each block's image as its rank among the images sorted (as Python sorts strings: by code point),
        and each (label, image) pair once, sorted."""
        import pyarrow.compute as pc

        count = len(self.block_ids)
        if count and pc.all(pc.less_equal(self.block_ids.slice(0, count - 1), self.block_ids.slice(1))).as_py():
            first = np.append(True, pc.not_equal(self.block_ids.slice(1), self.block_ids.slice(0, count - 1))
                              .to_numpy(zero_copy_only=False))
            rank, self._images = np.cumsum(first) - 1, self.block_ids.filter(first)  # sorted already: no sort
        else:
            encoded = pc.dictionary_encode(self.block_ids)
            order = pc.array_sort_indices(encoded.dictionary).to_numpy()
            by_entry = np.empty(len(order), dtype=np.int64)
            by_entry[order] = np.arange(len(order))
            rank = by_entry[encoded.indices.to_numpy(zero_copy_only=False)]
            self._images = encoded.dictionary.take(order)
        pairs = np.sort(self.wanted_labels * len(self._images) + rank[self.wanted_blocks])
        self._pairs = pairs[np.append(True, pairs[1:] != pairs[:-1])] if len(pairs) else pairs

    def candidates(self, label: str) -> "pa.Array":
        """The images with a box of ``label`` (a MID), sorted (as Python sorts strings: by code point)."""
        if not hasattr(self, "_pairs"):
            self._index()
        k, count = self.labels.index(label), len(self._images)
        first, last = np.searchsorted(self._pairs, [k * count, (k + 1) * count])
        return self._images.take(self._pairs[first:last] - k * count)


def scan_csv(path: str, labels: list[str] = ()) -> CsvScan:
    """One streaming pass over an Open Images CSV with an ImageID column, on every core the pod has, keeping
    only compact arrays: the blocks of rows of each image and, of detections.csv, the blocks with a box of
    ``labels`` (MIDs)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns, _ = _header(path)
    value_set = pa.array(labels, pa.string())
    types = {"ImageID": pa.string()}
    if labels:
        types["LabelName"] = pa.dictionary(pa.int32(), pa.string())

    def scan(offset: int, data) -> tuple:
        parsed, starts, ends = _rows_of(data, columns, types)
        image_ids = parsed["ImageID"]
        rows = len(image_ids)
        new = np.append(True, pc.not_equal(image_ids.slice(1), image_ids.slice(0, max(0, rows - 1)))
                        .to_numpy(zero_copy_only=False))[:rows]
        first = np.flatnonzero(new)
        last = np.append(first[1:], rows)[:len(first)] - 1
        pairs = np.zeros(0, np.int64)
        if labels:
            names = parsed["LabelName"]
            label = pc.fill_null(pc.index_in(names.dictionary, value_set=value_set).take(names.indices), -1).to_numpy()
            wanted = np.flatnonzero(label >= 0)
            pairs = np.unique((np.cumsum(new) - 1)[wanted] * len(labels) + label[wanted])  # a few per image at most
        return (image_ids.take(pa.array(first)), offset + starts[first], offset + ends[last], last - first + 1,
                pairs // max(1, len(labels)), pairs % max(1, len(labels)))

    parts = list(zip(*_pieces(path, scan, _threads()))) or [[]] * 6
    base = np.cumsum([0, *(len(ids) for ids in parts[0])])

    def numbers(arrays) -> np.ndarray:
        return np.concatenate([np.zeros(0, np.int64), *arrays]).astype(np.int64)

    return CsvScan(labels=list(labels),
                   block_ids=pa.concat_arrays(list(parts[0])) if parts[0] else pa.array([], pa.string()),
                   block_start=numbers(parts[1]), block_end=numbers(parts[2]), block_rows=numbers(parts[3]),
                   wanted_blocks=numbers(b + offset for b, offset in zip(parts[4], base)),
                   wanted_labels=numbers(parts[5]))


def _copy_ranges(source: str, target: str, header: bytes, starts: np.ndarray, ends: np.ndarray) -> None:
    """Writes ``header`` and the byte ranges of ``source`` (in file order; touching ones read at once)."""
    if len(starts):
        joined = np.flatnonzero(starts[1:] != ends[:-1]) + 1
        starts, ends = starts[np.concatenate([[0], joined])], ends[np.append(joined - 1, len(ends) - 1)]
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(source, "rb") as f, open(target, "wb") as out:
        out.write(header)
        batch, size = [], 0
        for start, end in zip(starts.tolist(), ends.tolist()):
            batch.append(os.pread(f.fileno(), end - start, start))
            size += end - start
            if size >= 8 << 20:
                out.write(b"".join(batch))
                batch, size = [], 0
        out.write(b"".join(batch))


def keep_rows(scan: CsvScan, source: str, target: str, image_ids: set[str]) -> int:
    """Copies the rows of ``source`` (the CSV ``scan`` read) whose ImageID is in ``image_ids``, in their order
    and as they are written (nothing is rewritten), reading only those rows; returns how many."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns, _ = _header(source)
    keep = pc.is_in(scan.block_ids, value_set=pa.array(sorted(image_ids), pa.string())).to_numpy(zero_copy_only=False)
    _copy_ranges(source, target, (",".join(columns) + "\n").encode(), scan.block_start[keep], scan.block_end[keep])
    return int(scan.block_rows[keep].sum())


def draw(count: int, quota: int, seed: int, name: str) -> list[int]:
    """A class's draw, as positions among its ``count`` candidates sorted: shuffled with the seed and the class
    name, the first ``quota`` (the shuffle of a list depends only on its length)."""
    order = list(range(count))
    random.Random(f"{seed}:{name}").shuffle(order)
    return order[:quota]


def select_scanned(scan: CsvScan, mids: dict[str, str], quota: int, seed: int) -> dict[str, list[str]]:
    """Each class's draw (``mids``: class name to MID): its candidates in the scan of detections.csv sorted,
    shuffled with the seed and the class name, the first ``quota``; no Python object per candidate."""
    import pyarrow as pa

    selected = {}
    for name, mid in mids.items():
        ordered = scan.candidates(mid)
        selected[name] = ordered.take(pa.array(draw(len(ordered), quota, seed, name), pa.int64())).to_pylist()
    return selected


def cut_shards(selected: dict[str, list[str]], shard_size: int) -> dict[str, list[str]]:
    """The selected images, class after class (an image drawn for two classes once), in chunks of
    ``shard_size``: a download smaller than a shard stays one step, a larger one fans out evenly."""
    ordered = list(dict.fromkeys(i for ids in selected.values() for i in sorted(ids)))
    return {f"shard {n // shard_size}": ordered[n:n + shard_size] for n in range(0, len(ordered), shard_size)}


def _class_mids(split_dir: str) -> dict[str, str]:
    with open(os.path.join(split_dir, oi.CLASSES_CSV)) as f:
        return {name: mid for mid, name in csv.reader(f)}


def make_plan(*, plan_dir: str, classes: list[str], max_samples_per_class: int, split: str, seed: int,
              shard_size: int, metadata_cache: str = "") -> dict:
    """Selects up to ``max_samples_per_class`` images of each class and cuts them into shards.

    Writes ``plan_dir``: the selected images' rows of Open Images' metadata (raw layout, no images) and
    ``plan.json`` (the shards' image ids). ``metadata_cache`` (an S3 prefix) keeps Open Images' large
    metadata CSVs between runs.
    """
    check(parameter_problems({"classes": list(classes), "split": split, "max_samples_per_class": max_samples_per_class,
                              "download_shard_size": shard_size}))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="oi-metadata-") as scratch:
        split_dir = _metadata_dir(scratch, split, metadata_cache)
        mids = _class_mids(split_dir)
        check_classes(list(classes), list(mids))
        detections, image_list = (os.path.join(split_dir, name) for name in (oi.DETECTIONS_CSV, oi.IMAGE_IDS_CSV))
        scan = scan_csv(detections, sorted({mids[name] for name in classes}))
        # The image list is read while this thread draws (its parsing leaves the GIL free, the draw needs it).
        with ThreadPoolExecutor(1) as background:
            listing = background.submit(scan_csv, image_list)
            selected = select_scanned(scan, {name: mids[name] for name in classes}, max_samples_per_class, seed)
            shards = cut_shards(selected, shard_size)
            image_ids = {i for ids in shards.values() for i in ids}
            rows = {oi.DETECTIONS_CSV: keep_rows(scan, detections, os.path.join(plan_dir, oi.DETECTIONS_CSV),
                                                 image_ids),
                    oi.IMAGE_IDS_CSV: keep_rows(listing.result(), image_list, os.path.join(plan_dir, oi.IMAGE_IDS_CSV),
                                                image_ids)}
        for name in (oi.CLASSES_CSV, oi.HIERARCHY_JSON):
            shutil.copyfile(os.path.join(split_dir, name), os.path.join(plan_dir, name))
    plan = {"split": split, "classes": list(classes), "max_samples_per_class": max_samples_per_class, "seed": seed,
            "images_per_class": {name: len(ids) for name, ids in selected.items()}, "images": len(image_ids),
            "detection_rows": rows[oi.DETECTIONS_CSV], "shard_size": shard_size, "shards": shards,
            "seconds": round(time.monotonic() - started, 2)}
    for name, ids in selected.items():
        log.info("%s: %d images (quota %d)", name, len(ids), max_samples_per_class)
    with open(os.path.join(plan_dir, PLAN), "w") as f:
        json.dump(plan, f, indent=2)
    return plan


def read_plan(plan_dir: str) -> dict:
    with open(os.path.join(plan_dir, PLAN)) as f:
        return json.load(f)


def reuse_images(output_dir: str, split_dir: str) -> int:
    """Moves the readable images an earlier, interrupted run left in ``output_dir`` into the zoo dir,
    where FiftyOne counts them as downloaded; corrupt or truncated ones are fetched again."""
    previous = os.path.join(output_dir, oi.DATA_DIR)
    if not os.path.isdir(previous):
        return 0
    target = os.path.join(split_dir, oi.DATA_DIR)
    os.makedirs(target, exist_ok=True)
    kept = 0
    for name in os.listdir(previous):
        if name.endswith(".jpg") and readable(os.path.join(previous, name)):
            shutil.move(os.path.join(previous, name), os.path.join(target, name))
            kept += 1
    log.info("reusing %d images already in %s", kept, previous)
    return kept


def fetch_images(plan_dir: str, image_ids: list[str], output_dir: str) -> int:
    """Downloads ``image_ids`` (of the plan in ``plan_dir``) into ``output_dir/data``; returns how many of
    them an earlier, interrupted run had already left there intact."""
    split = read_plan(plan_dir)["split"]
    with tempfile.TemporaryDirectory(prefix="oi-zoo-") as split_dir:
        _copy_metadata(plan_dir, split_dir)  # the plan's rows only: FiftyOne fetches no metadata
        reused = reuse_images(output_dir, split_dir)
        _fiftyone_download(split_dir, split, image_ids)
        missing = [i for i in image_ids if not os.path.exists(os.path.join(split_dir, oi.DATA_DIR, f"{i}.jpg"))]
        if missing:
            raise RuntimeError(f"FiftyOne did not download {len(missing)} of {len(image_ids)} images, e.g. "
                               f"{missing[:5]}: are they in Open Images' bucket {oi.BUCKET} under {split}/?")
        os.makedirs(os.path.join(output_dir, oi.DATA_DIR), exist_ok=True)
        for image_id in image_ids:
            name = f"{image_id}.jpg"
            shutil.move(os.path.join(split_dir, oi.DATA_DIR, name), os.path.join(output_dir, oi.DATA_DIR, name))
    return reused


def fetch_shard(*, plan_dir: str, shard: str, output_dir: str) -> dict:
    """Downloads the images of one shard of the plan into ``output_dir/data``; writes ``shard.json``.

    Run again on the same ``output_dir``, it fetches only the images it does not have intact.
    """
    started = time.monotonic()
    image_ids = read_plan(plan_dir)["shards"][shard]
    reused = fetch_images(plan_dir, image_ids, output_dir)
    record = {"shard": shard, "images": len(image_ids), "reused_images": reused,
              "seconds": round(time.monotonic() - started, 2)}
    with open(os.path.join(output_dir, SHARD_RECORD), "w") as f:
        json.dump(record, f, indent=2)
    return record


def complete_raw(plan_dir: str, output_dir: str, reused: int, started: float) -> dict:
    """Puts the plan's metadata beside the images in ``output_dir`` (files under data/ or packed in its
    shards); checks every planned image is there and writes ``download.json``, which it returns."""
    from components.core.packing import packed_files

    plan = read_plan(plan_dir)
    _copy_metadata(plan_dir, output_dir)
    planned = {i for ids in plan["shards"].values() for i in ids}
    data_dir = os.path.join(output_dir, oi.DATA_DIR)
    files = [os.path.join(oi.DATA_DIR, n) for n in os.listdir(data_dir)] if os.path.isdir(data_dir) else []
    present = {os.path.basename(name)[:-len(".jpg")] for name in files + packed_files(output_dir)}
    if planned - present:
        raise RuntimeError(f"{len(planned - present)} planned images are missing, e.g. {sorted(planned - present)[:5]}")
    summary = {"images": len(planned), "detection_rows": plan["detection_rows"],
               **{k: plan[k] for k in ("split", "classes", "max_samples_per_class", "seed", "images_per_class")},
               "shards": len(plan["shards"]), "reused_images": reused, "seconds": round(time.monotonic() - started, 2)}
    with open(os.path.join(output_dir, RECORD), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def merge_shards(*, plan_dir: str, shard_dirs: list[str], output_dir: str) -> dict:
    """Joins the shards' images and the plan's metadata into one raw dataset in ``output_dir``.

    Packed shards keep their tar files (linked, or copied across file systems): nothing is unpacked
    and packed again, and the step needs no room for the images twice over. Plain folders (``yolo-kfp
    step`` outputs) have their images copied under data/.
    """
    from components.core.packing import SHARD_PREFIX, link_or_copy, shards

    started = time.monotonic()
    os.makedirs(output_dir, exist_ok=True)
    carried, reused = 0, 0
    for shard_dir in shard_dirs:
        for archive in shards(shard_dir):
            link_or_copy(archive, os.path.join(output_dir, f"{SHARD_PREFIX}{carried:05d}.tar"))
            carried += 1
        plain = os.path.join(shard_dir, oi.DATA_DIR)
        if os.path.isdir(plain):
            os.makedirs(os.path.join(output_dir, oi.DATA_DIR), exist_ok=True)
            for name in os.listdir(plain):
                shutil.copyfile(os.path.join(plain, name), os.path.join(output_dir, oi.DATA_DIR, name))
        with open(os.path.join(shard_dir, SHARD_RECORD)) as f:
            reused += json.load(f)["reused_images"]
    return complete_raw(plan_dir, output_dir, reused, started)


def download_open_images(*, output_dir: str, classes: list[str], max_samples_per_class: int, split: str,
                         seed: int, metadata_cache: str = "") -> dict:
    """Downloads up to ``max_samples_per_class`` images of each class into ``output_dir`` (raw layout), in one
    process: the same dataset as the pipeline's shards merged.

    ``metadata_cache`` (an S3 prefix) keeps Open Images' large metadata CSVs between runs. Run again
    on the same ``output_dir`` (same parameters), it fetches only the images it does not have intact.
    The summary returned is also written to ``output_dir/download.json``.
    """
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="download-plan-") as plan_dir:
        plan = make_plan(plan_dir=plan_dir, classes=classes, max_samples_per_class=max_samples_per_class, split=split,
                         seed=seed, shard_size=max_samples_per_class, metadata_cache=metadata_cache)
        reused = fetch_images(plan_dir, sorted(i for ids in plan["shards"].values() for i in ids), output_dir)
        return complete_raw(plan_dir, output_dir, reused, started)
