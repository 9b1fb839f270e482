"""Preflight: the run's first step checks every S3 location it will need, before any download or training.

A wrong secret, a missing bucket or a typo in a key then fails the run in seconds, with the bucket
named, instead of after an hour of training. It also fingerprints ``extra_data`` so that KFP's cache
key of the step that reads it changes whenever objects there are added or rewritten.
"""

import logging
import os
import tempfile

from yolo_kfp.infra.storage import S3Url, Storage, StorageError, check_checksum, is_s3
from yolo_kfp.params.run_parameters import BY_NAME

log = logging.getLogger(__name__)


def _checked(name: str, url: str, check):
    try:
        result = check()
    except (StorageError, ValueError) as error:
        raise StorageError(f"preflight: {name}={url} is not usable: {error}") from None
    log.info("preflight: %s=%s ok", name, url)
    return result


def _fingerprint(storage: Storage, prefix: str) -> str:
    url = S3Url.parse(prefix)
    if not storage.list_objects(url):
        raise StorageError(f"no objects under {url} at {storage.where}")
    return storage.fingerprint(url)


def _check_s3_model(storage: Storage, base_model: str, sha256: str, freeze: int) -> None:
    """The checkpoint is fetched once here: its checksum and depth are known before any download or training."""
    from yolo_kfp.infra.model_file import checkpoint_layers
    from yolo_kfp.params.validation import check_freeze

    with tempfile.TemporaryDirectory(prefix="preflight-") as work:
        path = storage.download_file(S3Url.parse(base_model), os.path.join(work, "base.pt"))
        check_checksum(path, sha256, f"base_model {base_model}")
        check_freeze(freeze, checkpoint_layers(path), base_model)


def check_s3_inputs(*, publish_to: str = "", base_model: str = "", extra_data: str = "",
                    open_images_cache: str = "", storage: Storage | None = None, base_model_sha256: str = "",
                    freeze: int = BY_NAME["freeze"].default) -> str:
    """Checks access to every S3 location given, and an s3:// base model's checksum and depth; returns the
    fingerprint of ``extra_data`` ("" if unset)."""
    if not any(is_s3(u) for u in (publish_to, base_model, extra_data, open_images_cache)):
        return ""
    storage = storage or Storage.from_env()
    if publish_to:
        _checked("publish_to", publish_to, lambda: storage.check_writable(S3Url.parse(publish_to)))
    if open_images_cache:
        _checked("open_images_cache", open_images_cache,
                 lambda: storage.check_writable(S3Url.parse(open_images_cache)))
    if is_s3(base_model):
        _checked("base_model", base_model, lambda: _check_s3_model(storage, base_model, base_model_sha256, freeze))
    return _checked("extra_data", extra_data, lambda: _fingerprint(storage, extra_data)) if extra_data else ""
