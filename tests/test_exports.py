"""Labelled exports under extra_data (COCO, Pascal VOC, CVAT for images, YOLO): each read to exact boxes, their
names mapped by class_map, other classes dropped and counted; each bad export refused in one line naming the file
and the entry, within seconds, with nothing written."""

import copy
import os
import shutil
import time

import pytest
from conftest import CLASSES
from export_files import (
    CLASS_MAP,
    COCO,
    CVAT_IMAGES,
    EXPECTED,
    WRITERS,
    all_formats,
    coco,
    cvat,
    cvat_xml,
    voc,
    voc_xml,
    yolo,
)
from test_convert import box_row, make_raw, read_labels

from yolo_kfp.data.convert import convert_to_yolo, dataset_markdown

FILLER = [f"{i:016x}" for i in range(1, 9)]
URL = "s3://labelled/new"


@pytest.fixture
def raw(tmp_path):
    return make_raw(tmp_path / "raw", [box_row(i, "Car", 0.25, 0.75, 0.25, 0.75) for i in FILLER], FILLER)


def converted(raw, extra, out, **settings) -> dict:
    return convert_to_yolo(raw_dir=raw, output_dir=str(out), classes=CLASSES, seed=42, extra_dirs=(str(extra),),
                           extra_names=(URL,), allow_missing_classes=True, **settings)


def boxes_per_class(out, prefix="extra_") -> dict:
    counts = dict.fromkeys(CLASSES, 0)
    for image_id, lines in read_labels(str(out)).items():
        for line in lines if image_id.startswith(prefix) else []:
            counts[CLASSES[int(line[0])]] += 1
    return counts


@pytest.mark.parametrize("kind", list(WRITERS))
def test_each_format_gives_exactly_its_boxes(raw, tmp_path, kind):
    stats = converted(raw, WRITERS[kind](tmp_path / kind), tmp_path / "out", class_map=CLASS_MAP)
    boxes, other = EXPECTED[kind]
    assert boxes_per_class(tmp_path / "out") == boxes
    source = stats["sources"][URL]
    assert source["format"] == kind and source["path"] == "." and source["boxes"] == boxes
    assert source["dropped"]["other_classes"] == other
    assert stats["sources"]["open_images"]["boxes"] == {"Bicycle": 0, "Car": len(FILLER), "Traffic sign": 0}


def test_exports_in_sub_folders_are_one_source_each_and_the_union_is_converted(raw, tmp_path):
    stats = converted(raw, all_formats(tmp_path / "extra"), tmp_path / "out", class_map=CLASS_MAP)
    union = {c: sum(EXPECTED[k][0][c] for k in EXPECTED) for c in CLASSES}
    assert boxes_per_class(tmp_path / "out") == union == {"Bicycle": 4, "Car": 4, "Traffic sign": 2}
    assert {name: (s["format"], s["boxes"]) for name, s in stats["sources"].items() if name != "open_images"} == {
        f"{URL}/{kind}": (kind, EXPECTED[kind][0]) for kind in EXPECTED}
    assert stats["dropped"]["boxes_of_other_classes"] == 5 and stats["extra_images"] == 6
    labels = read_labels(str(tmp_path / "out"))
    assert ["1", "0.398438", "0.369792", "0.476562", "0.510417"] in labels["extra_cvat_c1"]  # sub-pixel kept
    assert labels["extra_coco_b"] == [["1", "0.875000", "0.833333", "0.250000", "0.333333"]]  # clamped to the edge
    report = dataset_markdown(stats)
    assert "## Sources" in report and "boxes of other classes (person 1)" in report


def test_class_map_maps_names_and_without_it_they_are_dropped_and_counted(raw, tmp_path):
    extra = cvat(tmp_path / "cvat")
    stats = converted(raw, extra, tmp_path / "mapped", class_map={"car": "Car", "tree": "Traffic sign"})
    assert boxes_per_class(tmp_path / "mapped") == {"Bicycle": 0, "Car": 1, "Traffic sign": 1}
    assert stats["sources"][URL]["dropped"]["other_classes"] == {"bike": 1}
    stats = converted(raw, extra, tmp_path / "unmapped", class_map={"car": "Car", "truck": "Car"})
    assert stats["sources"][URL]["dropped"]["other_classes"] == {"bike": 1, "tree": 1}
    assert stats["class_map_unused"] == ["truck"]  # a name no export has is told, not refused


def test_crowd_boxes_follow_include_group_of(raw, tmp_path):
    stats = converted(raw, coco(tmp_path / "coco"), tmp_path / "out", class_map=CLASS_MAP, include_group_of=False)
    assert boxes_per_class(tmp_path / "out") == {"Bicycle": 1, "Car": 2, "Traffic sign": 0}
    assert stats["sources"][URL]["dropped"]["crowd_boxes"] == 1


def coco_with(change):
    document = copy.deepcopy(COCO)
    change(document)
    return lambda root: coco(root, document)


