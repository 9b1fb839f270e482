"""One streaming pass over an Open Images CSV with an ImageID column (``scan_csv``), and the copy of the
rows of chosen images as they are written (``keep_rows``).

The train split's detections.csv is over 2 GB: it is read in pieces cut at line ends, into a few buffers
used again and again, parsed by pyarrow on every core the pod has, and only compact arrays are kept
(``bench/metadata_scale.py`` measures it).
"""

import collections
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

CHUNK_BYTES = 16 << 20  # the metadata CSVs are read in pieces of this size, cut at line ends


def _threads() -> int:
    """Threads for the CSV passes: the pod's CPU limit (a pod sees the node's cores), at least one."""
    from yolo_kfp.infra.resources import cpu_limit

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
        import pyarrow.compute as pc  # its kernels are made at import, unseen by pyright: hence the ignores

        count = len(self.block_ids)
        if count and pc.all(pc.less_equal(self.block_ids.slice(0, count - 1), self.block_ids.slice(1))).as_py():  # pyright: ignore[reportAttributeAccessIssue]
            first = np.append(True, pc.not_equal(self.block_ids.slice(1), self.block_ids.slice(0, count - 1))  # pyright: ignore[reportAttributeAccessIssue]
                              .to_numpy(zero_copy_only=False))
            rank, self._images = np.cumsum(first) - 1, self.block_ids.filter(first)  # sorted already: no sort
        else:
            encoded = pc.dictionary_encode(self.block_ids)  # pyright: ignore[reportAttributeAccessIssue]
            order = pc.array_sort_indices(encoded.dictionary).to_numpy()  # pyright: ignore[reportAttributeAccessIssue]
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


def scan_csv(path: str, labels: Sequence[str] = ()) -> CsvScan:
    """One streaming pass over an Open Images CSV with an ImageID column, on every core the pod has, keeping
    only compact arrays: the blocks of rows of each image and, of detections.csv, the blocks with a box of
    ``labels`` (MIDs)."""
    import pyarrow as pa
    import pyarrow.compute as pc  # its kernels are made at import, unseen by pyright: hence the ignores

    columns, _ = _header(path)
    value_set = pa.array(labels, pa.string())
    types = {"ImageID": pa.string()}
    if labels:
        types["LabelName"] = pa.dictionary(pa.int32(), pa.string())

    def scan(offset: int, data) -> tuple:
        parsed, starts, ends = _rows_of(data, columns, types)
        image_ids = parsed["ImageID"]
        rows = len(image_ids)
        new = np.append(True, pc.not_equal(image_ids.slice(1), image_ids.slice(0, max(0, rows - 1)))  # pyright: ignore[reportAttributeAccessIssue]
                        .to_numpy(zero_copy_only=False))[:rows]
        first = np.flatnonzero(new)
        last = np.append(first[1:], rows)[:len(first)] - 1
        pairs = np.zeros(0, np.int64)
        if labels:
            names = parsed["LabelName"]
            label = pc.fill_null(pc.index_in(names.dictionary, value_set=value_set).take(names.indices), -1).to_numpy()  # pyright: ignore[reportAttributeAccessIssue]
            wanted = np.flatnonzero(label >= 0)
            pairs = np.unique((np.cumsum(new) - 1)[wanted] * len(labels) + label[wanted])  # a few per image at most
        return (image_ids.take(pa.array(first)), offset + starts[first], offset + ends[last], last - first + 1,
                pairs // max(1, len(labels)), pairs % max(1, len(labels)))

    parts = list(zip(*_pieces(path, scan, _threads()), strict=True)) or [[]] * 6
    base = np.cumsum([0, *(len(ids) for ids in parts[0])])

    def numbers(arrays) -> np.ndarray:
        return np.concatenate([np.zeros(0, np.int64), *arrays]).astype(np.int64)

    return CsvScan(labels=list(labels),
                   block_ids=pa.concat_arrays(list(parts[0])) if parts[0] else pa.array([], pa.string()),
                   block_start=numbers(parts[1]), block_end=numbers(parts[2]), block_rows=numbers(parts[3]),
                   wanted_blocks=numbers(b + offset for b, offset in zip(parts[4], base[:-1], strict=True)),
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
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
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
    import pyarrow.compute as pc  # its kernels are made at import, unseen by pyright: hence the ignores

    columns, _ = _header(source)
    keep = pc.is_in(scan.block_ids, value_set=pa.array(sorted(image_ids), pa.string())).to_numpy(zero_copy_only=False)  # pyright: ignore[reportAttributeAccessIssue]
    _copy_ranges(source, target, (",".join(columns) + "\n").encode(), scan.block_start[keep], scan.block_end[keep])
    return int(scan.block_rows[keep].sum())
