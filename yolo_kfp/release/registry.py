"""The Kubeflow Model Registry: a promoted model becomes a new version of a registered model.

Registered with the official ``model-registry`` client when a run names a registry
(``model_registry_url``). What a version holds:

- **its name**: the KFP run's id, so that a publish step run again for the same run (KFP's retry of a
  failed run) finds its version instead of adding a second one; the published folder's name (UTC time
  and the run id's start) is a property of it;
- **one model artifact**: ``uri`` the published ``<version>/serving/yolo-kfp`` as ``s3://bucket/key``
  (the storage URI a KServe InferenceService with OpenVINO Model Server reads: ``1/model.onnx`` under
  it), or, where the run pushed a ModelCar image (``publish_oci``), that image by digest
  (``oci://host/repository@sha256:…``, a KServe storage URI too); ``modelFormatName`` ``onnx`` and
  ``modelFormatVersion`` the ONNX opset, and where it came from as Kubeflow's convention writes it
  (``modelSourceKind`` ``kfp``, ``modelSourceClass`` ``pipelinerun``, ``modelSourceId`` the run id,
  ``modelSourceGroup`` the pod's namespace);
- **its custom properties**: the test-split metrics (``map50``, ``map50_95``, ``precision``, ``recall``,
  and COCO's ``coco_AP``, ``coco_AP50``, ...: ``yolo_kfp.model.figures.recorded_figures``),
  ``kfp_run_id``, ``published_version``, ``published_url``, the export's ``imgsz`` and ``classes``, and,
  where a search chose the settings, the winner's as ``search.<name>`` (text).

Authentication: a bearer token, by default the pod's service-account token (what OpenShift AI's model
registries take; the service account needs access to the registry), else ``KF_PIPELINES_SA_TOKEN_PATH``
names the file, as the client itself reads it. TLS: ``MODEL_REGISTRY_CA_BUNDLE`` if set, else the
cluster's service CA for a ``*.svc`` host, else the cluster's trusted bundle where OpenShift AI mounts
one, else the system's store. A registration that fails for a transient reason (no connection, a 5xx)
is tried again; found, made or completed, the same call gives the same version.
"""

import json
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypedDict, TypeVar

from yolo_kfp.infra.tls import SYSTEM_STORE, pick_ca_bundle
from yolo_kfp.model.figures import recorded_figures
from yolo_kfp.model.search_report import search_tags
from yolo_kfp.params.validation import REGISTRY_URL, registry_url_problems

if TYPE_CHECKING:
    from model_registry import ModelRegistry

log = logging.getLogger(__name__)
T = TypeVar("T")

AUTHOR = "yolo-kfp"
MODEL_FORMAT = "onnx"


class ArtifactSource(TypedDict, total=False):
    """Where a model artifact came from, as Kubeflow's convention writes it."""

    model_source_kind: str
    model_source_class: str
    model_source_id: str
    model_source_group: str


class ArtifactFields(ArtifactSource):
    """The model artifact's fields besides its name and URI (keywords of the client's calls)."""

    model_format_name: str
    model_format_version: str


SOURCE_KIND, SOURCE_CLASS = "kfp", "pipelinerun"  # Kubeflow's names for a KFP run
SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_PATH_VARIABLE = "KF_PIPELINES_SA_TOKEN_PATH"  # the client's own: a file holding the token
CA_BUNDLE_VARIABLE = "MODEL_REGISTRY_CA_BUNDLE"
ACCESS_HINT = ("give the pipeline's service account access to the registry (OpenShift AI: Settings > Model "
               "registry settings > Manage permissions > Projects: add this project)")


class RegistryError(RuntimeError):
    """A registration that failed, in one line: what, where, why, and what to do."""


def _address(url: str) -> tuple[str, int, bool]:
    problems = registry_url_problems(url)
    if problems or not url:
        raise ValueError(problems[0] if problems else "model_registry_url is empty")
    found = REGISTRY_URL.fullmatch(url)
    if found is None:  # what registry_url_problems refuses
        raise ValueError(f"model_registry_url {url!r} is not a registry's URL")
    secure = found["scheme"] == "https"
    return f"{found['scheme']}://{found['host']}", int(found["port"] or (443 if secure else 80)), secure


def _token() -> tuple[str | None, str]:
    """The bearer token and where it came from (never the token itself)."""
    path = os.environ.get(TOKEN_PATH_VARIABLE) or f"{SERVICE_ACCOUNT}/token"
    try:
        with open(path) as f:
            return f.read().strip(), path
    except OSError:
        if os.environ.get(TOKEN_PATH_VARIABLE):
            raise RegistryError(f"{TOKEN_PATH_VARIABLE}={path} cannot be read") from None
        return None, f"{path} (missing)"


def _namespace() -> str | None:
    try:
        with open(f"{SERVICE_ACCOUNT}/namespace") as f:
            return f.read().strip() or None
    except OSError:
        return None


