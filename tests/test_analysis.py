"""Confusion matrix, report and FiftyOne-loadable predictions."""

import numpy as np

from yolo_kfp.model.analysis import confusion_matrix, html_report, iou


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
                                     "recall": None}}}
    page = html_report(metrics, {"PR curve": "AAAA"})
    assert "<table id=\"per-class\">" in page and "Car &lt;b&gt;" in page and "<td>–</td>" in page
    assert "src='data:image/png;base64,AAAA'" in page and "<figcaption>PR curve</figcaption>" in page
