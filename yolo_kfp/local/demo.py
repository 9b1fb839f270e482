"""Demo mode: the whole pipeline on this machine against a synthetic, offline Open Images mirror.

Open Images and the pretrained YOLOv5 weights cannot be downloaded here, so the demo
1. draws a small synthetic Open Images split (bicycles, cars, traffic signs; see ``synthetic``),
2. serves its images from a SeaweedFS S3 server on 127.0.0.1 as bucket ``open-images-dataset`` and
   points FiftyOne's real download code at it (``AWS_ENDPOINT_URL_S3``),
3. starts from the project's own base checkpoint: YOLOv5n trained from scratch on *other* classes of other
   synthetic scenes (``demo_base``), so that fine-tuning with the backbone frozen is real transfer learning:
   two of the three target classes are new to the head.
"""

import contextlib
import logging

from yolo_kfp.data import openimages as oi
from yolo_kfp.local.demo_base import base_checkpoint
from yolo_kfp.local.mirror import build_mirror, mirror_environment
from yolo_kfp.local.s3_server import SeaweedS3

log = logging.getLogger(__name__)

DEMO_BUCKET = "yolo-kfp-demo"  # the demo's data connection, when a run needs one (--nodes above 1, publish_oci)
DEMO_PUBLISH_TO = f"s3://{DEMO_BUCKET}/published"  # where the demo publishes when publish_oci is set alone
NOTICE = ("DEMO: the images are synthetic drawings standing in for Open Images (not reachable here), served "
          "from a local S3 mirror; the base checkpoint is the project's own. Figures describe the synthetic data.")
MIRROR_IMAGES_PER_CLASS = 130
MIRROR_SEED = 2024
# Small settings that train on 2 CPU cores in a few minutes.
PARAMS = {
    "max_samples_per_class": 100,
    "imgsz": 160,
    "epochs": 25,
    "batch": 16,
    "workers": 0,
    "train_args": {"nbs": 16, "plots": False},
}

# `run-local --demo --search`: four trials that tell transfer learning's settings apart, a few epochs each. The
# same as --param optimizer=SGD --param search_space='{"lr0": [0.002, 0.02], "freeze": [0, 10]}'
# --param search_epochs=5 (optimizer auto would choose its own learning rate: lr0 would change nothing).
SEARCH_PARAMS = {"optimizer": "SGD", "search_space": {"lr0": [0.002, 0.02], "freeze": [0, 10]}, "search_epochs": 5}


@contextlib.contextmanager
def demo_environment(workdir: str, split: str, data_connection: bool = False):
    """Yields (environment variables, parameter overrides) while the mirror's S3 server runs; with
    ``data_connection``, also a data connection to a bucket of that server (the run's own S3: where a training
    across nodes stages its dataset for them)."""
    log.info(NOTICE)
    base = base_checkpoint(workdir)
    with SeaweedS3(public_read_buckets=(oi.BUCKET,)) as s3:
        metadata_dir = build_mirror(s3, workdir, split, MIRROR_IMAGES_PER_CLASS, MIRROR_SEED)
        log.info("demo: Open Images mirror at %s (bucket %s)", s3.endpoint, oi.BUCKET)
        variables = mirror_environment(s3, metadata_dir)
        if data_connection:
            s3.client().create_bucket(Bucket=DEMO_BUCKET)
            variables = {**variables, **s3.data_connection(), "AWS_S3_BUCKET": DEMO_BUCKET}
        yield variables, {**PARAMS, "base_model": base}
