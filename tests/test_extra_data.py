"""A user's own labelled images from S3, merged into the dataset; the cache key follows their content."""

import json
import os

import pytest
import yaml
from conftest import CLASSES
from export_files import CLASS_MAP, EXPECTED, all_formats, yolo
from test_convert import box_row, make_raw, read_labels

from yolo_kfp.components.convert import convert
from yolo_kfp.data.convert import convert_to_yolo
from yolo_kfp.infra.storage import S3Url, Storage

FILLER = [f"{i:016x}" for i in range(1, 9)]


@pytest.fixture
def raw(tmp_path):
    return make_raw(tmp_path / "raw", [box_row(i, "Car", 0.25, 0.75, 0.25, 0.75) for i in FILLER], FILLER)


def test_yolo_layout_is_merged_by_class_name(raw, tmp_path):
    out = str(tmp_path / "out")
    stats = convert_to_yolo(raw_dir=raw, output_dir=out, classes=CLASSES, seed=42,
                            extra_dirs=(str(yolo(tmp_path / "extra")),),
                            allow_missing_classes=True)  # no bicycle anywhere
    labels = read_labels(out)
    # Traffic sign is class 2 here, Car 1; the Car box poked out of the image and is clamped
    assert labels["extra_street1"] == [["2", "0.500000", "0.500000", "0.200000", "0.200000"],
                                       ["1", "0.850000", "0.850000", "0.300000", "0.300000"]]
    assert "extra_street2" not in labels  # only a Person box and a polygon line
    assert stats["images"] == len(FILLER) + 1 and stats["extra_images"] == 1
    assert stats["dropped"]["boxes_of_other_classes"] == 2 and stats["dropped"]["unsupported_label_lines"] == 1
    assert any(n == "extra_street1.png" for s in ("train", "val", "test") for n in os.listdir(f"{out}/images/{s}"))


def test_open_images_layout_is_merged(raw, tmp_path):
    extra = make_raw(tmp_path / "extra", [box_row("eeeeeeeeeeeeeee1", "Bicycle", 0.1, 0.3, 0.1, 0.3)],
                     ["eeeeeeeeeeeeeee1"])
    stats = convert_to_yolo(raw_dir=raw, output_dir=str(tmp_path / "out"), classes=CLASSES, seed=42,
                            extra_dirs=(extra,),
                            allow_missing_classes=True)  # no traffic sign anywhere
    assert read_labels(str(tmp_path / "out"))["eeeeeeeeeeeeeee1"] == [["0", "0.200000", "0.200000", "0.200000",
                                                                        "0.200000"]]
    assert stats["extra_images"] == 1


def test_convert_component_reads_each_format_of_extra_data_from_s3(s3, raw, tmp_path, local_kfp, monkeypatch):
    """One export of each format under one prefix, as a run gets them: the dataset holds exactly their boxes of the
    run's classes (class_map applied), and the stats and the run's metadata count each source."""
    from kfp import dsl
    from kfp.dsl import Dataset

    for key, value in s3.data_connection().items():
        monkeypatch.setenv(key, value)
    storage = Storage.from_env()
    storage.client.create_bucket(Bucket="labelled")
    storage.upload_dir(str(all_formats(tmp_path / "extra")), S3Url("labelled", "new-images"))

    @dsl.pipeline
    def convert_with_extra():
        raw_dataset = dsl.importer(artifact_uri=raw, artifact_class=Dataset, reimport=False)
        convert(raw_dataset=raw_dataset.output, classes=CLASSES, seed=42, split_ratios=[0.75, 0.125, 0.125],
                include_group_of=True, extra_data="s3://labelled/new-images", extra_data_fingerprint="f1",
                extra_data_format="", class_map=CLASS_MAP, allow_missing_classes=False)

    convert_with_extra()
    (run,) = (local_kfp / "pipeline-root").iterdir()
    artifact = run / "convert" / "dataset"
    assert sorted(os.listdir(artifact)) == ["dataset.yaml", "shard-00000.tar", "stats.json"]
    from yolo_kfp.infra.packing import materialized

    with materialized(str(artifact)) as folder:
        classes = [CLASSES[int(line[0])] for lines in read_labels(folder).values() for line in lines]
    assert {c: classes.count(c) for c in CLASSES} == {"Bicycle": 4, "Car": 4 + len(FILLER), "Traffic sign": 2}
    stats = json.loads((artifact / "stats.json").read_text())
    assert {name: (s["format"], s["boxes"], s["dropped"].get("other_classes")) for name, s in stats["sources"].items()
            } == {"open_images": ("openimages", {"Bicycle": 0, "Car": len(FILLER), "Traffic sign": 0}, None)} | {
        f"s3://labelled/new-images/{kind}": (kind, boxes, other) for kind, (boxes, other) in EXPECTED.items()}
    assert (run / "convert" / "dataset_stats").read_text() == (artifact / "stats.json").read_text()
    metadata = json.loads((run / "convert" / "executor_output.json").read_text())["artifacts"]["dataset"]
    assert metadata["artifacts"][0]["metadata"]["sources"]["s3://labelled/new-images/coco"] == {
        "format": "coco", "images": 3, "boxes": 4, "dropped": "1 boxes of other classes (person 1), 1 boxes clamped"}
    assert "## Sources" in (run / "convert" / "dataset_report").read_text()


def test_the_extra_data_fingerprint_keys_the_convert_step(default_pipeline):
    with open(default_pipeline) as f:
        spec = next(yaml.safe_load_all(f))
    fingerprint = spec["root"]["dag"]["tasks"]["convert"]["inputs"]["parameters"]["extra_data_fingerprint"]
    assert fingerprint["taskOutputParameter"] == {"outputParameterKey": "fingerprint", "producerTask": "preflight"}
    assert spec["root"]["dag"]["tasks"]["preflight"]["cachingOptions"] == {}
