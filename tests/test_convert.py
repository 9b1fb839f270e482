"""Open Images -> YOLO conversion: exact labels, class handling, splits."""

import json
import os
import subprocess

import pytest
import yaml
from cli_process import CLI
from PIL import Image

from yolo_kfp.data import openimages as oi
from yolo_kfp.data.convert import assign_splits, convert_to_yolo, split_counts
from yolo_kfp.local.synthetic import ALL_CLASSES, write_metadata

MID = ALL_CLASSES  # display name -> real Open Images MID
CLASSES = ["Bicycle", "Car", "Traffic sign"]


def box_row(image_id, name, xmin, xmax, ymin, ymax, group_of=0):
    return [image_id, "xclick", MID[name], 1, xmin, xmax, ymin, ymax, 0, 0, group_of, 0, 0, *[-1] * 8]


def make_raw(root, rows, image_ids, extra_classes=()):
    """A raw dataset in the Open Images V7 layout holding exactly ``rows`` and these images."""
    os.makedirs(os.path.join(root, oi.DATA_DIR), exist_ok=True)
    for image_id in image_ids:
        Image.new("RGB", (8, 8)).save(os.path.join(root, oi.DATA_DIR, f"{image_id}.jpg"))
    image_rows = [[i, "validation", "", "", "", "", "", "", 0, "", "", 0.0] for i in image_ids]
    write_metadata(str(root), "validation", image_rows, rows)
    if extra_classes:
        with open(os.path.join(root, oi.CLASSES_CSV), "a") as f:
            f.writelines(f"{mid},{name}\n" for name, mid in extra_classes)
    return str(root)


def read_labels(out, split=None):
    labels = {}
    for s in [split] if split else ["train", "val", "test"]:
        folder = os.path.join(out, "labels", s)
        for name in os.listdir(folder):
            with open(os.path.join(folder, name)) as f:
                labels[name[:-4]] = [line.split() for line in f.read().splitlines()]
    return labels


@pytest.fixture
def tricky_raw(tmp_path):
    """Images that exercise every rule; ``filler`` images make the three splits non-empty."""
    rows = [
        # multi-class image: both boxes kept, decoys ("Bicycle wheel", "Traffic light") dropped
        box_row("a0000000000000a1", "Car", 0.1, 0.5, 0.2, 0.6),
        box_row("a0000000000000a1", "Bicycle", 0.6, 0.9, 0.1, 0.4),
        box_row("a0000000000000a1", "Bicycle wheel", 0.6, 0.7, 0.3, 0.4),
        box_row("a0000000000000a1", "Traffic light", 0.0, 0.1, 0.0, 0.2),
        # a group-of box: one box around several traffic signs
        box_row("b0000000000000b2", "Traffic sign", 0.2, 0.8, 0.1, 0.3, group_of=1),
        box_row("b0000000000000b2", "Traffic sign", 0.4, 0.5, 0.5, 0.7),
        # boxes poking out of the image, and one entirely outside
        box_row("c0000000000000c3", "Car", -0.1, 0.3, 0.5, 1.25),
        box_row("c0000000000000c3", "Bicycle", 1.1, 1.4, 0.2, 0.4),
        # only decoys whose names contain a selected name: the image is dropped
        box_row("d0000000000000d4", "Bicycle wheel", 0.1, 0.2, 0.1, 0.2),
        box_row("d0000000000000d4", "Stop sign", 0.3, 0.4, 0.3, 0.4),
        box_row("d0000000000000d4", "Bicycle helmet", 0.5, 0.6, 0.5, 0.6),
        # a box whose image was not downloaded, and broken boxes
        box_row("e0000000000000e5", "Car", 0.1, 0.2, 0.1, 0.2),
        box_row("f0000000000000f6", "Car", 0.5, 0.4, 0.1, 0.2),
        box_row("f0000000000000f6", "Car", "", 0.4, 0.1, 0.2),
        box_row("f0000000000000f6", "Traffic sign", 0.1, 0.3, 0.1, 0.3),
    ]
    filler = [f"{i:016x}" for i in range(1, 17)]
    rows += [box_row(i, "Car", 0.25, 0.75, 0.25, 0.75) for i in filler]
    images = ["a0000000000000a1", "b0000000000000b2", "c0000000000000c3", "d0000000000000d4", "f0000000000000f6",
              *filler]
    return make_raw(tmp_path / "raw", rows, images)


