"""A Pascal VOC export: an XML file per image under ``Annotations/`` (``<annotation>`` with ``<filename>``,
``<size>`` and one ``<object>`` per box, its ``<name>`` and ``<bndbox>`` in pixels), the images in
``JPEGImages/``; or the XML files beside their images at the export's top (as Roboflow writes them).

An XML file's image is ``<filename>`` in the image folder, else the image named as the XML file is;
``<path>`` (where the annotator's own copy was) is never read. Read here, not by FiftyOne's VOC importer:
that one truncates coordinates to whole pixels, takes the image from wherever ``<path>`` points when the
image folder lacks it, and parses XML with a DTD; here each file is parsed once, without one
(``yolo_kfp.infra.safe_xml``), and every problem is a line naming the file and the object.
"""

import os
import xml.etree.ElementTree as ET

from yolo_kfp.data.export_boxes import Found, Refusals, image_beside, image_size, inside, pixel_box, relative
from yolo_kfp.infra.safe_xml import RefusedXml, parse_xml_file

CORNERS = ("xmin", "ymin", "xmax", "ymax")


def voc_files(folder: str) -> list[str]:
    """The XML files of a VOC export in ``folder``: under ``Annotations/``, else at its top."""
    annotations = os.path.join(folder, "Annotations")
    if os.path.isdir(annotations):
        return sorted(os.path.join(root, n) for root, _, names in os.walk(annotations) for n in names
                      if n.lower().endswith(".xml"))
    return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                  if n.lower().endswith(".xml") and n != "annotations.xml")


def _image(folder: str, xml_path: str, filename: str) -> tuple[str | None, str]:
    """The image of the XML file ``xml_path``, or None and what is wrong."""
    folders = list(dict.fromkeys([os.path.join(folder, "JPEGImages"), os.path.dirname(xml_path)]))
    for images in folders:
        if filename:
            path = inside(images, filename, folder)
            if path is None:
                return None, f"<filename> {filename!r} leaves the export"
            if os.path.isfile(path):
                return path, ""
    stem = os.path.splitext(os.path.basename(xml_path))[0]
    found = next((p for p in (image_beside(f, stem) for f in folders) if p), None)
    return (found, "") if found else (None, f"its image {filename or stem!r} is not in JPEGImages/ or beside it")


def _objects(root: ET.Element, size: tuple[float, float], name: str, refusals: Refusals) -> list[tuple]:
    """(class name, box) of each ``<object>``; each one with a problem goes to ``refusals``."""
    boxes = []
    for i, element in enumerate(root.findall("object"), start=1):
        label = (element.findtext("name") or "").strip()
        entry = f"object {i}" + (f" ({label})" if label else "")
        corners = [element.findtext(f"bndbox/{c}") for c in CORNERS]
        if not label:
            refusals.add(name, entry, "has no <name>")
            continue
        box, problem = pixel_box(corners, size)
        if box is None:
            shown = ", ".join(f"{c}={v}" for c, v in zip(CORNERS, corners, strict=True))
            refusals.add(name, entry, f"<bndbox> {shown} {problem}")
        else:
            boxes.append((label, box))
    return boxes


def read_voc(folder: str, refusals: Refusals) -> Found:
    """The images and boxes of the VOC export in ``folder``; a problem of any file goes to ``refusals``."""
    found, owner = Found(), {}
    for path in voc_files(folder):
        name = relative(path, folder)
        try:
            root = parse_xml_file(path)
        except RefusedXml as error:
            refusals.add(name, "", str(error))
            continue
        if root.tag != "annotation":
            refusals.add(name, "", f"is not a VOC annotation: its root element is <{root.tag}>, not <annotation>")
            continue
        size = image_size(root.findtext("size/width"), root.findtext("size/height"))
        image, problem = _image(folder, path, (root.findtext("filename") or "").strip())
        if size is None or image is None:
            refusals.add(name, "", problem or "<size> needs a <width> and <height> above 0")
            continue
        key = relative(image, folder)
        if key in owner:
            refusals.add(name, "", f"its image {key} is also that of {owner[key]}: duplicate file name")
            continue
        owner[key], found.images[key] = name, image
        found.boxes += [(key, label, *box) for label, box in _objects(root, size, name, refusals)]
    return found
