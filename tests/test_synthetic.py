"""The demo's synthetic Open Images scenes: deterministic for a seed, labels that agree with what is drawn
(boxes inside the image, occluded objects still boxed whole, look-alikes and occluders never labelled), and
the hard cases a real photo has (small objects, overlaps)."""

import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from yolo_kfp.data import openimages as oi
from yolo_kfp.local import synthetic


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic")
    synthetic.write_split(str(folder), "train", 15, seed=4)
    return folder


def scenes(seed: int, images_per_class: int) -> list[synthetic.Scene]:
    """The scenes ``write_split`` draws for ``seed``, in its order."""
    rng = np.random.default_rng(seed)
    drawn = []
    for primary in synthetic.TARGET_CLASSES:
        for _ in range(images_per_class):
            rng.bytes(8)
            drawn.append(synthetic.draw_scene(rng, primary))
    return drawn


def test_same_seed_same_split_other_seed_other_split(split, tmp_path):
    again, other = tmp_path / "again", tmp_path / "other"
    assert synthetic.write_split(str(again), "train", 15, seed=4) == \
        synthetic.write_split(str(split), "train", 15, seed=4)
    for name in (oi.DETECTIONS_CSV, oi.IMAGE_IDS_CSV):
        assert (again / name).read_bytes() == (split / name).read_bytes()
    for image in os.listdir(split / oi.DATA_DIR):
        assert (again / oi.DATA_DIR / image).read_bytes() == (split / oi.DATA_DIR / image).read_bytes()
    synthetic.write_split(str(other), "train", 15, seed=5)
    assert (other / oi.DETECTIONS_CSV).read_bytes() != (split / oi.DETECTIONS_CSV).read_bytes()


def test_boxes_lie_inside_their_images_and_name_known_classes(split):
    rows = pd.read_csv(split / oi.DETECTIONS_CSV)
    assert set(rows["LabelName"]) <= set(synthetic.ALL_CLASSES.values())
    assert set(synthetic.TARGET_CLASSES.values()) <= set(rows["LabelName"])
    assert ((0 <= rows["XMin"]) & (rows["XMin"] < rows["XMax"]) & (rows["XMax"] <= 1)).all()
    assert ((0 <= rows["YMin"]) & (rows["YMin"] < rows["YMax"]) & (rows["YMax"] <= 1)).all()
    assert set(rows["ImageID"]) <= {name[:-4] for name in os.listdir(split / oi.DATA_DIR)}
    cut = rows[rows["IsTruncated"] == 1]
    assert len(cut) and ((cut[["XMin", "YMin"]] == 0).any(axis=1) | (cut[["XMax", "YMax"]] == 1).any(axis=1)).all()


def test_object_sizes_range_from_small_to_large(split):
    rows = pd.read_csv(split / oi.DETECTIONS_CSV)
    sizes = {image: Image.open(split / oi.DATA_DIR / f"{image}.jpg").size for image in set(rows["ImageID"])}
    targets = rows[rows["LabelName"].isin(synthetic.TARGET_CLASSES.values())]
    areas = [(r.XMax - r.XMin) * sizes[r.ImageID][0] * (r.YMax - r.YMin) * sizes[r.ImageID][1]
             for r in targets.itertuples()]
    assert sum(a < 32 ** 2 for a in areas) >= 0.1 * len(areas), "COCO's small objects: under 32² pixels"
    assert max(areas) > 30 * min(areas)
    assert targets.groupby("ImageID").size().max() >= 3, "some images hold several objects"


def test_look_alikes_and_occluders_are_drawn_but_never_labelled(split):
    rows = pd.read_csv(split / oi.DETECTIONS_CSV)
    drawn = scenes(seed=4, images_per_class=15)
    assert sum(len(scene.boxes) for scene in drawn) == len(rows)
    unlabelled = {box.label for scene in drawn for box in scene.unlabelled}
    assert set(synthetic.LOOK_ALIKES) <= unlabelled and unlabelled <= {*synthetic.LOOK_ALIKES, *synthetic.OCCLUDERS}
    assert not unlabelled & set(synthetic.ALL_CLASSES)


def test_occluded_objects_keep_their_whole_box_and_enough_shows(split):
    drawn = scenes(seed=4, images_per_class=15)
    boxes = [box for scene in drawn for box in scene.boxes]
    assert all(box.hidden <= synthetic.MAX_HIDDEN for box in boxes)
    assert sum(box.hidden > 0 for box in boxes) >= 0.1 * len(boxes), "objects overlap"
    rows = pd.read_csv(split / oi.DETECTIONS_CSV)
    assert rows["IsOccluded"].sum() == sum(box.hidden > 0 for box in boxes)


def test_an_occluder_leaves_the_box_whole_and_one_that_hides_too_much_is_not_drawn():
    rng = np.random.default_rng(0)
    layers = synthetic._Layers(Image.new("RGB", (200, 200), (128, 128, 128)))
    assert layers.add("Car", rng, 100, 100, 120)
    (car,) = layers.boxes()
    whole = (car.xmin, car.ymin, car.xmax, car.ymax)
    assert car.hidden == 0
    assert layers.add("pole", rng, 100, 100, 100)  # a pole in front of the car's middle
    (car,) = layers.boxes()
    assert (car.xmin, car.ymin, car.xmax, car.ymax) == whole and 0 < car.hidden <= synthetic.MAX_HIDDEN
    before = layers.image.copy()
    assert not layers.add("trailer", rng, 100, 100, 190)  # would hide most of the car
    assert layers.boxes()[0].hidden == car.hidden and layers.image.tobytes() == before.tobytes()
    assert [box.label for box in layers.unlabelled] == ["pole"]
