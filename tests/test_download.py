"""Download through FiftyOne's real Open Images download code, against the offline mirror (SeaweedFS)."""

import csv
import filecmp
import json
import os

import pytest
from conftest import CLASSES

from yolo_kfp.components.download import download, download_shard, merge_download, plan_download
from yolo_kfp.data import openimages as oi
from yolo_kfp.data.csv_scan import scan_csv
from yolo_kfp.data.download import download_open_images
from yolo_kfp.data.download_plan import cut_shards, make_plan, select_scanned
from yolo_kfp.data.openimages_metadata import METADATA_ENV
from yolo_kfp.infra.packing import materialized, shards
from yolo_kfp.infra.storage import S3Url, Storage
from yolo_kfp.local.synthetic import ALL_CLASSES


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def check_raw_layout(raw_dir, quota):
    """Only the downloaded images and their rows; every class's quota drawn."""
    assert oi.missing_files(raw_dir) == []
    images = {n[:-4] for n in os.listdir(os.path.join(raw_dir, oi.DATA_DIR))}
    detections = read_rows(os.path.join(raw_dir, oi.DETECTIONS_CSV))
    assert {r["ImageID"] for r in detections} == images
    assert {r["ImageID"] for r in read_rows(os.path.join(raw_dir, oi.IMAGE_IDS_CSV))} == images
    for name in CLASSES:
        with_class = {r["ImageID"] for r in detections if r["LabelName"] == ALL_CLASSES[name]}
        assert len(with_class) >= quota
    return images, detections


def test_download_draws_a_quota_per_class_and_keeps_only_their_rows(mirror, tmp_path):
    summary = download_open_images(output_dir=str(tmp_path / "raw"), classes=CLASSES, max_samples_per_class=6,
                                   split="validation", seed=42)
    images, detections = check_raw_layout(str(tmp_path / "raw"), 6)
    assert summary["images_per_class"] == {name: 6 for name in CLASSES}
    assert summary["images"] == len(images) <= 18
    full = read_rows(os.path.join(mirror, oi.DETECTIONS_CSV))
    assert len(detections) == sum(r["ImageID"] in images for r in full) < len(full)
    with open(os.path.join(mirror, oi.DETECTIONS_CSV)) as f:
        header = f.readline()
    with open(tmp_path / "raw" / oi.DETECTIONS_CSV) as f:
        assert f.readline() == header  # the same columns, unquoted, as Open Images writes them


def test_download_is_determined_by_the_seed(mirror, tmp_path):
    first = download_open_images(output_dir=str(tmp_path / "a"), classes=CLASSES, max_samples_per_class=4,
                                 split="validation", seed=1)
    again = download_open_images(output_dir=str(tmp_path / "b"), classes=CLASSES, max_samples_per_class=4,
                                 split="validation", seed=1)
    other = download_open_images(output_dir=str(tmp_path / "c"), classes=CLASSES, max_samples_per_class=4,
                                 split="validation", seed=2)
    listing = [sorted(os.listdir(tmp_path / d / oi.DATA_DIR)) for d in "abc"]
    assert first["images"] == again["images"] and listing[0] == listing[1] != listing[2]
    assert other["images_per_class"] == {name: 4 for name in CLASSES}


def test_unknown_class_fails_before_downloading(mirror, tmp_path):
    with pytest.raises(ValueError, match=r"'Carr' \(did you mean 'Car'"):
        download_open_images(output_dir=str(tmp_path / "raw"), classes=["Bicycle", "Carr"], max_samples_per_class=5,
                             split="validation", seed=42)
    assert not (tmp_path / "raw").exists()


def plain_selection(candidates, quota, seed):
    """The draw as the plan made it before its one-pass scan: each class's candidates sorted, shuffled with the
    seed and the class name, the first ``quota``."""
    import random

    selected = {}
    for name, image_ids in candidates.items():
        ordered = sorted(image_ids)
        random.Random(f"{seed}:{name}").shuffle(ordered)
        selected[name] = ordered[:quota]
    return selected


