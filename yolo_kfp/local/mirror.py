"""An offline Open Images mirror: synthetic images in a local S3 bucket, metadata beside them.

FiftyOne's Open Images zoo takes images from the S3 bucket ``open-images-dataset`` with boto3 and no
endpoint of its own, so ``AWS_ENDPOINT_URL_S3`` sends its real download code to this mirror instead.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor

from yolo_kfp.data import openimages as oi
from yolo_kfp.local import synthetic
from yolo_kfp.local.s3_server import SeaweedS3


def upload_images(s3: SeaweedS3, data_dir: str, split: str) -> int:
    client = s3.client()
    names = sorted(os.listdir(data_dir))

    def put(name: str) -> None:
        client.upload_file(os.path.join(data_dir, name), oi.BUCKET, f"{split}/{name}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, names))
    return len(names)


def build_mirror(s3: SeaweedS3, workdir: str, split: str, images_per_class: int, seed: int) -> str:
    """Fills bucket ``open-images-dataset`` on ``s3`` and returns the dir holding the split's metadata."""
    metadata_dir = os.path.join(workdir, "open-images-metadata", split)
    shutil.rmtree(metadata_dir, ignore_errors=True)
    synthetic.write_split(metadata_dir, split, images_per_class, seed)
    client = s3.client()
    if oi.BUCKET not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket=oi.BUCKET)
    upload_images(s3, os.path.join(metadata_dir, oi.DATA_DIR), split)
    shutil.rmtree(os.path.join(metadata_dir, oi.DATA_DIR))  # images live only in the bucket, as upstream
    return metadata_dir


def mirror_environment(s3: SeaweedS3, metadata_dir: str) -> dict[str, str]:
    """Environment that points FiftyOne's Open Images download at the mirror."""
    from yolo_kfp.data.openimages_metadata import METADATA_ENV

    return {"AWS_ENDPOINT_URL_S3": s3.endpoint, METADATA_ENV: metadata_dir}