def test_labels_are_exact(tricky_raw, tmp_path):
    out = str(tmp_path / "yolo")
    stats = convert_to_yolo(raw_dir=tricky_raw, output_dir=out, classes=CLASSES, seed=42)
    labels = read_labels(out)
    assert labels["a0000000000000a1"] == [["1", "0.300000", "0.400000", "0.400000", "0.400000"],
                                          ["0", "0.750000", "0.250000", "0.300000", "0.300000"]]
    assert labels["b0000000000000b2"] == [["2", "0.500000", "0.200000", "0.600000", "0.200000"],
                                          ["2", "0.450000", "0.600000", "0.100000", "0.200000"]]
    # clamped to [0, 1]; the box wholly right of the image is gone
    assert labels["c0000000000000c3"] == [["1", "0.150000", "0.750000", "0.300000", "0.500000"]]
    assert labels["f0000000000000f6"] == [["2", "0.200000", "0.200000", "0.200000", "0.200000"]]
    assert "d0000000000000d4" not in labels and "e0000000000000e5" not in labels
    assert stats["images"] == 20 and stats["boxes"] == 22
    assert stats["dropped"] == {"boxes_of_other_classes": 5, "invalid_boxes": 2, "boxes_clamped": 2,
                                "boxes_outside_image": 1, "boxes_without_image": 1,
                                "images_without_selected_boxes": 1, "unreadable_images": 0}


def test_group_of_boxes_can_be_excluded(tricky_raw, tmp_path):
    out = str(tmp_path / "yolo")
    stats = convert_to_yolo(raw_dir=tricky_raw, output_dir=out, classes=CLASSES, seed=42, include_group_of=False)
    assert read_labels(out)["b0000000000000b2"] == [["2", "0.450000", "0.600000", "0.100000", "0.200000"]]
    assert stats["dropped"]["group_of_boxes"] == 1


def test_class_ids_follow_the_listed_order(tricky_raw, tmp_path):
    out = str(tmp_path / "yolo")
    convert_to_yolo(raw_dir=tricky_raw, output_dir=out, classes=["Traffic sign", "Car", "Bicycle"], seed=42)
    assert [line[0] for line in read_labels(out)["a0000000000000a1"]] == ["1", "2"]
    with open(os.path.join(out, "dataset.yaml")) as f:
        spec = yaml.safe_load(f)
    assert spec["names"] == ["Traffic sign", "Car", "Bicycle"] and spec["nc"] == 3


def test_a_subset_of_classes_drops_the_rest(tricky_raw, tmp_path):
    out = str(tmp_path / "yolo")
    stats = convert_to_yolo(raw_dir=tricky_raw, output_dir=out, classes=["Bicycle", "Traffic sign"], seed=42)
    labels = read_labels(out)
    assert set(labels) == {"a0000000000000a1", "b0000000000000b2", "f0000000000000f6"}
    assert labels["a0000000000000a1"] == [["0", "0.750000", "0.250000", "0.300000", "0.300000"]]
    assert stats["dropped"]["images_without_selected_boxes"] == 18
    with pytest.raises(ValueError, match="only 1 images have boxes"):
        convert_to_yolo(raw_dir=tricky_raw, output_dir=str(tmp_path / "one"), classes=["Bicycle"], seed=42)


