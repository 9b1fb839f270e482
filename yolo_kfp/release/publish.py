"""Publish: the trained model, and everything needed to trust it, under ``<publish_to>/<version>/``.

Files go up first, ``manifest.json`` (their sizes and SHA-256, the run, the parameters, the metrics)
last, so a reader that finds a manifest finds a complete model. ``<publish_to>/latest`` names the
newest version and moves only once that version's manifest is in place, and only forward: runs that
publish at once may finish in any order, so it is compared before it is written, with the S3 server's
conditional write. A retried publish of a run goes on with the version it began
(``<publish_to>/runs/<run id>.json``), so a run publishes, and registers, one version.
"""

import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable

from yolo_kfp.infra.storage import S3Url, Storage, StorageError, sha256_of
from yolo_kfp.model.figures import recorded_figures
from yolo_kfp.model.search_report import search_record
from yolo_kfp.model.train_step import SEARCH  # in a model's folder when a search chose its settings
from yolo_kfp.release.versions import new_version, version_stamp

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
LATEST = "latest"
RUNS = "runs"  # <publish_to>/runs/<run id>.json: the version a run publishes
LATEST_ATTEMPTS = 10  # compare-and-set rounds against other publishers before giving up
MODEL_FILES = ("weights/best.pt", "args.yaml", "results.csv", "train_summary.json", SEARCH)


def named_version(data: bytes, where: S3Url) -> str | None:
    """The version ``latest`` (``data``, read from ``where``) names; None, with a warning, where it names none
    this project writes (damaged, planted, or stamped in the future): it is then no newer than any."""
    try:
        version = json.loads(data).get("version")
    except (ValueError, AttributeError):
        version = None
    if version_stamp(version) is not None:
        return version
    log.warning("%s names %s, not a version a publish writes (YYYYMMDD-HHMMSS-<run>, not in the future): "
                "taken as none", where, repr(version)[:80])
    return None


def read_latest(publish_to: str, storage: Storage | None = None) -> dict | None:
    """The manifest of the version ``latest`` names, or None where nothing was published yet."""
    storage = storage or Storage.from_env()
    prefix = S3Url.parse(publish_to)
    if not storage.exists(prefix.join(LATEST)):
        return None
    version = named_version(storage.get_bytes(prefix.join(LATEST)), prefix.join(LATEST))
    if not version:
        return None
    manifest = json.loads(storage.get_bytes(prefix.join(version, MANIFEST)))
    if not isinstance(manifest, dict) or manifest.get("version") != version:
        log.warning("%s is not the manifest of version %s: taken as none published", prefix.join(version, MANIFEST),
                    version)
        return None
    return manifest


def run_version(prefix: S3Url, run_id: str, storage: Storage) -> str:
    """The version this run publishes: the one it began if it began one (a retried step), else a new one."""
    if not run_id:
        return new_version(run_id)
    claim = prefix.join(RUNS, f"{run_id}.json")
    version = new_version(run_id)
    if storage.put_if(claim, json.dumps({"version": version}).encode(), None):
        return version
    try:
        begun = json.loads(storage.get_bytes(claim))["version"]
    except (ValueError, TypeError, KeyError):
        begun = None
    if not isinstance(begun, str) or not re.fullmatch(rf"\d{{8}}-\d{{6}}-{re.escape(run_id[:8])}", begun):
        raise ValueError(f"{claim} does not name a version of run {run_id} (its form is YYYYMMDD-HHMMSS-"
                         f"{run_id[:8]}): it was not written here; remove it and run the publish step again")
    return begun


def move_latest(prefix: S3Url, version: str, storage: Storage) -> str:
    """Points ``latest`` at ``version`` unless it names a newer one; returns the version it names after."""
    url = prefix.join(LATEST)
    for _ in range(LATEST_ATTEMPTS):
        current = storage.get_tagged(url)
        named = named_version(current[0], url) if current else None
        if named is not None and named >= version:
            log.info("%s names %s, newer than %s: left as it is", url, named, version)
            return named
        if storage.put_if(url, json.dumps({"version": version}).encode(), current[1] if current else None):
            log.info("published version %s; %s now points at it", version, url)
            return version
    raise StorageError(f"{url} kept changing under {LATEST_ATTEMPTS} attempts to point it at {version}: "
                       "too many runs publishing at once? Run the publish step again")


