"""What predict gives besides its printed lines: the detections as COCO results (the list Ultralytics'
``save_json`` and pycocotools read) and each image with its boxes and labels drawn.

Drawing uses Pillow with its built-in font: Ultralytics' plotting fetches Arial.ttf from the network.
"""

import os

from yolo_kfp.cluster.predict import Detection

# Ultralytics' palette, so that a class has the colour users know from its plots
PALETTE = ("FF3838", "FF9D97", "FF701F", "FFB21D", "CFD231", "48F90A", "92CC17", "3DDB86", "1A9334", "00D4BB",
           "2C99A8", "00C2FF", "344593", "6473FF", "0018EC", "8438FF", "520085", "CB38FF", "FF95C8", "FF37C7")


def coco_results(images: list[str], results: list[list[Detection]]) -> list[dict]:
    """One entry per detection: ``file_name`` (the image's path as found), ``image_id`` (its name without the
    extension, a number where it is one, as Ultralytics), ``category_id`` (class index + 1, as Ultralytics and
    pycocotools), ``category_name``, ``bbox`` ([x, y, width, height] in pixels) and ``score``."""
    entries = []
    for path, detections in zip(images, results, strict=True):
        stem = os.path.splitext(os.path.basename(path))[0]
        for detection in detections:
            x0, y0, x1, y1 = detection.box
            entries.append({"file_name": path, "image_id": int(stem) if stem.isdecimal() else stem,
                            "category_id": detection.class_id + 1, "category_name": detection.name,
                            "bbox": [round(v, 2) for v in (x0, y0, x1 - x0, y1 - y0)],
                            "score": round(detection.confidence, 5)})
    return entries


def annotated_paths(images: list[str], folder: str) -> list[str]:
    """Where each image's drawing goes in ``folder``: its own name, numbered where two images share one."""
    taken, paths = set(), []
    for path in images:
        stem, suffix = os.path.splitext(os.path.basename(path))
        name, number = stem + suffix, 1
        while name in taken:
            number += 1
            name = f"{stem}-{number}{suffix}"
        taken.add(name)
        paths.append(os.path.join(folder, name))
    return paths


def refuse_overwriting(images: list[str], folder: str) -> None:
    """Drawings go beside no image given: in a folder that holds one, they would replace it."""
    target = os.path.realpath(folder)
    holding = sorted({os.path.dirname(path) or "." for path in images
                      if os.path.dirname(os.path.realpath(path)) == target})
    if holding:
        raise ValueError(f"--save {folder} is where images given are ({', '.join(holding)}): the drawings would "
                         "replace them; give another folder")


def draw_detections(image_path: str, detections: list[Detection], target: str) -> None:
    """``image_path`` with each box and its label (class, confidence) drawn, written to ``target``."""
    from PIL import Image, ImageDraw, ImageFont, ImageOps

    with Image.open(image_path) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")  # upright, as OpenCV read it for the model
    draw = ImageDraw.Draw(image)
    line = max(round(sum(image.size) / 2 * 0.003), 2)  # Ultralytics' line width
    font = ImageFont.load_default(size=max(line * 6, 11))
    for detection in detections:
        colour = "#" + PALETTE[detection.class_id % len(PALETTE)]
        draw.rectangle(detection.box, outline=colour, width=line)
        label = f"{detection.name} {detection.confidence:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        x, y = detection.box[0], max(detection.box[1] - (bottom - top) - 2 * line, 0)
        draw.rectangle((x, y, x + right - left + 2 * line, y + bottom - top + 2 * line), fill=colour)
        draw.text((x + line - left, y + line - top), label, fill=_text_colour(colour), font=font)
    image.save(target)


def _text_colour(background: str) -> str:
    red, green, blue = (int(background[i:i + 2], 16) for i in (1, 3, 5))
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else "white"