def coco_text(text):
    def write(root):
        coco(root)
        (root / "labels.json").write_text(text)
        return root
    return write


def without(kind, path):
    def write(root):
        WRITERS[kind](root)
        os.remove(root / path)
        return root
    return write


def yolo_lines(lines):
    return lambda root: yolo(root, lines=lines)


def set_in(table, index, key, value):
    return coco_with(lambda d: d[table][index].__setitem__(key, value))


ENTITY_BOMB = '<!DOCTYPE annotations [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>\n'
# What is wrong, the export that has it, and what its one line must say (after "extra_data: s3://labelled/new/").
REFUSED = {
    "malformed JSON": (coco_text('{"images": [{"id": 1,\n "file_name": }'), "labels.json: malformed JSON at line 2"),
    "malformed XML": (lambda r: voc(r, {"v1": "<annotation><size></annotation>"}),
                      "Annotations/v1.xml: malformed XML at line 1, column 21: mismatched tag"),
    "a DTD": (lambda r: cvat(r, cvat_xml(before=ENTITY_BOMB)), "annotations.xml: declares a document type"),
    "no image entry": (set_in("annotations", 1, "image_id", 99),
                       "labels.json: annotation 2: image_id 99 names no image"),
    "COCO image file absent": (without("coco", "images/a.jpg"),
                               "labels.json: image 1: its file 'a.jpg' is not in the export"),
    "VOC image file absent": (without("voc", "JPEGImages/v2.jpg"), "Annotations/v2.xml: its image 'v2.jpg' is not in"),
    "CVAT image file absent": (without("cvat", "images/c1.png"),
                               "annotations.xml: image 0 (c1.png): its file is not in"),
    "YOLO image file absent": (without("yolo", "images/train/street2.jpg"),
                               "labels/train/street2.txt: its image images/"),
    "COCO box outside": (set_in("annotations", 1, "bbox", [30, 20, 20, 10]),
                         "labels.json: annotation 2: bbox [30, 20, 20, 10] lies outside its 40x30 image"),
    "COCO box without area": (set_in("annotations", 0, "bbox", [10, 10, 0, 5]),
                              "labels.json: annotation 1: bbox [10, 10, 0, 5] has no area"),
    "COCO box not numbers": (set_in("annotations", 0, "bbox", [1, "x", 2, 3]),
                             "labels.json: annotation 1: bbox [1, 'x', 2, 3] is not [x, y, width, height]"),
    "VOC box outside": (lambda r: voc(r, {"v1": voc_xml("v1", [("bike", 1, 1, 60, 20)])}),
                        "Annotations/v1.xml: object 1 (bike): <bndbox> xmin=1, ymin=1, xmax=60, ymax=20 lies outside"),
    "CVAT box without area": (lambda r: cvat(r, cvat_xml(CVAT_IMAGES.replace('xbr="12"', 'xbr="0"'))),
                              "annotations.xml: image 0 (c1.png): box 2 (bike): xtl=0, ytl=20, xbr=0, ybr=48 has no "
                              "area"),
    "YOLO box without area": (yolo_lines("2 0.5 0.5 0 0.2\n"), "labels/train/street1.txt: line 1: box 0.5 0.5 0 0.2 "
                                                               "has no area"),
    "COCO category undefined": (set_in("annotations", 2, "category_id", 9),
                                "labels.json: annotation 3: category_id 9 names no category"),
    "CVAT label undefined": (lambda r: cvat(r, cvat_xml(CVAT_IMAGES.replace('label="tree" occluded="0" xtl',
                                                                            'label="bus" occluded="0" xtl'))),
                             "annotations.xml: image 1 (c2.png): box 1 (bus): its label is not one of the labels"),
    "YOLO class undefined": (yolo_lines("7 0.5 0.5 0.2 0.2\n"), "labels/train/street1.txt: line 1: class 7 is not one"),
    "duplicate COCO image ids": (coco_with(lambda d: d["images"].append({**d["images"][1], "id": 1})),
                                 "labels.json: image 1: id 1 is used by another image"),
    "duplicate COCO file names": (set_in("images", 1, "file_name", "a.jpg"),
                                  "labels.json: image 2: file_name 'a.jpg' is listed twice (also as labels.json "
                                  "image 1)"),
    "duplicate CVAT names": (lambda r: cvat(r, cvat_xml(CVAT_IMAGES.replace('name="c2.png"', 'name="c1.png"'))),
                             "annotations.xml: image 1 (c1.png): its name is used by another image too"),
    "a COCO path outside": (set_in("images", 0, "file_name", "../../etc/passwd"),
                            "labels.json: image 1: file_name '../../etc/passwd' leaves the export"),
    "a CVAT path outside": (lambda r: cvat(r, cvat_xml(CVAT_IMAGES.replace('name="c1.png"', 'name="/etc/hosts"'))),
                            "annotations.xml: image 0 (/etc/hosts): its name leaves the export"),
    "no box of a trained class": (lambda r: voc(r, {"v1": voc_xml("v1", [("dog", 1, 1, 9, 9)])}),
                                  ": no box of the classes the run trains (Bicycle, Car, Traffic sign); its boxes "
                                  "are of 'dog': map them with class_map"),
    "YOLO without names": (lambda r: yolo(r, names=()), ": is in YOLO layout but names no classes"),
    "no export": (lambda r: (r / "notes").mkdir(parents=True) or r, "notes: holds no export: expected an export"),
}


