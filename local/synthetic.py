"""A small synthetic stand-in for an Open Images V7 split, laid out exactly as FiftyOne keeps one.

Open Images cannot be reached from the machines this project is built and tested on, so the demo and
the tests draw their own: street-scene-like images of bicycles, cars and traffic signs (plus decoys:
bicycle wheels, traffic lights), with ``labels/detections.csv``, ``metadata/classes.csv``,
``metadata/hierarchy.json`` and ``metadata/image_ids.csv`` in Open Images' real column formats and
with the real class MIDs. The data is synthetic; only its layout is real.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from yolo_kfp.components.core import openimages as oi

TARGET_CLASSES = {"Bicycle": "/m/0199g", "Car": "/m/0k4j", "Traffic sign": "/m/01mqdt"}
# Real Open Images classes whose names contain a target's name: converters must not match them.
DECOY_CLASSES = {
    "Bicycle wheel": "/m/01bqk0",
    "Bicycle helmet": "/m/03p3bw",
    "Traffic light": "/m/015qff",
    "Stop sign": "/m/02pv19",
    "Person": "/m/01g317",
}
ALL_CLASSES = {**TARGET_CLASSES, **DECOY_CLASSES}
IMAGE_SIZES = ((320, 240), (240, 320), (288, 288))


def check_demo_classes(requested: list[str]) -> None:
    """The demo mirror has a few of Open Images' classes: another name may well be a real class (Bus), which
    only a real run can fetch and check."""
    unknown = oi.unknown_classes(requested, list(ALL_CLASSES))
    if unknown:
        raise ValueError(f"the demo mirror has only its {len(ALL_CLASSES)} classes ({', '.join(ALL_CLASSES)}), not "
                         f"{unknown}: choose among them, or run without --demo, where any Open Images class can be "
                         "asked for (and names are checked against Open Images' own list)")


@dataclass
class Box:
    label: str
    xmin: float  # pixels
    ymin: float
    xmax: float
    ymax: float
    group_of: bool = False


def _bicycle(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: float, rng) -> list[Box]:
    radius = size * 0.22
    ring = max(2, int(size / 18))
    color = tuple(int(c) for c in rng.integers(0, 90, 3))
    wheels = [(cx - size / 2 + radius, cy + size * 0.12), (cx + size / 2 - radius, cy + size * 0.12)]
    boxes = []
    for wx, wy in wheels:
        draw.ellipse([wx - radius, wy - radius, wx + radius, wy + radius], outline=color, width=ring)
        boxes.append(Box("Bicycle wheel", wx - radius, wy - radius, wx + radius, wy + radius))
    seat, bar = (cx - size * 0.08, cy - size * 0.22), (cx + size * 0.2, cy - size * 0.28)
    draw.line([wheels[0], seat, (cx + size * 0.05, wheels[0][1]), wheels[0]], fill=color, width=ring)
    draw.line([seat, (cx + size * 0.15, cy - size * 0.18), wheels[1]], fill=color, width=ring)
    draw.line([(cx + size * 0.15, cy - size * 0.18), bar], fill=color, width=ring)
    top = min(bar[1], seat[1]) - ring
    bottom = wheels[0][1] + radius
    return [Box("Bicycle", cx - size / 2, top, cx + size / 2, bottom), *boxes]


def _car(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: float, rng) -> list[Box]:
    color = tuple(int(c) for c in rng.integers(40, 255, 3))
    body_h, wheel_r = size * 0.28, size * 0.11
    body = [cx - size / 2, cy - body_h / 2, cx + size / 2, cy + body_h / 2]
    cabin = [(cx - size * 0.3, body[1]), (cx - size * 0.18, body[1] - size * 0.2),
             (cx + size * 0.2, body[1] - size * 0.2), (cx + size * 0.32, body[1])]
    draw.polygon(cabin, fill=tuple(c // 2 for c in color))
    draw.rectangle(body, fill=color)
    for wx in (cx - size * 0.3, cx + size * 0.3):
        draw.ellipse([wx - wheel_r, body[3] - wheel_r, wx + wheel_r, body[3] + wheel_r], fill=(15, 15, 15))
    return [Box("Car", body[0], body[1] - size * 0.2, body[2], body[3] + wheel_r)]


def _traffic_sign(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: float, rng) -> list[Box]:
    half = size * 0.3
    draw.line([(cx, cy), (cx, cy + size * 0.5)], fill=(110, 110, 110), width=max(2, int(size / 25)))
    if rng.random() < 0.5:
        points = [(cx, cy - half), (cx - half, cy + half * 0.7), (cx + half, cy + half * 0.7)]
        draw.polygon(points, fill=(245, 245, 245), outline=(200, 20, 20), width=max(2, int(size / 14)))
    else:
        draw.ellipse([cx - half, cy - half, cx + half, cy + half], fill=(20, 60, 200), outline=(240, 240, 240),
                     width=max(2, int(size / 20)))
    return [Box("Traffic sign", cx - half, cy - half, cx + half, cy + half)]


def _traffic_light(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: float, rng) -> list[Box]:
    w, h = size * 0.18, size * 0.5
    draw.rectangle([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], fill=(25, 25, 25))
    for i, color in enumerate(((220, 30, 30), (230, 180, 20), (30, 200, 60))):
        y = cy - h / 2 + h * (i + 0.5) / 3
        draw.ellipse([cx - w * 0.35, y - w * 0.35, cx + w * 0.35, y + w * 0.35], fill=color)
    return [Box("Traffic light", cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)]


DRAWERS = {"Bicycle": _bicycle, "Car": _car, "Traffic sign": _traffic_sign, "Traffic light": _traffic_light}


def _background(rng, width: int, height: int) -> Image.Image:
    base = rng.integers(60, 200, 3)
    gradient = np.linspace(-30, 30, height)[:, None, None]
    noise = rng.normal(0, 12, (height, width, 3))
    pixels = np.clip(base[None, None, :] + gradient + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def _overlaps(box: Box, placed: list[Box]) -> bool:
    return any(box.xmin < p.xmax and p.xmin < box.xmax and box.ymin < p.ymax and p.ymin < box.ymax for p in placed)


def _place(kind: str, draw, rng, width: int, height: int, placed: list[Box], scale: float) -> list[Box]:
    """Draws one object where it does not overlap the others (skipped after 20 tries)."""
    for _ in range(20):
        size = min(width, height) * rng.uniform(0.7, 1.0) * scale
        cx, cy = rng.uniform(size * 0.55, width - size * 0.55), rng.uniform(size * 0.45, height - size * 0.6)
        probe = Box(kind, cx - size * 0.55, cy - size * 0.45, cx + size * 0.55, cy + size * 0.6)
        if not _overlaps(probe, placed):
            boxes = DRAWERS[kind](draw, cx, cy, size, rng)
            placed.append(probe)
            return boxes
    return []


def draw_scene(rng, primary: str) -> tuple[Image.Image, list[Box]]:
    """One image with a ``primary`` object, sometimes a second target class and a decoy."""
    width, height = IMAGE_SIZES[rng.integers(len(IMAGE_SIZES))]
    image = _background(rng, width, height)
    draw = ImageDraw.Draw(image)
    placed: list[Box] = []
    boxes = _place(primary, draw, rng, width, height, placed, scale=rng.uniform(0.45, 0.75))
    if rng.random() < 0.35:
        other = [c for c in TARGET_CLASSES if c != primary][rng.integers(len(TARGET_CLASSES) - 1)]
        boxes += _place(other, draw, rng, width, height, placed, scale=rng.uniform(0.35, 0.55))
    if rng.random() < 0.25:
        boxes += _place("Traffic light", draw, rng, width, height, placed, scale=rng.uniform(0.3, 0.5))
    return image, boxes


def _detection_rows(image_id: str, boxes: list[Box], width: int, height: int) -> list[list]:
    rows = []
    for box in boxes:
        x0, x1 = max(0.0, box.xmin / width), min(1.0, box.xmax / width)
        y0, y1 = max(0.0, box.ymin / height), min(1.0, box.ymax / height)
        truncated = int(x0 == 0.0 or y0 == 0.0 or x1 == 1.0 or y1 == 1.0)
        clicks = [-1] * 8
        rows.append([image_id, "xclick", ALL_CLASSES[box.label], 1, f"{x0:.6f}", f"{x1:.6f}", f"{y0:.6f}",
                     f"{y1:.6f}", 0, truncated, int(box.group_of), 0, 0, *clicks])
    return rows


def _hierarchy() -> dict:
    return {
        "LabelName": "Entity",
        "Subcategory": [
            {"LabelName": "Bicycle", "Part": [{"LabelName": "Bicycle wheel"}]},
            {"LabelName": "Car"},
            {"LabelName": "Traffic sign", "Subcategory": [{"LabelName": "Stop sign"}]},
            {"LabelName": "Traffic light"},
            {"LabelName": "Person"},
            {"LabelName": "Bicycle helmet"},
        ],
    }


def write_csv(path: str, rows: list[list], header: tuple | None = None) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(header)
        writer.writerows(rows)


def write_metadata(split_dir: str, split: str, image_rows: list[list], detection_rows: list[list]) -> None:
    """Writes the CSV/JSON files of the layout; rows sorted by ImageID as Open Images ships them."""
    write_csv(os.path.join(split_dir, oi.DETECTIONS_CSV), sorted(detection_rows, key=lambda r: r[0]),
              oi.DETECTION_COLUMNS)
    write_csv(os.path.join(split_dir, oi.IMAGE_IDS_CSV), sorted(image_rows), oi.IMAGE_ID_COLUMNS)
    write_csv(os.path.join(split_dir, oi.CLASSES_CSV), [[mid, name] for name, mid in ALL_CLASSES.items()])
    with open(os.path.join(split_dir, oi.HIERARCHY_JSON), "w") as f:
        json.dump(_hierarchy(), f)


def write_split(split_dir: str, split: str, images_per_class: int, seed: int) -> list[str]:
    """Draws ``images_per_class`` images led by each target class into an Open Images V7 split dir.

    Returns the image ids. ``data/`` holds the JPEGs; the mirror moves them into S3.
    """
    rng = np.random.default_rng(seed)
    data_dir = os.path.join(split_dir, oi.DATA_DIR)
    os.makedirs(data_dir, exist_ok=True)
    image_rows, detection_rows = [], []
    for primary in TARGET_CLASSES:
        for _ in range(images_per_class):
            image_id = rng.bytes(8).hex()
            image, boxes = draw_scene(rng, primary)
            path = os.path.join(data_dir, f"{image_id}.jpg")
            image.save(path, quality=90)
            payload = open(path, "rb").read()
            md5 = base64.b64encode(hashlib.md5(payload).digest()).decode()
            image_rows.append([image_id, split, "", "", "", "", "yolo-kfp synthetic", "", len(payload), md5, "", 0.0])
            detection_rows += _detection_rows(image_id, boxes, *image.size)
    write_metadata(split_dir, split, image_rows, detection_rows)
    return [row[0] for row in image_rows]
