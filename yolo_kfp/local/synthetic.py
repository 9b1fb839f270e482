"""A small synthetic stand-in for an Open Images V7 split, laid out exactly as FiftyOne keeps one.

Open Images cannot be reached from the machines this project is built and tested on, so the demo and
the tests draw their own: street-scene-like images of bicycles, cars and traffic signs (plus decoys:
bicycle wheels, traffic lights), made as hard as photos are to tell settings apart: cluttered, textured
backgrounds, objects from small to large that overlap and stand behind occluders, unlabelled look-alikes,
uneven light, blur, noise and JPEG loss. ``labels/detections.csv``, ``metadata/classes.csv``,
``metadata/hierarchy.json`` and ``metadata/image_ids.csv`` come in Open Images' real column formats,
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

from yolo_kfp.data import openimages as oi
from yolo_kfp.local.scene_shapes import DRAWERS, LOOK_ALIKES, OCCLUDERS, Box, random_color

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
class Scene:
    image: Image.Image
    boxes: list[Box]  # labelled objects; a box is the whole object's extent, however much of it is hidden
    unlabelled: list[Box]  # look-alikes and occluders (label: what was drawn), which no row names
    jpeg_quality: int


MAX_HIDDEN = 0.45  # of a labelled object's pixels: more and the label names something hardly there
MIN_INSIDE = 0.6  # of a labelled box's area inside the image: the rest is cut off at the edge (IsTruncated)
SMALLEST, LARGEST = 0.1, 0.75  # object sizes, as shares of the image's shorter side (drawn log-uniformly)


def _background(rng, width: int, height: int) -> Image.Image:
    """Sky over ground, blotchy texture and grain, then clutter: blocks with windows, blobs, wires and arcs."""
    horizon = rng.uniform(0.2, 0.7) * height
    rows = np.arange(height)[:, None, None]
    base = np.where(rows < horizon, rng.integers(60, 230, 3), rng.integers(30, 190, 3)) + \
        np.linspace(-25, 25, height)[:, None, None]
    blotches = np.stack([np.asarray(Image.fromarray(rng.normal(0, rng.uniform(8, 30), (int(rng.integers(3, 12)),
                                                                                  int(rng.integers(3, 12))))
                                                    .astype(np.float32), "F")
                                    .resize((width, height), Image.Resampling.BILINEAR))
                         for _ in range(3)], axis=-1)
    pixels = base + blotches + rng.normal(0, rng.uniform(3, 12), (height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 20))):
        _clutter(draw, rng, width, height)
    return image


def _clutter(draw: ImageDraw.ImageDraw, rng, width: int, height: int) -> None:
    x, y = rng.uniform(0, width), rng.uniform(0, height)
    w, h = rng.uniform(0.05, 0.5) * width, rng.uniform(0.05, 0.5) * height
    kind = rng.integers(4)
    if kind == 0:  # a building block with a grid of windows
        draw.rectangle([x, y, x + w, y + h], fill=random_color(rng, 40, 220))
        window, step = random_color(rng, 0, 256), max(4.0, w / rng.integers(2, 7))
        for wx in np.arange(x + step / 4, x + w - step / 2, step):
            for wy in np.arange(y + step / 4, y + h - step / 2, step):
                draw.rectangle([wx, wy, wx + step / 2, wy + step / 2], fill=window)
    elif kind == 1:  # a blob: a tree's crown, a puddle, a shadow
        draw.ellipse([x, y, x + w, y + h / 2], fill=random_color(rng, 20, 200))
    elif kind == 2:  # wires and road markings
        draw.line([(x, y), (x + rng.uniform(-1, 1) * width, y + rng.uniform(-0.3, 0.3) * height)],
                  fill=random_color(rng), width=int(rng.integers(1, 4)))
    else:  # arcs and rings, as wheels and round signs have
        r = rng.uniform(4, 0.15 * min(width, height))
        draw.arc([x - r, y - r, x + r, y + r], rng.uniform(0, 360), rng.uniform(0, 360) + rng.uniform(90, 360),
                 fill=random_color(rng), width=int(rng.integers(1, 4)))


class _Layers:
    """Composes a scene item by item, each on a layer of its own, keeping what each labelled object still shows."""

    def __init__(self, background: Image.Image):
        self.image = background.convert("RGBA")
        self.labelled: list[tuple[Box, np.ndarray, np.ndarray]] = []  # box, its own pixels, those now covered
        self.unlabelled: list[Box] = []

    def add(self, kind: str, rng, cx: float, cy: float, size: float) -> bool:
        """Draws ``kind`` unless it would hide too much of an object drawn before it, or be cut off too much."""
        layer = Image.new("RGBA", self.image.size, (0, 0, 0, 0))
        boxes = DRAWERS[kind](ImageDraw.Draw(layer), cx, cy, size, rng)
        pixels = np.asarray(layer)[..., 3] > 0
        labelled = kind not in LOOK_ALIKES + OCCLUDERS
        own = [(box, pixels & self._inside(box)) for box in boxes] if labelled else []
        if not self._keeps_visible(pixels) or not all(self._mostly_inside(b) and m.any() for b, m in own):
            return False
        for _, mask, covered in self.labelled:
            covered |= mask & pixels
        if labelled:
            self.labelled += [(self._clipped(box), mask, np.zeros_like(mask)) for box, mask in own]
        else:
            self.unlabelled += [self._clipped(box) for box in boxes]
        self.image.alpha_composite(layer)
        return True

    def _keeps_visible(self, pixels: np.ndarray) -> bool:
        return all(((covered | (mask & pixels)).sum() / mask.sum()) <= MAX_HIDDEN
                   for _, mask, covered in self.labelled)

    def _inside(self, box: Box) -> np.ndarray:
        height, width = self.image.size[1], self.image.size[0]
        rows, cols = np.arange(height)[:, None], np.arange(width)[None, :]
        return (cols >= int(box.xmin)) & (cols <= box.xmax) & (rows >= int(box.ymin)) & (rows <= box.ymax)

    def _mostly_inside(self, box: Box) -> bool:
        clipped = self._clipped(box)
        area = (box.xmax - box.xmin) * (box.ymax - box.ymin)
        return (clipped.xmax - clipped.xmin) * (clipped.ymax - clipped.ymin) >= MIN_INSIDE * area

    def _clipped(self, box: Box) -> Box:
        width, height = self.image.size
        return Box(box.label, max(0.0, box.xmin), max(0.0, box.ymin), min(float(width), box.xmax),
                   min(float(height), box.ymax))

    def boxes(self) -> list[Box]:
        for box, mask, covered in self.labelled:
            box.hidden = float(covered.sum() / mask.sum())
        return [box for box, _, _ in self.labelled]


def _place(layers: _Layers, kind: str, rng, tries: int = 15) -> None:
    """Draws one ``kind`` of a size drawn log-uniformly, somewhere it fits (skipped after ``tries``)."""
    width, height = layers.image.size
    short = min(width, height)
    for _ in range(tries):
        size = short * float(np.exp(rng.uniform(np.log(SMALLEST), np.log(LARGEST))))
        if kind in OCCLUDERS:
            size = max(size, short * 0.25)
        if layers.add(kind, rng, rng.uniform(0, width), rng.uniform(0, height), size):
            return


def _light_and_lens(image: Image.Image, rng) -> Image.Image:
    """Exposure, colour cast, a shadow across the scene, sometimes blur, then sensor noise."""
    from PIL import ImageFilter

    height, width = image.size[1], image.size[0]
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * np.linspace(-0.5, 0.5, width)[None, :] + \
        np.sin(angle) * np.linspace(-0.5, 0.5, height)[:, None]
    shadow = 1 + rng.uniform(-0.6, 0.6) * ramp
    gain = rng.uniform(0.55, 1.35) * rng.uniform(0.85, 1.15, 3)[None, None, :] * shadow[..., None]
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.6)))
    pixels = np.asarray(image, dtype=np.float32) * gain + rng.normal(0, rng.uniform(1, 10), (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def draw_scene(rng, primary: str) -> Scene:
    """One street-like image: a ``primary`` object, often more targets of any class, a traffic light (a decoy
    class), unlabelled look-alikes and occluders, on clutter; objects overlap, some are small; lit and blurred."""
    width, height = IMAGE_SIZES[rng.integers(len(IMAGE_SIZES))]
    layers = _Layers(_background(rng, width, height))
    targets = list(TARGET_CLASSES)
    kinds = [primary, *(targets[i] for i in rng.integers(len(targets), size=int(rng.integers(0, 4))))]
    kinds += ["Traffic light"] * int(rng.random() < 0.35)
    kinds += [LOOK_ALIKES[i] for i in rng.integers(len(LOOK_ALIKES), size=int(rng.integers(0, 3)))]
    for i in rng.permutation(len(kinds)):
        _place(layers, kinds[i], rng)
    for i in rng.integers(len(OCCLUDERS), size=int(rng.integers(0, 3))):
        _place(layers, OCCLUDERS[i], rng)
    image = _light_and_lens(layers.image.convert("RGB"), rng)
    return Scene(image, layers.boxes(), layers.unlabelled, int(rng.integers(35, 92)))


def _detection_rows(image_id: str, boxes: list[Box], width: int, height: int) -> list[list]:
    rows = []
    for box in boxes:
        x0, x1 = max(0.0, box.xmin / width), min(1.0, box.xmax / width)
        y0, y1 = max(0.0, box.ymin / height), min(1.0, box.ymax / height)
        truncated = int(x0 == 0.0 or y0 == 0.0 or x1 == 1.0 or y1 == 1.0)
        clicks = [-1] * 8
        rows.append([image_id, "xclick", ALL_CLASSES[box.label], 1, f"{x0:.6f}", f"{x1:.6f}", f"{y0:.6f}",
                     f"{y1:.6f}", int(box.hidden > 0), truncated, int(box.group_of), 0, 0, *clicks])
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
            scene = draw_scene(rng, primary)
            path = os.path.join(data_dir, f"{image_id}.jpg")
            scene.image.save(path, quality=scene.jpeg_quality)
            payload = open(path, "rb").read()
            md5 = base64.b64encode(hashlib.md5(payload).digest()).decode()
            image_rows.append([image_id, split, "", "", "", "", "yolo-kfp synthetic", "", len(payload), md5, "", 0.0])
            detection_rows += _detection_rows(image_id, scene.boxes, *scene.image.size)
    write_metadata(split_dir, split, image_rows, detection_rows)
    return [row[0] for row in image_rows]
