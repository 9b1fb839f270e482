"""The demo's base checkpoint: YOLOv5n trained from scratch on *other* classes of other synthetic scenes
(cars, traffic lights, bicycle wheels), so that fine-tuning it with the backbone frozen is real transfer
learning: two of the three target classes are new to the head.

It is the project's own model, made once by ``python -m yolo_kfp.local.demo_base`` (100 epochs, 21 minutes on
2 CPU cores; validation mAP50 0.88 on its own classes) and kept beside this module with its SHA-256
(``SHIPPED_SHA256``), so that a fresh demo does not spend minutes on it. Where the file is missing (an
installed wheel carries no weights) or differs from that hash, the demo trains a shorter one itself and says so.
"""

import argparse
import logging
import os
import shutil
import tempfile

from yolo_kfp.data.convert import convert_to_yolo
from yolo_kfp.infra.storage import sha256_of
from yolo_kfp.local import synthetic
from yolo_kfp.model.train import train_yolo

log = logging.getLogger(__name__)

BASE_CLASSES = ["Car", "Traffic light", "Bicycle wheel"]
BASE_SEED = 7
SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo-base.pt")
# What `python -m yolo_kfp.local.demo_base` printed for the shipped file.
SHIPPED_SHA256 = "0beff8d1f4bf40840d730462a5840c77045b82328280b2dbb0c1f4b083829f30"
SHIPPED_EPOCHS = 100  # long enough that its frozen backbone helps the demo's classes (bench/search.py)
SHIPPED_IMAGES_PER_CLASS = 150
FALLBACK_EPOCHS = 20  # a fresh demo without the shipped file: a weaker base, minutes rather than twenty


def train_base_checkpoint(path: str, epochs: int, images_per_class: int) -> str:
    """YOLOv5n trained from scratch for ``epochs`` on synthetic scenes labelled with ``BASE_CLASSES``, at ``path``."""
    with tempfile.TemporaryDirectory(prefix="demo-base-") as tmp:
        raw, data, run = (os.path.join(tmp, name) for name in ("raw", "data", "run"))
        synthetic.write_split(raw, "train", images_per_class, BASE_SEED)
        convert_to_yolo(raw_dir=raw, output_dir=data, classes=BASE_CLASSES, seed=BASE_SEED)
        log.info("demo: training a base checkpoint from scratch on %s, %d epochs", BASE_CLASSES, epochs)
        train_yolo(data_dir=data, output_dir=run, base_model="yolov5n.yaml", epochs=epochs, batch=16, imgsz=160,
                   freeze=0, workers=0, train_args={"nbs": 16, "plots": False})
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        shutil.copyfile(os.path.join(run, "weights", "best.pt"), path)
    return path


def base_checkpoint(workdir: str) -> str:
    """The demo's base checkpoint in ``workdir``: kept from an earlier demo, else the shipped one (its hash
    checked), else one trained here for ``FALLBACK_EPOCHS``."""
    path = os.path.join(workdir, "base-checkpoint.pt")
    if os.path.exists(path):
        return path
    os.makedirs(workdir, exist_ok=True)
    if os.path.exists(SHIPPED) and SHIPPED_SHA256 and sha256_of(SHIPPED) == SHIPPED_SHA256:
        shutil.copyfile(SHIPPED, path)
        return path
    log.warning("demo: the shipped base checkpoint %s is %s: training a weaker one here (%d epochs)", SHIPPED,
                "not the one made for this release" if os.path.exists(SHIPPED) else "missing", FALLBACK_EPOCHS)
    return train_base_checkpoint(path, FALLBACK_EPOCHS, 100)


def main() -> None:
    parser = argparse.ArgumentParser(description="Makes the demo's shipped base checkpoint and prints its SHA-256.")
    parser.add_argument("--output", default=SHIPPED, help=f"where to write it (default: {SHIPPED})")
    parser.add_argument("--epochs", type=int, default=SHIPPED_EPOCHS, help="training epochs (default: %(default)s)")
    parser.add_argument("--images-per-class", type=int, default=SHIPPED_IMAGES_PER_CLASS,
                        help="synthetic training images per class (default: %(default)s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    train_base_checkpoint(args.output, args.epochs, args.images_per_class)
    print(f"{args.output}: SHA-256 {sha256_of(args.output)} (set SHIPPED_SHA256 in {__file__})")


if __name__ == "__main__":
    main()