def test_dataset_yaml_resolves_relative_to_itself(tricky_raw, tmp_path):
    from yolo_kfp.model.ultralytics_env import configure_offline

    configure_offline()  # check_det_dataset fetches a font otherwise
    from ultralytics.data.utils import check_det_dataset

    out = tmp_path / "yolo"
    convert_to_yolo(raw_dir=tricky_raw, output_dir=str(out), classes=CLASSES, seed=42)
    resolved = check_det_dataset(str(out / "dataset.yaml"))
    assert resolved["train"] == str(out / "images" / "train")
    assert resolved["test"] == str(out / "images" / "test")
    assert resolved["names"] == dict(enumerate(CLASSES))
    for split in ("train", "val", "test"):
        images = {n[:-4] for n in os.listdir(out / "images" / split)}
        assert images == {n[:-4] for n in os.listdir(out / "labels" / split)}


def test_stats_count_images_and_boxes_per_class_and_split(tricky_raw, tmp_path):
    stats = convert_to_yolo(raw_dir=tricky_raw, output_dir=str(tmp_path / "yolo"), classes=CLASSES, seed=42)
    per_split = stats["splits"]
    assert sum(per_split[s]["images"] for s in per_split) == 20
    assert sum(per_split[s]["per_class"]["Car"]["boxes"] for s in per_split) == 18
    assert sum(per_split[s]["per_class"]["Traffic sign"]["images"] for s in per_split) == 2
    with open(tmp_path / "yolo" / "stats.json") as f:
        assert json.load(f) == stats


@pytest.mark.parametrize("total, expected", [(300, (225, 38, 37)), (20, (15, 3, 2)), (3, (1, 1, 1)),
                                             (8, (6, 1, 1))])
def test_split_sizes(total, expected):
    assert split_counts(total, (0.75, 0.125, 0.125)) == expected


def test_split_is_deterministic_and_a_partition():
    ids = [f"{i:016x}" for i in range(200)]
    first = assign_splits(ids, 42, (0.75, 0.125, 0.125))
    assert first == assign_splits(list(reversed(ids)), 42, (0.75, 0.125, 0.125))
    assert set(first) == set(ids)
    assert sorted(first.values()).count("train") == 150
    assert first != assign_splits(ids, 43, (0.75, 0.125, 0.125))


@pytest.mark.parametrize("ratios", [(0.8, 0.1, 0.2), (1.2, -0.1, -0.1), (0.5, 0.5)])
def test_bad_split_ratios_are_refused_before_reading_anything(ratios, tmp_path):
    with pytest.raises(ValueError, match="split_ratios must be three non-negative numbers"):
        convert_to_yolo(raw_dir=str(tmp_path / "absent"), output_dir=str(tmp_path / "yolo"), classes=["Car"],
                        split_ratios=ratios)


def test_unknown_class_names_the_closest(tricky_raw, tmp_path):
    with pytest.raises(ValueError, match=r"'Carr' \(did you mean 'Car'"):
        convert_to_yolo(raw_dir=tricky_raw, output_dir=str(tmp_path / "yolo"), classes=["Bicycle", "Carr"], seed=42)


def test_missing_metadata_is_named(tricky_raw, tmp_path):
    os.remove(os.path.join(tricky_raw, oi.HIERARCHY_JSON))
    with pytest.raises(FileNotFoundError, match="hierarchy.json"):
        convert_to_yolo(raw_dir=tricky_raw, output_dir=str(tmp_path / "yolo"), classes=CLASSES, seed=42)


def test_cli_step_convert(tricky_raw, tmp_path):
    out = str(tmp_path / "cli")
    result = subprocess.run([CLI, "step", "convert",
                             "--raw", tricky_raw, "--output-dir", out, "--classes", "Bicycle,Car,Traffic sign",
                             "--seed", "42"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["split_images"] == {"train": 15, "val": 3, "test": 2}
    reference = str(tmp_path / "core")
    convert_to_yolo(raw_dir=tricky_raw, output_dir=reference, classes=CLASSES, seed=42)
    assert read_labels(out) == read_labels(reference)
    for split in ("train", "val", "test"):
        assert sorted(os.listdir(os.path.join(out, "labels", split))) == \
            sorted(os.listdir(os.path.join(reference, "labels", split)))