def connect(registry_url: str, token: str | None = None, ca_bundle: str | None = None, attempts: int = 4,
            retry_delay: float = 2.0) -> "ModelRegistry":
    """The official client, connected (it lists one registered model to check access)."""
    from model_registry import ModelRegistry

    server, port, secure = _address(registry_url)
    source = "given"
    if token is None:
        token, source = _token()
    if secure and not token:
        raise RegistryError(f"Model Registry at {registry_url}: no token to authenticate with ({source}); "
                            f"the pod's service-account token is what OpenShift AI's registries take")
    ca_bundle = pick_ca_bundle(registry_url, ca_bundle or os.environ.get(CA_BUNDLE_VARIABLE))[0] if secure else None
    log.info("Model Registry at %s: token %s, %s", registry_url, source,
             f"TLS verified with {ca_bundle or SYSTEM_STORE}" if secure else "plain HTTP")
    return _calling(registry_url, "connect", lambda: ModelRegistry(
        server, port, author=AUTHOR, is_secure=secure, user_token=token, custom_ca=ca_bundle), attempts, retry_delay,
        ca_bundle or "")


def check_access(*, registry_url: str, token: str | None = None, ca_bundle: str | None = None) -> None:
    """Fails now, in one line, where registering later would (address, TLS, token, permissions)."""
    connect(registry_url, token, ca_bundle)
    log.info("preflight: model_registry_url=%s ok", registry_url)


def _transient(error: Exception) -> bool:
    import aiohttp
    from mr_openapi.exceptions import ApiException

    if isinstance(error, ApiException):
        return error.status is None or error.status >= 500
    return isinstance(error, (aiohttp.ClientConnectionError, TimeoutError)) and not isinstance(
        error, aiohttp.ClientSSLError)


def _explained(registry_url: str, doing: str, error: Exception, verified_with: str = "") -> RegistryError:
    from mr_openapi.exceptions import ApiException

    if isinstance(error, ApiException):
        body = str(error.body or "").strip().replace("\n", " ")[:300]
        why = f"HTTP {error.status} {error.reason or ''}".strip() + (f": {body}" if body else "")
        if error.status in (401, 403):
            return RegistryError(f"Model Registry at {registry_url} refused to {doing} ({why}) -- {ACCESS_HINT}")
        return RegistryError(f"Model Registry at {registry_url}: {doing} failed ({why})")
    why = f"{type(error).__name__}: {error}".replace("\n", " ")
    hint = (f" -- its certificate was verified with {verified_with or 'the system store'}: set {CA_BUNDLE_VARIABLE} "
            "to the CA bundle that signs it" if "certificate" in why.lower()
            else " -- is the address right and reachable from the pod?")
    return RegistryError(f"Model Registry at {registry_url}: {doing} failed ({why}){hint}")


def _calling(registry_url: str, doing: str, call: Callable[[], T], attempts: int = 4, delay: float = 2.0,
             verified_with: str = "") -> T:
    """``call()``, tried again on a transient fault (with backoff); any failure as one RegistryError."""
    from model_registry.exceptions import StoreError

    for attempt in range(1, attempts + 1):
        try:
            return call()
        except RegistryError:
            raise
        except StoreError as error:
            raise RegistryError(f"Model Registry at {registry_url}: {doing} failed ({error})") from None
        except Exception as error:  # the client's own (mr_openapi, aiohttp) errors
            if attempt == attempts or not _transient(error):
                raise _explained(registry_url, doing, error, verified_with) from None
            log.warning("Model Registry at %s: %s failed (%s: %s); trying again in %.0f s", registry_url, doing,
                        type(error).__name__, error, delay)
            time.sleep(delay)
            delay *= 2
    raise RegistryError(f"Model Registry at {registry_url}: {doing} was not tried ({attempts} attempts)")


