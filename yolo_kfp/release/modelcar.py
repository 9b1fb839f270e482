"""The published model as an OCI image that KServe serves as a ModelCar (``storageUri: oci://…@sha256:…``).

The image is the base (named by digest at compile time: KServe runs a ModelCar as a sidecar that needs ``sh``
and ``sleep``) plus one layer holding ``/models/1/model.onnx``, the layout OpenVINO Model Server reads under
``/mnt/models``. It is assembled here and pushed with a registry client (``oci_client``), no container engine.

It is reproducible: the layer's tar and gzip and the config carry the version's time, not the clock, so a
retried publish of a run (which keeps its version) builds the same bytes, finds every blob and tag in place,
pushes nothing, and gets the same digest. Tags: the version, and ``latest``, moved only forward: it is read
first and left where it names a newer version (a registry has no compare-and-set, so two publishes in the same
second can still race there; S3's ``latest`` is the one that decides).
"""

import gzip
import json
import logging
import os
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass

from yolo_kfp.infra.oci_reference import Reference
from yolo_kfp.infra.storage import sha256_of
from yolo_kfp.release.oci_client import (
    DIGEST,
    DOCKER_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    RegistryAccessError,
    RegistryClient,
    digest_of,
)
from yolo_kfp.release.versions import version_stamp

log = logging.getLogger(__name__)

# ubi9/ubi-micro 9.4-6.1716471860 (bash, coreutils): mirror it, or name another, with --modelcar-base
DEFAULT_BASE = ("registry.access.redhat.com/ubi9/ubi-micro@sha256:"
                "1c8483e0fda0e990175eb9855a5f15e0910d2038dd397d9e2b357630f0321e6d")
PLATFORM = {"os": "linux", "architecture": "amd64"}
MODEL_ROOT = "models"  # /models/1/model.onnx: KServe mounts the image's /models as the server's /mnt/models
LATEST = "latest"
VERSION_KEY = "org.opencontainers.image.version"
CREATED_KEY = "org.opencontainers.image.created"
RUN_KEY = "io.kubeflow.pipelines.run-id"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
# A base's layers as an OCI manifest names them (the same bytes; Docker's names for Docker's manifests)
LAYER_TYPES = {"application/vnd.docker.image.rootfs.diff.tar.gzip": LAYER_TYPE,
               **{kind: kind for kind in (LAYER_TYPE, "application/vnd.oci.image.layer.v1.tar",
                                          "application/vnd.oci.image.layer.v1.tar+zstd")}}


@dataclass(frozen=True)
class Blob:
    path: str
    digest: str
    size: int


def base_problems(base: str) -> list[str]:
    """What is wrong with a ModelCar base reference (compile option --modelcar-base): it must name a digest."""
    try:
        reference = Reference.parse(base, "--modelcar-base")
    except ValueError as problem:
        return [str(problem)]
    return [] if reference.digest else [f"--modelcar-base {base!r} names no digest: name the image by digest "
                                        "(…@sha256:<64 hex>), as KServe's ModelCar needs a fixed base"]