@pytest.mark.parametrize("problem", list(REFUSED))
def test_a_bad_export_is_refused_in_one_line_naming_file_and_entry(raw, tmp_path, problem):
    write, line = REFUSED[problem]
    extra = write(tmp_path / "extra")
    started = time.monotonic()
    with pytest.raises(ValueError) as refused:
        converted(raw, extra, tmp_path / "out", class_map={"bike": "Bicycle"})
    assert time.monotonic() - started < 10
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"extra_data: {URL}"), message
    assert line in message, message
    assert not os.path.exists(tmp_path / "out")  # nothing written


def test_every_problem_of_every_export_is_told_at_once_up_to_twenty_lines(raw, tmp_path):
    document = copy.deepcopy(COCO)
    document["annotations"] += [{"id": 100 + i, "image_id": 1, "category_id": 9, "bbox": [1, 1, 2, 2]}
                                for i in range(24)]
    extra = tmp_path / "extra"
    coco(extra / "coco", document)
    voc(extra / "voc", {"v2": "<annotation>"})
    with pytest.raises(ValueError) as refused:
        converted(raw, extra, tmp_path / "out", class_map=CLASS_MAP)
    lines = str(refused.value).splitlines()
    assert len(lines) == 21 and lines[-1] == "and 5 more problems"
    assert lines[0] == f"extra_data: {URL}/coco/labels.json: annotation 100: category_id 9 names no category"
    assert not os.path.exists(tmp_path / "out")


def test_a_class_map_naming_a_class_the_run_does_not_train_is_refused_before_reading(raw, tmp_path):
    with pytest.raises(ValueError, match="class_map maps 'bike' to 'Truck', which is not one of the classes the run "
                                         "trains"):
        converted(raw, tmp_path / "nowhere", tmp_path / "out", class_map={"bike": "Truck"})


def test_the_format_named_is_the_format_read(raw, tmp_path):
    extra = coco(tmp_path / "extra")
    with pytest.raises(ValueError, match=r"holds no export: expected a voc export \(Annotations/"):
        converted(raw, extra, tmp_path / "out", extra_data_format="voc")
    stats = converted(raw, extra, tmp_path / "out", extra_data_format="coco", class_map=CLASS_MAP)
    assert stats["sources"][URL]["format"] == "coco"


def test_roboflow_splits_take_their_names_from_the_top(raw, tmp_path):
    """Roboflow's YOLO export: train/ and valid/ each images/ and labels/, data.yaml above them."""
    extra = tmp_path / "extra"
    yolo(extra / "train")
    yolo(extra / "valid")
    os.remove(extra / "train" / "data.yaml")
    os.rename(extra / "valid" / "data.yaml", extra / "data.yaml")
    stats = converted(raw, extra, tmp_path / "out")
    assert [stats["sources"][f"{URL}/{s}"]["boxes"]["Car"] for s in ("train", "valid")] == [1, 1]
    assert {"extra_train_street1", "extra_valid_street1"} <= set(read_labels(str(tmp_path / "out")))



def test_class_map_and_the_format_are_given_on_the_command_line_and_checked_before_any_work():
    """``run-local --param class_map='{"bike": "Bicycle"}'``: the CLI's own parser and check."""
    from yolo_kfp.params.run_values import parse_params

    assert parse_params(['class_map={"bike": "Bicycle"}', "extra_data_format=voc"]) == {
        "class_map": {"bike": "Bicycle"}, "extra_data_format": "voc"}
    with pytest.raises(ValueError, match="class_map maps 'bike' to 'Truck', which is not one of the classes"):
        parse_params(['class_map={"bike": "Truck"}'])
    with pytest.raises(ValueError, match="extra_data_format must be one of '', 'coco', 'voc'"):
        parse_params(["extra_data_format=labelme"])


def test_images_of_one_name_in_two_folders_of_an_export_stay_apart(raw, tmp_path):
    extra = yolo(tmp_path / "extra")
    shutil.copytree(extra / "images" / "train", extra / "images" / "val")
    shutil.copytree(extra / "labels" / "train", extra / "labels" / "val")
    stats = converted(raw, extra, tmp_path / "out")
    assert {"extra_images_train_street1", "extra_images_val_street1"} <= set(read_labels(str(tmp_path / "out")))
    assert stats["sources"][URL]["boxes"] == {"Bicycle": 0, "Car": 2, "Traffic sign": 2}