def test_each_class_is_drawn_by_the_seed_alone(tmp_path):
    mids = {"Car": ALL_CLASSES["Car"], "Bicycle": ALL_CLASSES["Bicycle"]}
    candidates = {"Car": {f"{i:04d}" for i in range(50)}, "Bicycle": {f"{i:04d}" for i in range(30, 60)}}
    rows = sorted([image_id, "xclick", mids[name], 1, "0.1", "0.5", "0.2", "0.9", 0, 0, 0, 0, 0, *[-1] * 8]
                  for name, ids in candidates.items() for image_id in ids)
    write_detections(str(tmp_path / "detections.csv"), rows)
    scan = scan_csv(str(tmp_path / "detections.csv"), sorted(mids.values()))
    first = select_scanned(scan, mids, 10, seed=3)
    assert first == select_scanned(scan, dict(reversed(mids.items())), 10, seed=3)  # not the classes' order
    assert first != select_scanned(scan, mids, 10, seed=4)
    assert first == plain_selection(candidates, 10, seed=3)
    assert len(first["Car"]) == 10 and set(first["Car"]) <= candidates["Car"]
    assert sorted(select_scanned(scan, mids, 100, seed=3)["Bicycle"]) == sorted(candidates["Bicycle"])


def test_shards_are_chunks_of_the_selection_that_never_repeat_an_image():
    selected = {"Car": ["c3", "both", "c1", "c2", "c4"], "Bicycle": ["both", "b1"]}
    assert cut_shards(selected, 10) == {"shard 0": ["both", "c1", "c2", "c3", "c4", "b1"]}
    assert cut_shards(selected, 2) == {"shard 0": ["both", "c1"], "shard 1": ["c2", "c3"], "shard 2": ["c4", "b1"]}
    assert cut_shards({"Car": ["x"], "Bus": ["x"]}, 5) == {"shard 0": ["x"]}


def test_plan_refuses_bad_values_by_the_parameter_rules(tmp_path):
    with pytest.raises(ValueError, match="download_shard_size must be 1 or more, not 0"):
        make_plan(plan_dir=str(tmp_path / "plan"), classes=CLASSES, max_samples_per_class=5, split="validation",
                  seed=42, shard_size=0)
    assert not (tmp_path / "plan").exists()


def test_plan_keeps_every_row_of_the_selected_images(mirror, tmp_path):
    plan = make_plan(plan_dir=str(tmp_path / "plan"), classes=CLASSES, max_samples_per_class=5, split="validation",
                     seed=42, shard_size=2)
    planned = {i for ids in plan["shards"].values() for i in ids}
    assert len(planned) == plan["images"] == sum(len(ids) for ids in plan["shards"].values())  # no image twice
    assert all(len(ids) <= 2 for ids in plan["shards"].values()) and len(plan["shards"]) > len(CLASSES)
    full = read_rows(os.path.join(mirror, oi.DETECTIONS_CSV))
    assert read_rows(tmp_path / "plan" / oi.DETECTIONS_CSV) == [r for r in full if r["ImageID"] in planned]
    assert {r["ImageID"] for r in read_rows(tmp_path / "plan" / oi.IMAGE_IDS_CSV)} == planned
    for name in CLASSES:
        assert len({r["ImageID"] for r in full if r["ImageID"] in planned and r["LabelName"] == ALL_CLASSES[name]}) \
            >= plan["images_per_class"][name] == 5


def raw_files(folder):
    """Every file of a raw dataset but download.json (its timings), as relative paths."""
    return sorted(os.path.relpath(os.path.join(root, f), folder) for root, _, files in os.walk(folder, followlinks=True)
                  for f in files if f != "download.json")