def model_layer(model_folder: str, created: int, work: str) -> tuple[Blob, str]:
    """``models/…`` from ``model_folder`` (``1/model.onnx``) as a gzip'd tar of fixed owners, modes and times;
    with the tar's own digest (the config's diff_id)."""
    tar_path = os.path.join(work, "model-layer.tar")
    with tarfile.open(tar_path, "w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(_member(MODEL_ROOT, created, directory=True))
        for root, folders, names in os.walk(model_folder):
            folders.sort()
            inside = os.path.relpath(root, model_folder)
            for name in [*(f + "/" for f in folders), *sorted(names)]:
                path = os.path.join(root, name.rstrip("/"))
                if os.path.islink(path):  # its target would be packed, wherever it is
                    raise ValueError(f"{path} is a symbolic link: the image holds the model's own files only")
                member = _member(os.path.normpath(os.path.join(MODEL_ROOT, inside, name)), created,
                                 directory=name.endswith("/"), size=0 if name.endswith("/") else os.path.getsize(path))
                if name.endswith("/"):
                    tar.addfile(member)
                else:
                    with open(path, "rb") as f:
                        tar.addfile(member, f)
    diff_id = _file_digest(tar_path)
    gz_path = tar_path + ".gz"
    with open(tar_path, "rb") as source, open(gz_path, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
        shutil.copyfileobj(source, packed)
    os.remove(tar_path)
    return Blob(gz_path, _file_digest(gz_path), os.path.getsize(gz_path)), diff_id


def _member(name: str, mtime: int, directory: bool, size: int = 0) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.mode = (tarfile.DIRTYPE, 0o755) if directory else (tarfile.REGTYPE, 0o644)
    member.size, member.mtime, member.uid, member.gid, member.uname, member.gname = size, mtime, 0, 0, "", ""
    return member


def _file_digest(path: str) -> str:
    return f"sha256:{sha256_of(path)}"


def _json_blob(document: dict, path: str) -> Blob:
    data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    with open(path, "wb") as f:
        f.write(data)
    return Blob(path, digest_of(data), len(data))


def base_image(base: Reference, client: RegistryClient, work: str) -> tuple[dict, dict]:
    """The base's manifest for linux/amd64 (picked from an index) and its config, both checked by digest."""
    found = client.manifest(base.path, base.digest)
    if found is None:
        raise RegistryAccessError(f"--modelcar-base {base}: no such image; push or mirror it there")
    manifest = json.loads(found[0])
    if found[1] in (OCI_INDEX, DOCKER_LIST) or "manifests" in manifest:
        chosen = [m for m in manifest.get("manifests", []) if {k: m.get("platform", {}).get(k) for k in PLATFORM}
                  == PLATFORM and DIGEST.fullmatch(str(m.get("digest", "")))]
        if not chosen:
            raise RegistryAccessError(f"--modelcar-base {base} has no linux/amd64 image")
        platform_manifest = client.manifest(base.path, chosen[0]["digest"])
        if platform_manifest is None:
            raise RegistryAccessError(f"--modelcar-base {base}: its linux/amd64 image {chosen[0]['digest']} is missing")
        manifest = json.loads(platform_manifest[0])
    unknown = [layer.get("mediaType") for layer in manifest.get("layers", []) if layer.get("mediaType")
               not in LAYER_TYPES]
    if unknown or not manifest.get("layers"):
        raise RegistryAccessError(f"--modelcar-base {base}: layers of an unknown kind {unknown[:2]}: name an image "
                                  "whose layers are tar or tar+gzip")
    config = client.blob_json(base.path, manifest["config"]["digest"], work)
    if len(config.get("rootfs", {}).get("diff_ids", [])) != len(manifest["layers"]):
        raise RegistryAccessError(f"--modelcar-base {base}: its config's diff_ids do not match its layers")
    return manifest, config


def image_config(base_config: dict, diff_id: str, created: str, labels: dict[str, str]) -> dict:
    """The base's config with the model layer and the labels added."""
    settings = dict(base_config.get("config") or {})
    settings["Labels"] = {**(settings.get("Labels") or {}), **labels}
    return {**base_config, "created": created, "config": settings,
            "rootfs": {"type": "layers", "diff_ids": [*base_config["rootfs"]["diff_ids"], diff_id]},
            "history": [*base_config.get("history", []),
                        {"created": created, "created_by": "yolo-kfp publish", "comment": "models/1/model.onnx"}]}


def push_modelcar(*, repository: str, base: str, model_folder: str, version: str, run_id: str = "") -> dict:
    """Pushes the model in ``model_folder`` (``1/model.onnx``) as an image to ``repository``, tagged ``version``
    and, if it is the newest, ``latest``. Returns the repository, the digest, ``image`` (repository@digest),
    ``uri`` (oci://…, KServe's storageUri), the tags pushed and the blobs uploaded."""
    target, base_ref = Reference.parse(repository, "publish_oci"), Reference.parse(base, "--modelcar-base")
    stamp = version_stamp(version)
    if stamp is None:
        raise ValueError(f"{version!r} is not a published version's name")
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))
    client = RegistryClient.for_reference(target)
    with tempfile.TemporaryDirectory(prefix="modelcar-") as work:
        base_client = client if base_ref.host == target.host else RegistryClient.for_reference(base_ref)
        base_manifest, base_config = base_image(base_ref, base_client, work)
        layer, diff_id = model_layer(model_folder, stamp, work)
        labels = {VERSION_KEY: version, CREATED_KEY: created, **({RUN_KEY: run_id} if run_id else {})}
        config = _json_blob(image_config(base_config, diff_id, created, labels), os.path.join(work, "config.json"))
        uploaded = _copy_base_layers(base_manifest, base_ref, base_client, target, client, work)
        uploaded += sum(client.put_blob(target.path, blob.path, blob.digest) for blob in (layer, config))
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": CONFIG_TYPE, "digest": config.digest, "size": config.size},
            "layers": [*({"mediaType": LAYER_TYPES[x["mediaType"]], "digest": x["digest"], "size": x["size"]}
                         for x in base_manifest["layers"]),
                       {"mediaType": LAYER_TYPE, "digest": layer.digest, "size": layer.size}],
            "annotations": {**labels, "org.opencontainers.image.base.name": str(base_ref),
                            "org.opencontainers.image.base.digest": base_ref.digest}},
            sort_keys=True, separators=(",", ":")).encode()
    digest = digest_of(manifest)
    tags = [tag for tag in (version, LATEST) if _tag(client, target, tag, manifest, digest, version)]
    log.info("image %s@%s: tags %s pushed, %d blobs uploaded", target.repository, digest, tags or "none", uploaded)
    return {"repository": target.repository, "digest": digest, "image": f"{target.repository}@{digest}",
            "uri": f"oci://{target.repository}@{digest}", "tags_pushed": tags, "blobs_uploaded": uploaded}