def register_model_version(*, registry_url: str, name: str, version: str, uri: str, format_version: str,
                           run_id: str, metrics: dict, properties: dict | None = None, description: str = "",
                           token: str | None = None, ca_bundle: str | None = None, attempts: int = 4,
                           retry_delay: float = 2.0) -> dict:
    """Registers ``version`` of the registered model ``name`` (made if missing) with one ONNX model
    artifact at ``uri``; a version already there (a retried step) is returned, its artifact added if a
    stopped step left it without one. Returns the ids, the version, the artifact's URI and whether it
    was made now."""
    from model_registry.types import ModelArtifact

    metadata: dict[str, float | int | str] = {**recorded_figures(metrics)}
    if run_id:
        metadata["kfp_run_id"] = run_id
    metadata.update(properties or {})
    namespace = _namespace()
    artifact: ArtifactFields = {"model_format_name": MODEL_FORMAT, "model_format_version": str(format_version)}
    if run_id:
        artifact.update({"model_source_kind": SOURCE_KIND, "model_source_class": SOURCE_CLASS,
                         "model_source_id": run_id})
        if namespace:
            artifact["model_source_group"] = namespace
    registry = connect(registry_url, token, ca_bundle, attempts, retry_delay)
    existed = []  # whether the version was there when this call first looked (a retry may find its own)

    def register() -> None:
        found = registry.get_registered_model(name) and registry.get_model_version(name, version)
        existed.append(bool(found))
        if not found:
            registry.register_model(name, uri, version=version, version_description=description or None,
                                    metadata=metadata, **artifact)
        elif registry.get_model_artifact(name, version) is None:  # a step stopped between version and artifact
            log.warning("version %s of %s has no model artifact: adding it", version, name)
            # the client has no public call for this; its API client's upsert is what register_model uses
            registry.async_runner(registry._api.upsert_model_version_artifact(
                ModelArtifact(name=name, uri=uri, **artifact), _given(found.id, f"version {version}'s id")))

    _calling(registry_url, f"register version {version} of {name!r}", register, attempts, retry_delay)
    created = not existed[0]
    found = _calling(registry_url, f"read version {version} of {name!r}",
                     lambda: (registry.get_model_version(name, version), registry.get_model_artifact(name, version)),
                     attempts, retry_delay)
    model_version, model_artifact = found
    if model_version is None or model_artifact is None:
        raise RegistryError(f"Model Registry at {registry_url}: version {version} of {name!r} or its model "
                            "artifact is missing after it was registered")
    if not created and model_artifact.uri != uri:
        log.info("version %s of %s was registered by an earlier attempt of this run, at %s; kept", version, name,
                 model_artifact.uri)
    log.info("%s version %s of %r in the Model Registry at %s (%s)", "registered" if created else "found", version,
             name, registry_url, model_artifact.uri)
    return {"registered_model_id": model_version.registered_model_id, "model_version_id": model_version.id,
            "model_artifact_id": model_artifact.id, "version": version, "uri": model_artifact.uri,
            "created": created}


def _given(value: str | None, what: str) -> str:
    if value is None:
        raise RegistryError(f"the Model Registry answered without {what}")
    return value


def exported_model(onnx_dir: str) -> tuple[dict, str]:
    """What an export step recorded (``export.json``) and the name of its model's folder in ``onnx_dir``
    (``<model>/1/model.onnx``); a name that is no folder inside ``onnx_dir`` is refused."""
    with open(os.path.join(onnx_dir, "export.json")) as f:
        exported = json.load(f)
    name = str(exported["path"]).split("/")[0]
    if name in ("", ".", ".."):
        raise ValueError(f"export.json in {onnx_dir} names no model folder inside it: {name!r}")
    return exported, name


def serving_location(version_url: str, onnx_dir: str) -> dict:
    """Where a serving runtime reads the published ONNX model (``<version>/serving/<model>``: its
    ``1/model.onnx`` under it) and what the export recorded about it (``export.json``)."""
    exported, model_folder = exported_model(onnx_dir)
    return {"uri": f"{version_url.rstrip('/')}/serving/{model_folder}", "opset": exported["opset"],
            "imgsz": exported.get("imgsz"), "names": exported.get("names")}


def class_names(names) -> str:
    """The export's class names ("{0: 'Bicycle', 1: 'Car'}", as Ultralytics writes them) as "Bicycle, Car"."""
    import ast

    try:
        parsed = ast.literal_eval(names) if isinstance(names, str) else names
    except (ValueError, SyntaxError):
        return str(names)
    values = parsed.values() if isinstance(parsed, dict) else parsed if isinstance(parsed, list) else [parsed]
    return ", ".join(str(v) for v in values)


def register_published_model(*, registry_url: str, name: str, version_url: str, onnx_dir: str, metrics_path: str,
                             run_id: str, search_settings: dict | None = None, image_uri: str = "",
                             token: str | None = None, ca_bundle: str | None = None, attempts: int = 4,
                             retry_delay: float = 2.0) -> dict:
    """Registers a model the publish step has just published under ``version_url`` (``s3://``);
    ``search_settings``: the settings a search chose, if one did; ``image_uri``: its ModelCar image
    (``oci://…@sha256:…``), if one was pushed, is then the artifact's URI in place of the S3 folder."""
    serving = serving_location(version_url, onnx_dir)
    with open(metrics_path) as f:
        metrics = json.load(f)
    published = version_url.rstrip("/").rsplit("/", 1)[-1]
    properties: dict[str, str | int] = {"published_version": published, "published_url": version_url}
    if serving["imgsz"]:
        properties["imgsz"] = int(serving["imgsz"])
    if serving["names"]:
        properties["classes"] = class_names(serving["names"])
    properties.update(search_tags(search_settings or {}))
    return register_model_version(
        registry_url=registry_url, name=name, version=run_id or published, uri=image_uri or serving["uri"],
        format_version=str(serving["opset"]), run_id=run_id, metrics=metrics, properties=properties,
        description=f"YOLOv5 ONNX model (opset {serving['opset']}) published at {version_url}"
                    + (f" by KFP run {run_id}" if run_id else ""),
        token=token, ca_bundle=ca_bundle, attempts=attempts, retry_delay=retry_delay)
