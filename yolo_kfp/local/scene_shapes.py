"""The objects of a synthetic street scene, each drawn by a painter of its own: the labelled targets (bicycles,
cars, traffic signs), a decoy class (traffic lights), unlabelled look-alikes that share most of one target's
features, and occluders drawn in front of them. A painter draws around a centre at a size and returns the
boxes of what it drew; ``synthetic`` composes them into a scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import ImageDraw


@dataclass
class Box:
    """What a painter drew, in the image's pixels; the scene keeps the labelled ones for the rows."""

    label: str
    xmin: float  # pixels
    ymin: float
    xmax: float
    ymax: float
    group_of: bool = False
    hidden: float = 0.0  # the share of the object's own pixels that things drawn after it cover


def random_color(rng, low: int = 0, high: int = 256) -> tuple[int, int, int]:
    red, green, blue = (int(c) for c in rng.integers(low, high, 3))
    return red, green, blue


def _bicycle(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: float, rng) -> list[Box]:
    radius = size * rng.uniform(0.19, 0.24)
    ring = max(1, int(size / rng.uniform(12, 22)))
    color = random_color(rng, 0, 90) if rng.random() < 0.6 else random_color(rng)
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
    color = random_color(rng, 20, 255)
    body_h, wheel_r, roof = size * rng.uniform(0.22, 0.32), size * 0.11, size * rng.uniform(0.15, 0.24)
    body = [cx - size / 2, cy - body_h / 2, cx + size / 2, cy + body_h / 2]
    front = 1 if rng.random() < 0.5 else -1  # which way it faces: the cabin sits nearer the back
    cabin = [(cx - front * size * 0.34, body[1]), (cx - front * size * 0.22, body[1] - roof),
             (cx + front * size * 0.12, body[1] - roof), (cx + front * size * 0.26, body[1])]
    draw.polygon(cabin, fill=tuple(c // 2 for c in color))
    draw.polygon([(x + (cx - x) * 0.2, y + (body[1] - y) * 0.25) for x, y in cabin], fill=random_color(rng, 120, 230))
    draw.rectangle(body, fill=color)
    for wx in (cx - size * 0.3, cx + size * 0.3):
        draw.ellipse([wx - wheel_r, body[3] - wheel_r, wx + wheel_r, body[3] + wheel_r], fill=(15, 15, 15))
    return [Box("Car", body[0], body[1] - roof, body[2], body[3] + wheel_r)]


def _plate(draw: ImageDraw.ImageDraw, cx: float, cy: float, half: float, shape: str, fill, outline, width: int):
    if shape == "triangle":
        draw.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=fill, outline=outline,
                     width=width)
    elif shape == "square":
        draw.rectangle([cx - half, cy - half, cx + half, cy + half], fill=fill, outline=outline, width=width)
    else:
        draw.ellipse([cx - half, cy - half, cx + half, cy + half], fill=fill, outline=outline, width=width)


SIGN_LOOKS = (("triangle", (245, 245, 245), (200, 20, 20)), ("circle", (20, 60, 200), (240, 240, 240)),
              ("circle", (245, 245, 245), (200, 20, 20)), ("square", (20, 60, 200), (240, 240, 240)))


def _traffic_sign(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: float, rng) -> list[Box]:
    half = size * 0.3
    draw.line([(cx, cy), (cx, cy + size * 0.5)], fill=(110, 110, 110), width=max(1, int(size / 25)))
    shape, fill, outline = SIGN_LOOKS[rng.integers(len(SIGN_LOOKS))]
    _plate(draw, cx, cy, half, shape, fill, outline, max(1, int(size / 14)))
    return [Box("Traffic sign", cx - half, cy - half, cx + half, cy + half)]


def _traffic_light(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: float, rng) -> list[Box]:
    w, h = size * 0.18, size * 0.5
    draw.rectangle([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], fill=(25, 25, 25))
    for i, color in enumerate(((220, 30, 30), (230, 180, 20), (30, 200, 60))):
        y = cy - h / 2 + h * (i + 0.5) / 3
        draw.ellipse([cx - w * 0.35, y - w * 0.35, cx + w * 0.35, y + w * 0.35], fill=color)
    return [Box("Traffic light", cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)]


# Unlabelled look-alikes: each shares most of one target's features and lacks one a model must learn.
def _trailer(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: float, rng) -> list[Box]:
    """A car without a cabin: a box on wheels."""
    body_h, wheel_r = size * rng.uniform(0.3, 0.5), size * 0.1
    draw.rectangle([cx - size / 2, cy - body_h / 2, cx + size / 2, cy + body_h / 2], fill=random_color(rng, 20, 255))
    for wx in (cx - size * 0.3, cx + size * 0.3):
        draw.ellipse([wx - wheel_r, cy + body_h / 2 - wheel_r, wx + wheel_r, cy + body_h / 2 + wheel_r],
                     fill=(15, 15, 15))
    return [Box("trailer", cx - size / 2, cy - body_h / 2, cx + size / 2, cy + body_h / 2 + wheel_r)]


def _scooter(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: float, rng) -> list[Box]:
    """Two wheels and a frame, as a bicycle has, but small wheels, a deck and an upright stem."""
    radius, ring, color = size * 0.1, max(1, int(size / 16)), random_color(rng, 0, 256)
    y = cy + size * 0.3
    for wx in (cx - size * 0.4, cx + size * 0.4):
        draw.ellipse([wx - radius, y - radius, wx + radius, y + radius], outline=color, width=ring)
    draw.line([(cx - size * 0.4, y - radius), (cx + size * 0.4, y - radius)], fill=color, width=ring * 2)
    draw.line([(cx + size * 0.4, y), (cx + size * 0.3, cy - size * 0.3), (cx + size * 0.15, cy - size * 0.3)],
              fill=color, width=ring)
    return [Box("scooter", cx - size * 0.5, cy - size * 0.3, cx + size * 0.5, y + radius)]


def _board(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: float, rng) -> list[Box]:
    """A sign's shape on a pole in colours no traffic sign has (a shop's board, a poster)."""
    half = size * 0.3
    draw.line([(cx, cy), (cx, cy + size * 0.5)], fill=(110, 110, 110), width=max(1, int(size / 25)))
    fill = ((240, 140, 20), (40, 150, 60), (120, 70, 30), (140, 40, 150), (240, 220, 40))[rng.integers(5)]
    shape = ("triangle", "square", "circle")[rng.integers(3)]
    _plate(draw, cx, cy, half, shape, fill, random_color(rng, 0, 256), max(1, int(size / 14)))
    return [Box("board", cx - half, cy - half, cx + half, cy + half)]


# Unlabelled occluders, drawn last: they stand in front of the objects.
def _pole(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: float, rng) -> list[Box]:
    w = max(2.0, size * rng.uniform(0.06, 0.14))
    draw.rectangle([cx - w / 2, cy - size, cx + w / 2, cy + size], fill=random_color(rng, 60, 200))
    return [Box("pole", cx - w / 2, cy - size, cx + w / 2, cy + size)]


def _person(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: float, rng) -> list[Box]:
    w, head = size * 0.22, size * 0.09
    draw.ellipse([cx - head, cy - size / 2, cx + head, cy - size / 2 + 2 * head], fill=random_color(rng, 90, 230))
    draw.rectangle([cx - w / 2, cy - size / 2 + 2 * head, cx + w / 2, cy + size * 0.1], fill=random_color(rng))
    for dx in (-w / 4, w / 4):
        draw.line([(cx + dx, cy + size * 0.1), (cx + dx * 1.5, cy + size / 2)], fill=random_color(rng, 0, 120),
                  width=max(1, int(w / 3)))
    return [Box("person", cx - w / 2, cy - size / 2, cx + w / 2, cy + size / 2)]


def _bush(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: float, rng) -> list[Box]:
    green = np.array([rng.integers(20, 90), rng.integers(80, 180), rng.integers(20, 80)])
    for _ in range(6):
        x, y = cx + rng.uniform(-0.3, 0.3) * size, cy + rng.uniform(-0.15, 0.15) * size
        r, leaf = size * rng.uniform(0.1, 0.2), tuple(int(c) for c in green + rng.integers(-20, 20, 3))
        draw.ellipse([x - r, y - r * 0.8, x + r, y + r * 0.8], fill=leaf)
    return [Box("bush", cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)]


DRAWERS = {"Bicycle": _bicycle, "Car": _car, "Traffic sign": _traffic_sign, "Traffic light": _traffic_light,
           "trailer": _trailer, "scooter": _scooter, "board": _board, "pole": _pole, "person": _person,
           "bush": _bush}
LOOK_ALIKES = ("trailer", "scooter", "board")
OCCLUDERS = ("pole", "person", "bush")