def test_sharded_download_through_kfp_local_equals_the_unsharded_one(mirror, local_kfp):
    from kfp import dsl

    @dsl.pipeline
    def sharded_download():
        plan = plan_download(classes=CLASSES, max_samples_per_class=5, split="validation", seed=42, shard_size=5,
                             open_images_cache="")
        with dsl.ParallelFor(plan.outputs["Output"], parallelism=3) as shard:
            shard_task = download_shard(plan=plan.outputs["plan"], shard=shard)
        merge_download(plan=plan.outputs["plan"], shards=dsl.Collected(shard_task.outputs["raw_shard"]))

    sharded_download()
    (run_dir,) = [p for p in (local_kfp / "pipeline-root").iterdir() if p.is_dir()]
    shard_dirs = sorted(run_dir.glob("for-loop-*/download-shard/raw_shard"))
    assert len(shard_dirs) == 3, "13 to 15 images in shards of 5"
    assert all(shards(str(d)) and "data" not in os.listdir(d) for d in shard_dirs), "shards travel packed"
    merged = run_dir / "merge-download" / "raw_dataset"
    assert "data" not in os.listdir(merged)
    assert len(shards(str(merged))) == len(shard_dirs), "the shards' tar files are carried over, not repacked"

    unsharded = download_open_images(output_dir=str(local_kfp / "unsharded"), classes=CLASSES, max_samples_per_class=5,
                                     split="validation", seed=42)
    with materialized(str(merged)) as folder:
        images, detections = check_raw_layout(folder, 5)
        assert raw_files(folder) == raw_files(local_kfp / "unsharded")
        match, mismatch, errors = filecmp.cmpfiles(folder, local_kfp / "unsharded", raw_files(folder), shallow=False)
        assert mismatch == errors == [] and len(match) == len(images) + len(oi.METADATA_FILES)
    assert len({r["ImageID"] for r in detections if r["LabelName"] in
                {ALL_CLASSES[c] for c in CLASSES}}) == unsharded["images"] == len(images)
    with open(merged.parent / "executor_output.json") as f:
        metadata = json.load(f)["artifacts"]["raw_dataset"]["artifacts"][0]["metadata"]
    assert metadata["images_per_class"] == unsharded["images_per_class"] == {name: 5 for name in CLASSES}
    assert metadata["shards"] == 3 and metadata["images"] == len(images)


def test_the_one_step_download_writes_what_the_sharded_steps_do(mirror, local_kfp):
    """For servers without dsl.Collected: plan, shards and merge in one task, the same raw dataset."""
    from kfp import dsl

    selection = {"classes": CLASSES, "max_samples_per_class": 5, "split": "validation", "seed": 42,
                 "open_images_cache": ""}

    @dsl.pipeline
    def both_downloads():
        plan = plan_download(shard_size=5, **selection)
        with dsl.ParallelFor(plan.outputs["Output"], parallelism=3) as shard:
            shard_task = download_shard(plan=plan.outputs["plan"], shard=shard)
        merge_download(plan=plan.outputs["plan"], shards=dsl.Collected(shard_task.outputs["raw_shard"]))
        download(shard_size=5, **selection)

    both_downloads()
    (run_dir,) = [p for p in (local_kfp / "pipeline-root").iterdir() if p.is_dir()]
    merged, one_step = run_dir / "merge-download" / "raw_dataset", run_dir / "download" / "raw_dataset"
    assert "data" not in os.listdir(one_step) and len(shards(str(one_step))) == len(shards(str(merged))) == 3
    with materialized(str(merged)) as sharded, materialized(str(one_step)) as single:
        assert raw_files(single) == raw_files(sharded) and len(raw_files(single)) > len(oi.METADATA_FILES)
        match, mismatch, errors = filecmp.cmpfiles(single, sharded, raw_files(single), shallow=False)
        assert mismatch == errors == [] and len(match) == len(raw_files(single))
    metadata = {}
    for step in ("merge-download", "download"):
        with open(run_dir / step / "executor_output.json") as f:
            record = json.load(f)["artifacts"]["raw_dataset"]["artifacts"][0]["metadata"]
        metadata[step] = {k: v for k, v in record.items() if k != "seconds"}
    assert metadata["download"] == metadata["merge-download"] and metadata["download"]["shards"] == 3


def test_open_images_metadata_is_cached_in_s3(mirror, s3, tmp_path, monkeypatch):
    for key, value in s3.data_connection().items():
        monkeypatch.setenv(key, value)
    storage = Storage.from_env()
    storage.client.create_bucket(Bucket="oi-cache")
    download_open_images(output_dir=str(tmp_path / "a"), classes=CLASSES, max_samples_per_class=3, split="validation",
                         seed=42, metadata_cache="s3://oi-cache/v7")
    cached = sorted(o["key"] for o in storage.list_objects(S3Url("oi-cache", "v7")))
    assert cached == sorted(f"v7/validation/{name}" for name in oi.METADATA_FILES)
    # Without the mirror's local metadata FiftyOne would fetch the CSVs over HTTPS (the guard would
    # fail the test): the second run takes them from the cache.
    monkeypatch.delenv(METADATA_ENV)
    again = download_open_images(output_dir=str(tmp_path / "b"), classes=CLASSES, max_samples_per_class=3,
                                 split="validation", seed=42,
                                 metadata_cache="s3://oi-cache/v7")
    assert sorted(os.listdir(tmp_path / "b" / oi.DATA_DIR)) == sorted(os.listdir(tmp_path / "a" / oi.DATA_DIR))
    assert again["images_per_class"] == {name: 3 for name in CLASSES}


