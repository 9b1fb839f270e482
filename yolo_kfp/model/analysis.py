"""What a person looks at after evaluation: a confusion matrix, test images with their boxes, and an HTML
report of them with the figures (Ultralytics' and COCO's, ``yolo_kfp.model.coco``).

Plots are drawn with matplotlib's bundled DejaVu font: nothing is downloaded.
"""

import base64
import html
import io

import numpy as np

from yolo_kfp.model.figures import COCO_FIGURES, WHY_THEY_DIFFER

CONFIDENCE = 0.25  # detections counted in the confusion matrix, drawn on the images and compared in the export
IOU_MATCH = 0.5


def iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (x0, y0, x1, y1) boxes."""
    x0 = np.maximum(boxes_a[:, None, 0], boxes_b[None, :, 0])
    y0 = np.maximum(boxes_a[:, None, 1], boxes_b[None, :, 1])
    x1 = np.minimum(boxes_a[:, None, 2], boxes_b[None, :, 2])
    y1 = np.minimum(boxes_a[:, None, 3], boxes_b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (boxes_a[:, 2] - boxes_a[:, 0]) * (boxes_a[:, 3] - boxes_a[:, 1])
    area_b = (boxes_b[:, 2] - boxes_b[:, 0]) * (boxes_b[:, 3] - boxes_b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def confusion_matrix(pairs: list[tuple[np.ndarray, np.ndarray]], nc: int) -> np.ndarray:
    """Rows: true class (last: background, i.e. false detections); columns: predicted (last: missed).

    ``pairs`` holds per image (ground truth rows (class, box), predictions rows (class, conf, box)).
    Each prediction is matched greedily, by confidence, to the unmatched true box it overlaps most
    (IoU >= 0.5) whatever its class, so a wrong class shows off the diagonal.
    """
    matrix = np.zeros((nc + 1, nc + 1), dtype=int)
    for truth, predicted in pairs:
        matched = np.zeros(len(truth), dtype=bool)
        overlaps = iou(predicted[:, 2:6], truth[:, 1:5]) if len(truth) and len(predicted) else None
        for p in np.argsort(-predicted[:, 1]) if len(predicted) else []:
            candidates = np.where(~matched & (overlaps[p] >= IOU_MATCH))[0] if overlaps is not None else []
            if overlaps is not None and len(candidates):
                t = candidates[np.argmax(overlaps[p][candidates])]
                matched[t] = True
                matrix[int(truth[t, 0]), int(predicted[p, 0])] += 1
            else:
                matrix[nc, int(predicted[p, 0])] += 1
        for t in np.where(~matched)[0]:
            matrix[int(truth[t, 0]), nc] += 1
    return matrix


def png_base64(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def plot_confusion(matrix: np.ndarray, labels: list[str]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(1.2 * len(labels) + 2, 1.1 * len(labels) + 1.5))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(labels)), labels=[*labels[:-1], "missed"], rotation=30, ha="right")
    axes.set_yticks(range(len(labels)), labels=[*labels[:-1], "false detection"])
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    for (i, j), value in np.ndenumerate(matrix):
        axes.text(j, i, str(value), ha="center", va="center", color="white" if value > matrix.max() / 2 else "black")
    encoded = png_base64(figure)
    plt.close(figure)
    return encoded


def draw_grid(samples: list[tuple[str, np.ndarray, np.ndarray]], names: list[str], columns: int = 4,
              cell: int = 240) -> str:
    """Test images with true boxes (green) and predictions (red, class and confidence); base64 PNG."""
    from PIL import Image, ImageDraw

    rows = max(1, -(-len(samples) // columns))
    grid = Image.new("RGB", (columns * cell, rows * cell), "white")
    for k, (path, truth, predicted) in enumerate(samples):
        image = Image.open(path).convert("RGB")
        image.thumbnail((cell, cell))
        draw = ImageDraw.Draw(image)
        w, h = image.size
        for row in truth:
            draw.rectangle([row[1] * w, row[2] * h, row[3] * w, row[4] * h], outline=(0, 200, 0), width=2)
        for row in predicted:
            draw.rectangle([row[2] * w, row[3] * h, row[4] * w, row[5] * h], outline=(230, 0, 0), width=2)
            draw.text((row[2] * w + 2, row[3] * h + 1), f"{names[int(row[0])]} {row[1]:.2f}", fill=(230, 0, 0))
        grid.paste(image, ((k % columns) * cell, (k // columns) * cell))
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def html_report(metrics: dict, images: dict[str, str], title: str = "yolo-kfp evaluation") -> str:
    """One self-contained HTML page: Ultralytics' figures, the per-class table, COCO's figures, embedded PNG
    plots, and which detections each figure counts (``metrics``: metrics.json's content)."""
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{values['instances']}</td><td>{_number(values['ap50'])}</td>"
        f"<td>{_number(values['ap50_95'])}</td><td>{_number(values['precision'])}</td>"
        f"<td>{_number(values['recall'])}</td></tr>" for name, values in metrics["per_class"].items())
    figures = "".join(f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                      f"<figcaption>{html.escape(caption)}</figcaption></figure>" for caption, data in images.items())
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:24px;color:#222}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}} td:first-child{{text-align:left}}
#coco td:nth-child(2){{text-align:left}}
figure{{display:inline-block;margin:12px;vertical-align:top}} img{{max-width:640px}}
.kpi{{display:inline-block;margin-right:28px;font-size:1.4em}} p{{max-width:60em}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Test split: {metrics['images']} images.{_counted(metrics)}</p>
<h2>Ultralytics</h2>
<div><span class="kpi">mAP50 <b>{_number(metrics['map50'])}</b></span>
<span class="kpi">mAP50-95 <b>{_number(metrics['map50_95'])}</b></span>
<span class="kpi">precision <b>{_number(metrics['precision'])}</b></span>
<span class="kpi">recall <b>{_number(metrics['recall'])}</b></span></div>
<h3>Per class</h3>
<table id="per-class"><tr><th>class</th><th>boxes</th><th>AP50</th><th>AP50-95</th><th>precision</th>
<th>recall</th></tr>{rows}</table>
{_coco_section(metrics["coco"])}
<h2>Plots</h2>{figures}
</body></html>
"""


def _number(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _counted(metrics: dict) -> str:
    """Which detections the figures count."""
    detections = metrics["detections"]
    return (f" The mAP, precision, recall and COCO's figures count every detection at confidence &ge; "
            f"{detections['confidence']:g}, up to {detections['max_per_image']} an image ({detections['evaluated']} "
            f"in all, the COCO files' predictions); the confusion matrix and the pictures those at confidence "
            f"&ge; {detections['shown_confidence']:g}.")


def _coco_section(coco: dict) -> str:
    rows = "".join(f"<tr><td>{name}</td><td>{html.escape(COCO_FIGURES[name])}</td><td>{_number(coco[name])}</td></tr>"
                   for name in COCO_FIGURES)
    return (f"<h2>COCO (pycocotools)</h2>\n<p>{html.escape(WHY_THEY_DIFFER)} The quality gate uses "
            f"Ultralytics' mAP50.</p>\n<table id=\"coco\"><tr><th>figure</th><th>what it is</th><th>value</th></tr>"
            f"{rows}</table>")