def publish_files(*, publish_to: str, files: dict[str, str], record: dict, run_id: str = "",
                  storage: Storage | None = None, image: Callable[[str], dict] | None = None) -> dict:
    """Uploads ``files`` ({name in the version: local path}), then pushes ``image(version)`` if given (its
    record goes into the manifest as ``oci``), then writes the manifest, then moves ``latest``."""
    storage = storage or Storage.from_env()
    prefix = S3Url.parse(publish_to)
    version = run_version(prefix, run_id, storage)
    target = prefix.join(version)
    entries = {}
    for name, path in files.items():
        storage.upload_file(path, target.join(name))
        entries[name] = {"size": os.path.getsize(path), "sha256": sha256_of(path)}
        log.info("published %s", target.join(name))
    manifest = {"version": version, "run_id": run_id, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "files": entries, **record, **({"oci": image(version)} if image else {})}
    storage.put_bytes(target.join(MANIFEST), json.dumps(manifest, indent=2).encode())
    latest = move_latest(prefix, version, storage)
    return {"version": version, "url": str(target), "manifest": manifest, "latest": latest}


def _relative_files(folder: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(root, f), folder) for root, _, names in os.walk(folder) for f in names)


def _load_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def publish_model(*, publish_to: str, model_dir: str, metrics_path: str, stats_path: str, run_id: str = "",
                  storage: Storage | None = None, onnx_dir: str = "", publish_oci: str = "",
                  modelcar_base: str = "") -> dict:
    """Publishes a train step's model with its metrics, dataset statistics and parameters.

    ``onnx_dir`` (an export step's output) goes under ``serving/``: a KServe or OpenVINO Model Server
    storage URI then points at ``<version>/serving`` or ``<version>/serving/yolo-kfp``. With ``publish_oci``
    (a repository), it is also pushed there as a ModelCar image on ``modelcar_base``, tagged with the version,
    and the manifest's ``oci`` names the image by digest (``yolo_kfp.release.modelcar``). Where a search
    chose the settings (``search.json`` in ``model_dir``), the manifest's ``search`` holds its space, the
    winner's trial, settings and validation scores, and the trial count.
    """
    import yaml

    stats = _load_json(stats_path)
    with open(os.path.join(model_dir, "args.yaml")) as f:
        train_args = yaml.safe_load(f)
    parameters = {"download": stats.get("source", {}),
                  "convert": {k: stats[k] for k in ("classes", "seed", "split_ratios") if k in stats},
                  "train": train_args}
    files = {name: os.path.join(model_dir, name) for name in MODEL_FILES
             if os.path.exists(os.path.join(model_dir, name))}
    if onnx_dir:
        files.update({f"serving/{name}": os.path.join(onnx_dir, name) for name in _relative_files(onnx_dir)})
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "parameters.json"), "w") as f:
            json.dump(parameters, f, indent=2, default=str)
        files.update({"metrics.json": metrics_path, "dataset_stats.json": stats_path,
                      "parameters.json": os.path.join(tmp, "parameters.json")})
        metrics = _load_json(metrics_path)
        record = {"names": stats.get("classes"), "parameters": parameters,
                  "metrics": recorded_figures(metrics)}
        if SEARCH in files:
            record["search"] = search_record(_load_json(files[SEARCH]), f"{SEARCH} in {model_dir}")
        image = _modelcar_push(publish_oci, modelcar_base, onnx_dir, run_id) if publish_oci else None
        return publish_files(publish_to=publish_to, files=files, record=record, run_id=run_id, storage=storage,
                             image=image)


def _modelcar_push(repository: str, base: str, onnx_dir: str, run_id: str) -> Callable[[str], dict]:
    """What pushes the export's model folder (``<model>/1/model.onnx``) as a version's ModelCar image."""
    from yolo_kfp.release.modelcar import push_modelcar
    from yolo_kfp.release.registry import exported_model

    model_folder = os.path.join(onnx_dir, exported_model(onnx_dir)[1])
    return lambda version: push_modelcar(repository=repository, base=base, model_folder=model_folder,
                                         version=version, run_id=run_id)