def _copy_base_layers(manifest: dict, base: Reference, base_client: RegistryClient, target: Reference,
                      client: RegistryClient, work: str) -> int:
    """The base's layers into the target repository, each fetched (and checked) only where it is missing."""
    uploaded = 0
    for layer in manifest["layers"]:
        if client.has_blob(target.path, layer["digest"]):
            continue
        path = os.path.join(work, layer["digest"].replace(":", "-"))
        base_client.get_blob(base.path, layer["digest"], path)
        uploaded += client.put_blob(target.path, path, layer["digest"])
        os.remove(path)
    return uploaded


def _tag(client: RegistryClient, target: Reference, tag: str, manifest: bytes, digest: str, version: str) -> bool:
    """Points ``tag`` at the image unless it already does, or (``latest``) names a newer version; whether it
    was pushed."""
    current = client.tagged_digest(target.path, tag)
    if current == digest:
        return False
    if tag == LATEST and current is not None:
        named = _named_version(client, target)
        if named is not None and named >= version:
            log.info("%s:%s names %s, newer than %s: left as it is", target.repository, LATEST, named, version)
            return False
    client.put_manifest(target.path, tag, manifest, OCI_MANIFEST)
    return True


def _named_version(client: RegistryClient, target: Reference) -> str | None:
    found = client.manifest(target.path, LATEST)
    try:
        named = json.loads(found[0]).get("annotations", {}).get(VERSION_KEY) if found else None
    except (ValueError, AttributeError):
        named = None
    if version_stamp(named) is None:
        log.warning("%s:%s names %s, not a version a publish writes: taken as none", target.repository, LATEST,
                    repr(named)[:80])
        return None
    return named
