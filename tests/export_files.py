"""Small labelled exports as labelling tools write them, real files: COCO, Pascal VOC, CVAT for images 1.1 and
YOLO, each with a box of a class the run does not train, and what each must give (``EXPECTED``: boxes per run
class once ``CLASS_MAP`` maps their names)."""

import json

import yaml
from PIL import Image

CLASS_MAP = {"bike": "Bicycle", "car": "Car"}
# Boxes per run class each export gives (with CLASS_MAP), and the names it drops.
EXPECTED = {
    "coco": ({"Bicycle": 2, "Car": 2, "Traffic sign": 0}, {"person": 1}),
    "voc": ({"Bicycle": 1, "Car": 0, "Traffic sign": 1}, {"dog": 1}),
    "cvat": ({"Bicycle": 1, "Car": 1, "Traffic sign": 0}, {"tree": 1}),
    "yolo": ({"Bicycle": 0, "Car": 1, "Traffic sign": 1}, {"Person": 2}),
}


def image(path, size) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 150)).save(path)


COCO = {
    "images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
               {"id": 2, "file_name": "b.jpg", "width": 40, "height": 30},
               {"id": 3, "file_name": "c.png", "width": 40, "height": 30}],
    "categories": [{"id": 1, "name": "bike"}, {"id": 2, "name": "Car"}, {"id": 3, "name": "person"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 8], "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [20, 10, 15, 15], "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": 3, "bbox": [0, 0, 5, 5], "iscrowd": 0},
        {"id": 4, "image_id": 2, "category_id": 2, "bbox": [30, 20, 10.5, 10], "iscrowd": 0},  # half a pixel out
        {"id": 5, "image_id": 3, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 1},
    ],
}


def coco(root, document=None):
    """FiftyOne's and CVAT's layout: the JSON file at the top, the images in images/."""
    for entry in COCO["images"]:
        image(root / "images" / entry["file_name"], (40, 30))
    (root / "labels.json").write_text(json.dumps(document or COCO))
    return root


VOC_OBJECT = "<object><name>{}</name><difficult>0</difficult><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax>" \
             "<ymax>{}</ymax></bndbox></object>"
VOC = {
    "v1": [("bike", 1, 1, 20, 20), ("Traffic sign", 30, 5, 45, 30)],
    "v2": [("dog", 5, 5, 10, 10)],
}


def voc_xml(stem: str, objects, size=(50, 40)) -> str:
    return (f"<annotation><folder>VOC</folder><filename>{stem}.jpg</filename><path>/home/me/{stem}.jpg</path>"
            f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
            + "".join(VOC_OBJECT.format(*o) for o in objects) + "</annotation>")


def voc(root, files=None):
    """Annotations/*.xml and JPEGImages/, as CVAT and LabelImg export it."""
    (root / "Annotations").mkdir(parents=True)
    for stem, objects in VOC.items():
        image(root / "JPEGImages" / f"{stem}.jpg", (50, 40))
        (root / "Annotations" / f"{stem}.xml").write_text((files or {}).get(stem, voc_xml(stem, objects)))
    return root


CVAT_IMAGES = """<image id="0" name="c1.png" width="64" height="48">
    <box label="car" occluded="0" source="manual" xtl="10.25" ytl="5.5" xbr="40.75" ybr="30" z_order="0"/>
    <box label="bike" occluded="0" source="manual" xtl="0" ytl="20" xbr="12" ybr="48" z_order="0"/>
    <polygon label="tree" occluded="0" points="50,5;60,5;55,20" z_order="0"/>
  </image>
  <image id="1" name="c2.png" width="64" height="48">
    <box label="tree" occluded="0" xtl="1" ytl="1" xbr="20" ybr="20" z_order="0"/>
  </image>"""


def cvat_xml(images: str = CVAT_IMAGES, before: str = "") -> str:
    labels = "".join(f"<label><name>{n}</name><type>any</type><attributes/></label>" for n in ("car", "bike", "tree"))
    return (f'<?xml version="1.0" encoding="utf-8"?>\n{before}<annotations>\n  <version>1.1</version>\n'
            f"  <meta><task><id>7</id><name>streets</name><labels>{labels}</labels></task></meta>\n"
            f"  {images}\n</annotations>\n")


def cvat(root, text=None):
    """annotations.xml and images/, as CVAT's "CVAT for images 1.1" export writes them."""
    for name in ("c1.png", "c2.png"):
        image(root / "images" / name, (64, 48))
    (root / "annotations.xml").write_text(text or cvat_xml())
    return root


def yolo(root, names=("Traffic sign", "Person", "Car"), lines=None):
    """YOLO layout with its own class order: 0 Traffic sign, 1 Person (not trained), 2 Car."""
    image(root / "images" / "train" / "street1.png", (16, 16))
    image(root / "images" / "train" / "street2.jpg", (16, 16))
    (root / "labels" / "train").mkdir(parents=True)
    (root / "data.yaml").write_text(yaml.safe_dump({"names": list(names)}))
    (root / "labels" / "train" / "street1.txt").write_text(
        lines or "0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n2 0.9 0.9 0.4 0.4\n")  # the Car box pokes out: clamped
    (root / "labels" / "train" / "street2.txt").write_text("1 0.5 0.5 0.2 0.2\n0 0.1 0.2 0.3 0.4 0.5 0.6\n")
    return root


WRITERS = {"coco": coco, "voc": voc, "cvat": cvat, "yolo": yolo}


def all_formats(root):
    """One export of each format, each in a sub-folder of ``root`` named after it."""
    for name, write in WRITERS.items():
        write(root / name)
    return root
