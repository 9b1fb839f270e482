"""A CVAT for images 1.1 export: ``annotations.xml`` (``<annotations>``: the labels in ``<meta>``, then an
``<image id name width height>`` per image holding ``<box label xtl ytl xbr ybr>`` in pixels) and the images
under ``images/`` (in a folder per subset where the export has subsets) or at the export's top.

Boxes are kept; other shapes (polygons, polylines, points, masks, ellipses, cuboids, skeletons) and rotated
boxes are dropped and counted. Read here, not by FiftyOne's CVAT importer: that one rounds coordinates to
whole pixels, reads an image from wherever an absolute ``name`` points, and parses XML with a DTD; here the
file is parsed once, without one (``yolo_kfp.infra.safe_xml``), and every problem is a line naming the image
and the box.
"""

import os
import xml.etree.ElementTree as ET

from yolo_kfp.data.boxes import count
from yolo_kfp.data.export_boxes import Found, Refusals, image_size, inside, pixel_box, relative
from yolo_kfp.infra.safe_xml import RefusedXml, parse_xml_file

LABELS_FILE = "annotations.xml"
CORNERS = ("xtl", "ytl", "xbr", "ybr")


def _image_file(folder: str, name: str, subset: str) -> str | None:
    """The file of the image ``name``; "" when the name leaves the export, None when it is not there."""
    roots = [os.path.join(folder, "images", subset)] if subset else []
    paths = [inside(root, name, folder) for root in (*roots, os.path.join(folder, "images"), folder)]
    if any(path is None for path in paths):
        return ""
    return next((p for p in paths if p and os.path.isfile(p)), None)


def _labels(root: ET.Element) -> set[str]:
    """The label names ``<meta>`` defines (a task's, a project's or a job's); empty where it defines none."""
    return {(label.findtext("name") or "").strip() for label in root.iterfind("meta//labels/label")}


def _boxes(image: ET.Element, size, labels: set[str], where: tuple[str, str], refusals: Refusals,
           dropped: dict) -> list[tuple]:
    """(class name, box) of each ``<box>`` of the image; others counted, problems to ``refusals``."""
    boxes = []
    for i, element in enumerate(image, start=1):
        label = (element.get("label") or "").strip()
        entry = f"{where[1]}: {element.tag} {i}" + (f" ({label})" if label else "")
        if element.tag != "box":
            count(dropped, unsupported_shapes=int(element.tag != "tag"))
        elif not label or (labels and label not in labels):
            refusals.add(where[0], entry, "its label is not one of the labels <meta> defines" if label
                         else "has no label")
        elif element.get("rotation") not in (None, "0", "0.0"):
            count(dropped, rotated_boxes=1)
        else:
            corners = [element.get(c) for c in CORNERS]
            box, problem = pixel_box(corners, size)
            if box is None:
                shown = ", ".join(f"{c}={v}" for c, v in zip(CORNERS, corners, strict=True))
                refusals.add(where[0], entry, f"{shown} {problem}")
            else:
                boxes.append((label, box))
    return boxes


def read_cvat(folder: str, refusals: Refusals) -> Found:
    """The images and boxes of the CVAT export in ``folder``; a problem of any entry goes to ``refusals``."""
    found, ids, names = Found(), set(), set()
    try:
        root = parse_xml_file(os.path.join(folder, LABELS_FILE))
    except RefusedXml as error:
        refusals.add(LABELS_FILE, "", str(error))
        return found
    if root.tag != "annotations":
        refusals.add(LABELS_FILE, "", f"is not a CVAT for images export: its root is <{root.tag}>, not <annotations>")
        return found
    labels = _labels(root)
    for i, image in enumerate(root.iterfind("image"), start=1):
        name, ident = image.get("name") or "", image.get("id")
        entry = f"image {ident}" + (f" ({name})" if name else "") if ident is not None else f"image #{i}"
        size = image_size(image.get("width"), image.get("height"))
        if not name or ident is None or size is None:
            refusals.add(LABELS_FILE, entry, "needs an id, a name, and a width and height above 0")
            continue
        subset = image.get("subset") or ""
        if ident in ids or (subset, name) in names:
            refusals.add(LABELS_FILE, entry, f"its {'id' if ident in ids else 'name'} is used by another image too")
            continue
        ids.add(ident)
        names.add((subset, name))
        boxes = _boxes(image, size, labels, (LABELS_FILE, entry), refusals, found.dropped)
        file = _image_file(folder, name, subset)
        if file == "":
            refusals.add(LABELS_FILE, entry, "its name leaves the export")
        elif file is None and boxes:
            refusals.add(LABELS_FILE, entry, "its file is not in the export (looked in images/ and at the top)")
        elif file:
            key = relative(file, folder)
            found.images[key] = file
            found.boxes += [(key, label, *box) for label, box in boxes]
    return found
