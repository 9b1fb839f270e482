"""The evaluation report in a real browser (Debian's headless Chromium): its figures decode and show, its
per-class table is there, and it asks the network for nothing. The demo's own report gets the same check
(tests/test_demo.py); here a report is made from the evaluate step's own drawing code in seconds."""

import numpy as np
from headless_browser import browser_or_skip, problems, render

from yolo_kfp.model.analysis import draw_grid, html_report, plot_confusion
from yolo_kfp.model.figures import COCO_FIGURES

CLASSES = ["Bicycle", "Car", "Traffic sign"]


def report_page(folder) -> str:
    """A report as the evaluate step writes it: the confusion matrix and a grid of images with boxes."""
    from PIL import Image

    image = folder / "street.jpg"
    Image.new("RGB", (160, 120), (90, 120, 160)).save(image)
    truth = np.array([[1, 0.1, 0.2, 0.5, 0.7]])
    predicted = np.array([[1, 0.9, 0.12, 0.22, 0.5, 0.68]])
    metrics = {"map50": 0.9, "map50_95": 0.6, "precision": 0.8, "recall": 0.7, "images": 1,
               "per_class": {name: {"instances": 1, "ap50": 0.9, "ap50_95": 0.6, "precision": 0.8, "recall": 0.7}
                             for name in CLASSES},
               "coco": {name: None if name.endswith("small") else 0.5 for name in COCO_FIGURES},
               "detections": {"confidence": 0.001, "max_per_image": 300, "evaluated": 2, "shown_confidence": 0.25}}
    figures = {"Confusion matrix": plot_confusion(np.eye(4, dtype=int), [*CLASSES, "background"]),
               "Test images": draw_grid([(str(image), truth, predicted)], CLASSES)}
    page = folder / "report.html"
    page.write_text(html_report(metrics, figures))
    return str(page)


def test_the_report_renders_its_figures_offline(tmp_path):
    browser = browser_or_skip()
    page = report_page(tmp_path)
    assert problems(render(page, browser), page, figures=2, classes=len(CLASSES), coco=len(COCO_FIGURES)) == []


def test_the_check_sees_a_request_a_broken_figure_and_a_missing_table(tmp_path):
    browser = browser_or_skip()
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body><img src='data:image/png;base64,AAAA'>"
                    "<img src='https://example.com/logo.png'><link rel=stylesheet href='http://fonts.example/c.css'>"
                    "</body></html>")
    found = problems(render(str(page), browser), str(page), figures=2, classes=3, coco=12)
    assert "requested https://example.com/logo.png" in found
    assert "requested http://fonts.example/c.css" in found
    assert "image data:image/png;base64,AAAA... did not render (0x0)" in found
    assert "image https://example.com/logo.png... did not render (0x0)" in found
    assert "per-class table has 0 rows, not 3 classes and a header" in found
    assert "COCO's figures shown are [], not 12 figures" in found
