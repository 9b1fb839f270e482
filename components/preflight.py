"""Preflight: the run's first step checks every S3 location it will need, before any download or training.

A wrong secret, a missing bucket or a typo in a key then fails the run in seconds, with the bucket
named, instead of after an hour of training. It also fingerprints ``extra_data`` so that KFP's cache
key of the step that reads it changes whenever objects there are added or rewritten.
"""

import logging
import os
import tempfile

from components.images import DATA_IMAGE, component
from components.storage import S3Url, Storage, StorageError, check_checksum, is_s3

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
    from components.model_file import checkpoint_layers
    from components.validation import check_freeze

    with tempfile.TemporaryDirectory(prefix="preflight-") as work:
        path = storage.download_file(S3Url.parse(base_model), os.path.join(work, "base.pt"))
        check_checksum(path, sha256, f"base_model {base_model}")
        check_freeze(freeze, checkpoint_layers(path), base_model)


def check_s3_inputs(publish_to: str = "", base_model: str = "", extra_data: str = "",
                    open_images_cache: str = "", storage: Storage | None = None, base_model_sha256: str = "",
                    freeze: int = 0) -> str:
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


@component(DATA_IMAGE, timeout_hours=1, data_connection=True, cache=False)  # access can change: check anew
def preflight(publish_to: str, base_model: str, extra_data: str, open_images_cache: str, classes: list,
              max_samples_per_class: int, download_shard_size: int, split: str, split_ratios: list, epochs: int,
              batch: int, imgsz: int, freeze: int, cache: str, optimizer: str, train_args: dict, min_map50: float,
              max_map50_drop: float, base_model_sha256: str) -> str:
    """Checks the run's parameters and its access to every S3 location (publish_to, base_model,
    extra_data, open_images_cache) before any work.

    Fails the run in its first step, naming what is wrong: the parameter rules of the CLI, the base
    model's depth against freeze (an s3:// checkpoint is fetched for it and its checksum checked).
    Returns a fingerprint of the objects under extra_data, which keys the cache of the step that reads them.

    Args:
        publish_to: s3://bucket/prefix the model will be published to: a probe object is written and deleted.
        base_model: The checkpoint to fine-tune: a published name, a path in the image, or s3:// (fetched here).
        extra_data: s3://bucket/prefix of the user's own labelled images: listed and fingerprinted.
        open_images_cache: s3://bucket/prefix for Open Images' metadata CSVs: a probe object is written and deleted.
        classes: Open Images display names to detect.
        max_samples_per_class: Images drawn for each class.
        download_shard_size: Images per download shard.
        split: The Open Images split: train, validation or test.
        split_ratios: Shares of train, val and test.
        epochs: Training epochs.
        batch: Images per batch, or -1 (AutoBatch).
        imgsz: Image size in pixels.
        freeze: Layers kept frozen: checked against the base model's depth.
        cache: Ultralytics' image cache: empty, ram or disk.
        optimizer: Ultralytics optimizer name.
        train_args: Further Ultralytics training arguments: known keys only, none that a parameter sets.
        min_map50: The gate's threshold.
        max_map50_drop: The gate's allowed drop against the published model.
        base_model_sha256: Expected SHA-256 of an s3:// base_model; empty: not checked.
    """
    import logging

    from components.preflight import check_s3_inputs
    from components.validation import base_model_problems, check, parameter_problems

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    check(parameter_problems({
        "classes": list(classes), "max_samples_per_class": max_samples_per_class,
        "download_shard_size": download_shard_size, "split": split, "split_ratios": list(split_ratios),
        "epochs": epochs, "batch": batch, "imgsz": imgsz, "freeze": freeze, "cache": cache, "optimizer": optimizer,
        "train_args": dict(train_args), "base_model": base_model, "min_map50": min_map50,
        "max_map50_drop": max_map50_drop, "publish_to": publish_to, "extra_data": extra_data,
        "open_images_cache": open_images_cache, "base_model_sha256": base_model_sha256})
        + base_model_problems(base_model, freeze))
    return check_s3_inputs(publish_to, base_model, extra_data, open_images_cache,
                           base_model_sha256=base_model_sha256, freeze=freeze)
