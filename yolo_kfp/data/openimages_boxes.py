"""The boxes of the selected classes in an Open Images V7 layout (the download step's, or one under extra_data)."""

import os

import pandas as pd

from yolo_kfp.data import openimages as oi
from yolo_kfp.data.boxes import BOX_COLUMNS, clean_boxes, count, images_in, with_images
from yolo_kfp.data.openimages import check_classes


def read_open_images(raw_dir: str, classes: list[str], include_group_of: bool, dropped: dict) -> pd.DataFrame:
    """The boxes of the selected classes in an Open Images V7 layout, with class ids and image paths."""
    missing = oi.missing_files(raw_dir)
    if missing:
        raise FileNotFoundError(f"{raw_dir} is not an Open Images V7 raw dataset: missing {', '.join(missing)}")
    names = pd.read_csv(os.path.join(raw_dir, oi.CLASSES_CSV), header=None, names=["mid", "name"], dtype=str)
    check_classes(list(classes), names["name"].tolist())
    class_of_mid = {mid: classes.index(name) for mid, name in names.itertuples(index=False) if name in classes}
    boxes = pd.read_csv(os.path.join(raw_dir, oi.DETECTIONS_CSV), usecols=["ImageID", "LabelName", "IsGroupOf",
                                                                            *BOX_COLUMNS],
                        dtype={"ImageID": str, "LabelName": str})
    selected = boxes["LabelName"].isin(class_of_mid.keys())
    count(dropped, boxes_of_other_classes=int((~selected).sum()))
    boxes = boxes[selected]
    if not include_group_of:
        group_of = boxes["IsGroupOf"].fillna(0).astype(int) == 1
        count(dropped, group_of_boxes=int(group_of.sum()))
        boxes = boxes[~group_of]
    boxes = clean_boxes(boxes, dropped)
    boxes["class_id"] = boxes["LabelName"].map(class_of_mid).astype(int)
    return with_images(boxes, images_in(os.path.join(raw_dir, oi.DATA_DIR)), dropped)