# The plan step at Open Images' size (bench/metadata_scale.py): one pass over detections.csv on every
# core, in pieces read into buffers used again and again, rows copied as they are written. These check it
# against the plain reading of the same CSVs, with pieces of a few hundred bytes so that every edge occurs.

def write_detections(path, rows, newline="\n"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        f.write(",".join(oi.DETECTION_COLUMNS) + newline)
        for row in rows:
            f.write(",".join(map(str, row)) + newline)


def detection_rows(seed, apart, images=60):
    """Rows as Open Images writes them (sorted by ImageID, or some images' rows apart), a few very long lines."""
    import random

    rng = random.Random(seed)
    labels = [*ALL_CLASSES.values(), "/m/0decoy"]
    rows = []
    for _ in range(images):
        image_id = f"{rng.getrandbits(64):016x}"
        for _ in range(rng.randint(1, 6)):
            source = rng.choice(["xclick", "activemil", "x" * 700 if rng.random() < 0.02 else "human"])
            rows.append([image_id, source, rng.choice(labels), 1, "0.100000", "0.500000", "0.200000", "0.900000",
                         0, 1, 0, 0, 0, *[-1] * 8])
    rows.sort(key=lambda r: r[0])
    if apart:
        rows[5], rows[-5] = rows[-5], rows[5]
    return rows


def plain_candidates(path, mids):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {mid: {r["ImageID"] for r in rows if r["LabelName"] == mid} for mid in mids}


@pytest.mark.parametrize("newline, apart", [("\n", False), ("\r\n", True)])
def test_one_pass_over_the_detections_finds_and_copies_what_a_plain_reading_does(tmp_path, monkeypatch, newline,
                                                                                  apart):
    from yolo_kfp.data import csv_scan

    source = str(tmp_path / "detections.csv")
    write_detections(source, detection_rows(7, apart), newline)
    with open(source, "a") as f:
        f.write("\nfffdecafbad00000,xclick,/m/0k4j,1,0.1,0.2,0.3,0.4,0,0,0,0,0,-1,-1,-1,-1,-1,-1,-1,-1")  # no newline
    mids = sorted(ALL_CLASSES.values())
    expected = plain_candidates(source, mids)
    for piece in (97, 400, 1 << 20):  # lines longer than a piece, pieces of a few lines, one piece
        monkeypatch.setattr(csv_scan, "CHUNK_BYTES", piece)
        scan = csv_scan.scan_csv(source, mids)
        assert {mid: scan.candidates(mid).to_pylist() for mid in mids} == {m: sorted(i) for m, i in expected.items()}
        by_name = {name: ALL_CLASSES[name] for name in CLASSES}
        drawn = select_scanned(scan, by_name, 4, seed=3)
        assert drawn == plain_selection({name: expected[mid] for name, mid in by_name.items()}, 4, seed=3)
        wanted = {i for ids in drawn.values() for i in ids} | {"fffdecafbad00000"}
        rows = csv_scan.keep_rows(scan, source, str(tmp_path / "kept.csv"), wanted)
        with open(source, "rb") as f:
            lines = f.read().splitlines(keepends=True)
        kept = [line for line in lines[1:] if line.split(b",")[0].decode() in wanted]
        with open(tmp_path / "kept.csv", "rb") as f:
            assert f.read() == ",".join(oi.DETECTION_COLUMNS).encode() + b"\n" + b"".join(kept)  # as written
        assert rows == len(kept)


def test_rows_of_the_image_list_are_copied_as_written_quotes_and_all(tmp_path, monkeypatch):
    from yolo_kfp.data import csv_scan

    source = tmp_path / "image_ids.csv"
    titles = ['"Bike, parked"', "Street", '"He said ""stop"""', ""]
    lines = [f"{i:016x},train,https://x/{i}.jpg,,,,Ann,{titles[i % 4]},{i},md5==,,0.0\n" for i in range(200)]
    source.write_text(",".join(oi.IMAGE_ID_COLUMNS) + "\n" + lines[0] + "\n" + "".join(lines[1:]))  # an empty line
    wanted = {f"{i:016x}" for i in range(0, 200, 7)}
    monkeypatch.setattr(csv_scan, "CHUNK_BYTES", 300)
    kept = csv_scan.keep_rows(csv_scan.scan_csv(str(source)), str(source), str(tmp_path / "kept.csv"), wanted)
    assert kept == len(wanted)
    assert (tmp_path / "kept.csv").read_text() == (",".join(oi.IMAGE_ID_COLUMNS) + "\n"
                                                   + "".join(line for line in lines if line[:16] in wanted))
    with open(tmp_path / "kept.csv", newline="") as f:
        assert [r["Title"] for r in csv.DictReader(f)][:3] == ["Bike, parked", "", 'He said "stop"']
    source.write_text(",".join(oi.IMAGE_ID_COLUMNS) + "\n")  # no rows at all
    assert csv_scan.keep_rows(csv_scan.scan_csv(str(source)), str(source), str(tmp_path / "kept.csv"), wanted) == 0
    assert (tmp_path / "kept.csv").read_text() == ",".join(oi.IMAGE_ID_COLUMNS) + "\n"
    source.write_text(",".join(oi.IMAGE_ID_COLUMNS) + '\n0000000000000001,train,u,,,,Ann,"two\nlines",1,m,,0.0\n')
    with pytest.raises(ValueError, match="line break"):
        csv_scan.scan_csv(str(source))


def test_the_plan_reads_a_local_mirror_in_place(mirror, tmp_path, monkeypatch):
    from yolo_kfp.data import openimages_metadata

    monkeypatch.setattr(openimages_metadata, "copy_metadata", lambda *a: pytest.fail("the mirror's files were copied"))
    plan = make_plan(plan_dir=str(tmp_path / "plan"), classes=CLASSES, max_samples_per_class=5, split="validation",
                     seed=42, shard_size=100)
    assert plan["images_per_class"] == {name: 5 for name in CLASSES}


def test_missing_metadata_is_fetched_without_reading_the_image_list(mirror, tmp_path, monkeypatch):
    """FiftyOne's whole download reads the split's image list into Python lists (1.7 M rows for train:
    2.4 GiB); the plan fetches the files with its download helpers alone."""
    import eta.core.web as etaw
    import fiftyone.utils.openimages as fouo

    from yolo_kfp.data.openimages_metadata import fetch_metadata

    sources = {"train-images-boxable-with-rotation.csv": oi.IMAGE_IDS_CSV, "oidv6-train-annotations-bbox.csv":
               oi.DETECTIONS_CSV, "class-descriptions-boxable.csv": oi.CLASSES_CSV}
    fetched = []

    def download_file(url, path=None, quiet=False):  # Open Images' servers, from the mirror's files
        name = url.rsplit("/", 1)[-1]
        fetched.append(name)
        if name == "bbox_labels_600_hierarchy.json":
            with open(path, "w") as f:
                json.dump({"LabelName": "/m/0bl9f", "Subcategory": [{"LabelName": m} for m in ALL_CLASSES.values()]}, f)
            return
        with open(os.path.join(mirror, sources[name])) as f:
            text = f.read()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)

    monkeypatch.setattr(etaw, "download_file", download_file)
    monkeypatch.setattr(fouo, "_load_all_image_ids", lambda *a, **k: pytest.fail("read the whole image list"))
    fetch_metadata(str(tmp_path), "train")
    assert oi.missing_files(str(tmp_path)) == []
    assert sorted(fetched) == sorted([*sources, "bbox_labels_600_hierarchy.json"])
    with open(tmp_path / oi.HIERARCHY_JSON) as f:
        assert {s["LabelName"] for s in json.load(f)["Subcategory"]} == set(ALL_CLASSES)  # display names
    fetch_metadata(str(tmp_path), "train")  # all there: nothing fetched again
    assert len(fetched) == 4
