"""Open Images -> YOLO conversion, measured side by side on one generated raw dataset:

- ours:      the convert step's core (yolo_kfp/data/convert.py): read the CSVs, clean, split, write labels,
             hard-link images, dataset.yaml and statistics;
- FiftyOne:  the route a FiftyOne user takes: import the OpenImagesV7Dataset directory, split it
             (``random_split``, same ratios and seed), export each split as YOLOv5Dataset (images
             symlinked, FiftyOne's cheapest media option).

The raw dataset has the layout the download step writes: ``--images`` ids (20,000) hard-linked to a
few small synthetic JPEGs, ``--boxes-per-image`` (3) boxes each, from the three classes and a decoy.
The last line is ``RESULT convert <FiftyOne seconds / our seconds>``.

    python bench/convert.py [--images 20000] [--boxes-per-image 3]
"""

import argparse
import os
import random
import tempfile
import time
import uuid

from yolo_kfp.data import openimages as oi
from yolo_kfp.data.convert import convert_to_yolo
from yolo_kfp.local import synthetic
from yolo_kfp.params.run_parameters import BY_NAME

CLASSES = list(synthetic.TARGET_CLASSES)
LABELS = [*synthetic.TARGET_CLASSES.values(), synthetic.DECOY_CLASSES["Traffic light"]]
SEED = 42


def make_raw(raw_dir: str, images: int, boxes_per_image: int) -> int:
    """``images`` hard links to a few drawn JPEGs, each with random boxes; returns the box count."""
    templates = synthetic.write_split(os.path.join(raw_dir, "templates"), "validation", 4, SEED)
    template_dir = os.path.join(raw_dir, "templates", oi.DATA_DIR)
    os.makedirs(os.path.join(raw_dir, oi.DATA_DIR))
    rng = random.Random(SEED)
    image_rows, detection_rows = [], []
    for i in range(images):
        image_id = f"{i:016x}"
        os.link(os.path.join(template_dir, f"{templates[i % len(templates)]}.jpg"),
                os.path.join(raw_dir, oi.DATA_DIR, f"{image_id}.jpg"))
        image_rows.append([image_id, "validation", "", "", "", "", "bench", "", 0, "", "", 0.0])
        for _ in range(boxes_per_image):
            x0, y0 = rng.uniform(0, 0.7), rng.uniform(0, 0.7)
            x1, y1 = x0 + rng.uniform(0.05, 0.3), y0 + rng.uniform(0.05, 0.3)
            detection_rows.append([image_id, "xclick", rng.choice(LABELS), 1, f"{x0:.6f}", f"{x1:.6f}",
                                   f"{y0:.6f}", f"{y1:.6f}", 0, 0, 0, 0, 0, *[-1] * 8])
    synthetic.write_metadata(raw_dir, "validation", image_rows, detection_rows)
    return len(detection_rows)


def ours(raw_dir: str, out_dir: str) -> dict:
    return convert_to_yolo(raw_dir=raw_dir, output_dir=out_dir, classes=CLASSES, seed=SEED)


def fiftyone_route(raw_dir: str, out_dir: str) -> tuple[float, float, int]:
    """Import and export with FiftyOne; returns (import s, split + export s, labels written)."""
    import fiftyone as fo
    import fiftyone.utils.random as four

    fo.config.show_progress_bars = False
    started = time.perf_counter()
    dataset = fo.Dataset.from_dir(dataset_dir=raw_dir, dataset_type=fo.types.OpenImagesV7Dataset,
                                  label_types=["detections"], classes=CLASSES, only_matching=True,
                                  load_hierarchy=False, name=f"bench-{uuid.uuid4().hex}")
    imported = time.perf_counter()
    ratios = dict(zip(("train", "val", "test"), BY_NAME["split_ratios"].default, strict=True))
    four.random_split(dataset, ratios, seed=SEED)
    for split in ("train", "val", "test"):
        dataset.match_tags(split).export(export_dir=out_dir, dataset_type=fo.types.YOLOv5Dataset,
                                         label_field="ground_truth", classes=CLASSES, split=split,
                                         export_media="symlink")
    exported = time.perf_counter()
    dataset.delete()
    labels = sum(len(os.listdir(os.path.join(out_dir, "labels", s))) for s in ("train", "val", "test"))
    return imported - started, exported - imported, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--boxes-per-image", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    with tempfile.TemporaryDirectory(prefix="bench-convert-") as work:
        raw = os.path.join(work, "raw")
        boxes = make_raw(raw, args.images, args.boxes_per_image)
        print(f"raw dataset: {args.images} images, {boxes} boxes ({', '.join(CLASSES)} and a decoy)")
        started = time.perf_counter()
        stats = ours(raw, os.path.join(work, "ours"))
        our_seconds = time.perf_counter() - started
        import_s, export_s, fo_labels = fiftyone_route(raw, os.path.join(work, "fiftyone"))
        fo_seconds = import_s + export_s
        print(f"{'route':<34}{'seconds':>9}{'images/s':>10}{'labels':>8}")
        print(f"{'ours (convert_to_yolo)':<34}{our_seconds:9.2f}{args.images / our_seconds:10.0f}"
              f"{stats['images']:8d}")
        print(f"{'FiftyOne import + split + export':<34}{fo_seconds:9.2f}{args.images / fo_seconds:10.0f}"
              f"{fo_labels:8d}")
        print(f"FiftyOne: import {import_s:.2f} s, split + export {export_s:.2f} s")
        print(f"RESULT convert {fo_seconds / our_seconds:.1f}")


if __name__ == "__main__":
    main()
