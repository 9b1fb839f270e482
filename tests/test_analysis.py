"""Confusion matrix, report and FiftyOne-loadable predictions."""

import json

import numpy as np
import pytest

from yolo_kfp.model.analysis import confusion_matrix, html_report, iou
from yolo_kfp.model.coco import EvaluatedImage, coco_figures, write_coco_files
from yolo_kfp.model.figures import COCO_FIGURES, recorded_figures


def truth(*rows):
    return np.array(rows, dtype=float).reshape(-1, 5)


def predicted(*rows):
    return np.array(rows, dtype=float).reshape(-1, 6)


def test_iou():
    a = np.array([[0, 0, 2, 2]], dtype=float)
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]], dtype=float)
    assert np.allclose(iou(a, b), [[1 / 7, 1.0, 0.0]])


def test_confusion_matrix_counts_hits_confusions_misses_and_false_detections():
    pairs = [
        # a car found, a bicycle taken for a car, a traffic sign missed
        (truth([1, .1, .1, .3, .3], [0, .5, .5, .7, .7], [2, .8, .1, .9, .2]),
         predicted([1, .9, .1, .1, .3, .3], [1, .8, .5, .5, .7, .7])),
        # a detection where nothing is, and two predictions for one car: the second is a false detection
        (truth([1, .1, .1, .5, .5]),
         predicted([2, .6, .6, .6, .9, .9], [1, .9, .1, .1, .5, .5], [1, .5, .12, .12, .5, .5])),
        (truth(), predicted()),
    ]
    matrix = confusion_matrix(pairs, nc=3)
    expected = np.zeros((4, 4), dtype=int)
    expected[1, 1] = 2  # cars found
    expected[0, 1] = 1  # a bicycle predicted as a car
    expected[2, 3] = 1  # a traffic sign missed
    expected[3, 2] = 1  # a traffic sign where there is none
    expected[3, 1] = 1  # a second car box on a car already matched
    assert (matrix == expected).all()
    assert matrix[:3].sum() == 4  # every true box counted once


def test_html_report_has_the_table_and_the_images():
    metrics = {"map50": 0.5, "map50_95": 0.3, "precision": 0.6, "recall": 0.4, "images": 3,
               "per_class": {"Car <b>": {"instances": 2, "ap50": 0.5, "ap50_95": 0.3, "precision": 0.6,
                                         "recall": 0.4},
                             "Bus": {"instances": 0, "ap50": None, "ap50_95": None, "precision": None,
                                     "recall": None}},
               "coco": {name: None if name == "APsmall" else 0.25 for name in COCO_FIGURES},
               "detections": {"confidence": 0.001, "max_per_image": 300, "evaluated": 17, "shown_confidence": 0.25}}
    page = html_report(metrics, {"PR curve": "AAAA"})
    assert "<table id=\"per-class\">" in page and "Car &lt;b&gt;" in page and "<td>–</td>" in page
    assert "<tr><td>APsmall</td><td>AP for small objects: area &lt; 32²</td><td>–</td></tr>" in page
    assert "<tr><td>AR100</td><td>AR given 100 detections per image</td><td>0.250</td></tr>" in page
    assert "confidence &ge; 0.001, up to 300 an image (17 in all" in page and "confidence &ge; 0.25." in page
    assert "src='data:image/png;base64,AAAA'" in page and "<figcaption>PR curve</figcaption>" in page


# One 640x480 image: a small box of class 0 (20x20 px) and a large one of class 1 (200x100 px).
STREET = np.array([[0, 10, 10, 30, 30], [1, 100, 100, 300, 200]], dtype=float)


def street(tmp_path, *detections) -> dict:
    found = np.array(detections, dtype=float).reshape(-1, 6)
    image = EvaluatedImage("/data/images/test/street.jpg", 640, 480, STREET, found)
    assert write_coco_files([image], ["Bicycle", "Car"], str(tmp_path)) == len(detections)
    return coco_figures(str(tmp_path))


def test_coco_files_hold_the_boxes_in_pixels_as_coco_writes_them(tmp_path):
    street(tmp_path, [1, 0.91234567, 100, 100, 300, 200])
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    assert truth["images"] == [{"id": 1, "file_name": "street.jpg", "width": 640, "height": 480}]
    assert truth["categories"] == [{"id": 1, "name": "Bicycle"}, {"id": 2, "name": "Car"}]
    assert [(a["category_id"], a["bbox"], a["area"]) for a in truth["annotations"]] == [
        (1, [10.0, 10.0, 20.0, 20.0], 400.0), (2, [100.0, 100.0, 200.0, 100.0], 20000.0)]
    assert json.loads((tmp_path / "predictions.json").read_text()) == [
        {"image_id": 1, "category_id": 2, "score": 0.91235, "bbox": [100.0, 100.0, 200.0, 100.0]}]


@pytest.mark.parametrize("detections, expected", [
    # both boxes found exactly: every figure 1, none for medium objects (there are none)
    ([[0, 0.9, 10, 10, 30, 30], [1, 0.8, 100, 100, 300, 200]],
     {"AP": 1.0, "APsmall": 1.0, "APmedium": None, "APlarge": 1.0, "AR1": 1.0, "AR100": 1.0}),
    # the large box only: its class has AP 1 and the small one's 0, so AP is their mean
    ([[1, 0.8, 100, 100, 300, 200]], {"AP": 0.5, "AP50": 0.5, "APsmall": 0.0, "APlarge": 1.0, "AR100": 0.5}),
    # the right box under the wrong class: nothing found
    ([[0, 0.8, 100, 100, 300, 200]], {"AP": 0.0, "APlarge": 0.0, "AR100": 0.0}),
    # no detection at all (pycocotools' loadRes cannot take none): nothing found, not an error
    ([], {"AP": 0.0, "AP75": 0.0, "APmedium": None, "AR10": 0.0}),
])
def test_coco_figures_are_pycocotools_own(tmp_path, detections, expected):
    figures = street(tmp_path, *detections)
    assert list(figures) == list(COCO_FIGURES)
    assert {name: figures[name] for name in expected} == pytest.approx(expected)


def test_the_recorded_figures_are_ultralytics_and_coco_where_coco_has_one():
    metrics = {"map50": 0.5, "map50_95": 0.3, "precision": 0.6, "recall": 0.4, "per_class": {},
               "coco": {"AP": 0.31, "APsmall": None}}
    assert recorded_figures(metrics) == {"map50": 0.5, "map50_95": 0.3, "precision": 0.6, "recall": 0.4,
                                         "coco_AP": 0.31}
