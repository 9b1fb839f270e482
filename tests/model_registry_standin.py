"""A stand-in of the Kubeflow Model Registry's REST API on 127.0.0.1, held to its published contract.

Every request is checked against the upstream OpenAPI document (``../shared/schemas/model-registry-v0.3.8.yaml``,
the API release the pinned ``model-registry`` client speaks) with openapi-core: method, path, path and
query parameters, the bearer token the document requires, and the JSON body — and, as the registry's Go
server decodes bodies with ``DisallowUnknownFields``, no field the schema does not declare. A request the
contract refuses gets a 400 (404 for a path the document lacks) and is kept in ``rejected``; every
response is checked too and a bad one is kept in ``bad_responses``: a test that ends with either list
not empty did something a real server would not take, or relied on something it would not say.

It keeps registered models, model versions and model artifacts in memory and implements the operations
the client uses to register a model: find, create, get and list registered models and versions, and
create, find, get and list a version's artifacts.
"""

import functools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlparse

import yaml
from http_standin import Recorded, StandIn, answer_json

DOCUMENT = "model-registry-v0.3.8.yaml"  # in ../shared/schemas (tests/schemas/README.md)
# Requests are matched to the document's paths under its own server address; the host is not the contract.
DOCUMENT_SERVER = "http://localhost:8080"


@functools.cache
def load_document(name: str = DOCUMENT):
    """The parsed document and openapi-core's validator of it (which checks the document itself on load)."""
    from conftest import shared_schema
    from openapi_core import OpenAPI

    with open(shared_schema(name)) as f:
        document = yaml.safe_load(f)
    return document, OpenAPI.from_dict(document)


def _operations(document: dict) -> list[tuple[str, re.Pattern, str, dict]]:
    """(method, path regex with named groups, operationId, operation) for each operation of the document."""
    found = []
    for template, item in document["paths"].items():
        pattern = re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$")
        for method, operation in item.items():
            if method in ("get", "post", "patch", "put", "delete"):
                found.append((method.upper(), pattern, operation["operationId"], operation))
    return found


def _resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        node = document
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _declared(document: dict, schema: dict, value: dict) -> tuple[set, object]:
    """The property names a schema declares for ``value`` (through allOf, and the oneOf branch its
    discriminator names), their schemas, and what it says of other properties."""
    schema = _resolve(document, schema)
    names: dict[str, dict] = dict(schema.get("properties", {}))
    extra = schema.get("additionalProperties")
    for part in schema.get("allOf", []):
        more, more_extra = _declared(document, part, value)
        names.update(more)
        extra = extra if extra is not None else more_extra
    branches = schema.get("oneOf", []) + schema.get("anyOf", [])
    if branches:
        discriminator = schema.get("discriminator", {})
        chosen = discriminator.get("mapping", {}).get(value.get(discriminator.get("propertyName")))
        for branch in [{"$ref": chosen}] if chosen else branches:
            more, more_extra = _declared(document, branch, value)
            names.update(more)
            extra = extra if extra is not None else more_extra
    return names, extra


def unknown_fields(document: dict, schema: dict, value, where: str = "") -> list[str]:
    """Fields of ``value`` that ``schema`` does not declare (what a strict JSON decoder refuses)."""
    if isinstance(value, list):
        items = _resolve(document, schema).get("items", {})
        return [p for i, v in enumerate(value) for p in unknown_fields(document, items, v, f"{where}[{i}]")]
    if not isinstance(value, dict):
        return []
    names, extra = _declared(document, schema, value)
    problems = []
    for key, item in value.items():
        if key in names:
            problems += unknown_fields(document, names[key], item, f"{where}.{key}")
        elif isinstance(extra, dict):
            problems += unknown_fields(document, extra, item, f"{where}.{key}")
        elif extra is not True:
            problems.append(f"{where}.{key}".lstrip("."))
    return problems


class _Request:
    """openapi-core's request protocol for one received request."""

    def __init__(self, method: str, path: str, query: list, headers: dict, body: bytes, content_type: str):
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        self.host_url, self.path, self.method = DOCUMENT_SERVER, path, method.lower()
        self.body, self.content_type = body or None, content_type or "application/json"
        self.parameters = RequestParameters(query=ImmutableMultiDict(query), header=Headers(headers))


class _Response:
    def __init__(self, status: int, data: bytes):
        from werkzeug.datastructures import Headers

        self.status_code, self.data = status, data
        self.content_type, self.headers = "application/json", Headers({"Content-Type": "application/json"})


def _explain(error: Exception) -> str:
    """openapi-core's error and the schema errors beneath it, on one line."""
    details, cause = [], error.__cause__
    while cause is not None:
        details += [getattr(e, "message", str(e)) for e in getattr(cause, "schema_errors", ())]
        cause = cause.__cause__
    head = str(error).split(": Value ")[0]  # the value itself is in the recorded request
    return f"{head}: {'; '.join(dict.fromkeys(details))}" if details else f"{type(error).__name__}: {error}"


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class ModelRegistryStandIn(StandIn):
    token: str | None = None  # the bearer token it accepts; None: any (the document still requires one)
    document: str = DOCUMENT  # its name in ../shared/schemas
    requests: list[Recorded] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # requests the contract refuses, with why
    bad_responses: list[str] = field(default_factory=list)  # answers of its own the contract refuses
    registered_models: dict = field(default_factory=dict)  # id -> the resource as the API returns it
    model_versions: dict = field(default_factory=dict)
    artifacts: dict = field(default_factory=dict)
    fail_next: dict = field(default_factory=dict)  # operationId -> how many of its next calls answer 503
    tls: tuple[str, str] | None = None  # (certificate chain, key): serve HTTPS
    hostname: str = "127.0.0.1"  # the name its URL has (the tests' network guard can resolve one to 127.0.0.1)

    methods = ("GET", "POST", "PATCH")

    def start(self) -> "ModelRegistryStandIn":
        self.document, self.openapi = load_document(self.document)
        self.prefix = next(iter(self.document["paths"])).split("/")[:4]  # ['', 'api', 'model_registry', v]
        self.operations = _operations(self.document)
        self._lock = threading.Lock()
        self._ids = 0
        return super().start()

    @property
    def api(self) -> str:
        """The path every operation of the document starts with (``/api/model_registry/v1alpha3``)."""
        return "/".join(self.prefix)

    def problems(self) -> list[str]:
        return self.rejected + self.bad_responses

    def calls(self, method: str, pattern: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and re.fullmatch(self.api + pattern, r.path)]

    # -- one request ------------------------------------------------------------------------------

    def _handle(self, handler, method: str) -> None:
        url = urlparse(handler.path)
        query = parse_qsl(url.query, keep_blank_values=True)
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in handler.headers.items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        self.requests.append(Recorded(method, url.path, dict(query), headers, body))
        with self._lock:
            problem = self._check_request(method, url.path, query, headers, raw, body)
            if problem:  # outside the contract: nothing it says about the answer applies
                self.rejected.append(f"{method} {url.path}: {problem}")
                status = 400 if self._match(method, url.path) else 404
                payload = {"code": str(status), "message": problem}
            else:
                status, payload = self._answer(method, url.path, query, headers, body)
                self._check_response(method, url.path, query, headers, raw, status, json.dumps(payload).encode())
        answer_json(handler, status, payload)

    def _match(self, method: str, path: str):
        for verb, pattern, operation, spec in self.operations:
            if verb == method and (found := pattern.match(path)):
                return operation, found.groupdict(), spec
        return None

    def _answer(self, method, path, query, headers, body) -> tuple[int, dict]:
        if self.token is not None and headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"code": "401", "message": "Unauthorized: a valid bearer token is required"}
        operation, path_params, _ = self._match(method, path)
        if self.fail_next.get(operation):
            self.fail_next[operation] -= 1
            return 503, {"code": "503", "message": "the registry's database is not reachable (a stand-in fault)"}
        handler = getattr(self, f"_{operation}", None)
        if handler is None:
            self.rejected.append(f"{method} {path}: {operation} is in the document but not in this stand-in")
            return 500, {"code": "500", "message": f"{operation} is not implemented by the stand-in"}
        try:
            return handler(params=path_params, query=dict(query), body=body)
        except ApiError as error:
            return error.status, {"code": str(error.status), "message": str(error)}

    def _check_request(self, method, path, query, headers, raw, body) -> str:
        """What the document (and the server's strict decoding) refuses in a request; "" when nothing."""
        request = _Request(method, path, query, headers, raw, headers.get("content-type", ""))
        result = self.openapi.unmarshal_request(request)
        if result.errors:
            return "; ".join(_explain(e) for e in result.errors)
        if isinstance(body, dict):
            schema = self._match(method, path)[2]["requestBody"]["content"]["application/json"]["schema"]
            unknown = unknown_fields(self.document, schema, body)
            if unknown:
                return f"fields the schema does not declare (the server decodes strictly): {', '.join(unknown)}"
        return ""

    def _check_response(self, method, path, query, headers, raw, status, data) -> None:
        request = _Request(method, path, query, headers, raw, headers.get("content-type", ""))
        result = self.openapi.unmarshal_response(request, _Response(status, data))
        if result.errors:
            self.bad_responses.append(f"{method} {path} -> {status}: " + "; ".join(_explain(e) for e in result.errors))

    # -- the store --------------------------------------------------------------------------------

    def _new(self, body: dict, **server_fields) -> dict:
        self._ids += 1
        now = str(int(time.time() * 1000))
        return {**body, **server_fields, "id": str(self._ids), "createTimeSinceEpoch": now,
                "lastUpdateTimeSinceEpoch": now, "customProperties": body.get("customProperties", {})}

    @staticmethod
    def _page(items: list, query: dict) -> dict:
        size = int(query.get("pageSize") or 100)
        start = int(query.get("nextPageToken") or 0)
        page = sorted(items, key=lambda r: int(r["id"]))[start:start + size]
        more = start + size < len(items)
        return {"items": page, "size": len(page), "pageSize": size, "nextPageToken": str(start + size) if more else ""}

    @staticmethod
    def _one(found: list, what: str) -> dict:
        if not found:
            raise ApiError(404, f"no {what}")
        return found[0]

    @classmethod
    def _found(cls, items, query: dict, what: str, parents=None) -> dict:
        """The first of ``items`` a find call's query names: by name, externalId and, where the resource has a
        parent (``parents`` gives its parents' ids), parentResourceId."""
        return cls._one([item for item in items
                         if all(key not in query or item.get(key) == query[key] for key in ("name", "externalId"))
                         and (parents is None or "parentResourceId" not in query
                              or query["parentResourceId"] in parents(item))], what)

    @staticmethod
    def _get(store: dict, ident: str, what: str) -> dict:
        if ident not in store:
            raise ApiError(404, f"no {what} with id {ident}")
        return store[ident]

    # -- operations (named by operationId) ---------------------------------------------------------

    def _getRegisteredModels(self, params, query, body):
        return 200, self._page(list(self.registered_models.values()), query)

    def _findRegisteredModel(self, params, query, body):
        return 200, self._found(self.registered_models.values(), query, f"registered model {query}")

    def _createRegisteredModel(self, params, query, body):
        if any(m["name"] == body["name"] for m in self.registered_models.values()):
            raise ApiError(409, f"a registered model named {body['name']!r} exists")
        model = self._new(body, state=body.get("state", "LIVE"))
        self.registered_models[model["id"]] = model
        return 201, model

    def _getRegisteredModel(self, params, query, body):
        return 200, self._get(self.registered_models, params["registeredmodelId"], "registered model")

    def _getRegisteredModelVersions(self, params, query, body):
        self._get(self.registered_models, params["registeredmodelId"], "registered model")
        return 200, self._page([v for v in self.model_versions.values()
                                if v["registeredModelId"] == params["registeredmodelId"]], query)

    def _findModelVersion(self, params, query, body):
        return 200, self._found(self.model_versions.values(), query, f"model version {query}",
                                parents=lambda v: [v["registeredModelId"]])

    def _createModelVersion(self, params, query, body):
        self._get(self.registered_models, body["registeredModelId"], "registered model")
        if any(v["name"] == body["name"] and v["registeredModelId"] == body["registeredModelId"]
               for v in self.model_versions.values()):
            raise ApiError(409, f"version {body['name']!r} of registered model {body['registeredModelId']} exists")
        version = self._new(body, state=body.get("state", "LIVE"))
        self.model_versions[version["id"]] = version
        return 201, version

    def _getModelVersion(self, params, query, body):
        return 200, self._get(self.model_versions, params["modelversionId"], "model version")

    def _upsertModelVersionArtifact(self, params, query, body):
        version_id = params["modelversionId"]
        self._get(self.model_versions, version_id, "model version")
        if body.get("id"):
            artifact = self._get(self.artifacts, body["id"], "artifact")
            artifact["modelVersionIds"] = sorted({*artifact["modelVersionIds"], version_id})
            return 200, self._public(artifact)
        if any(version_id in a["modelVersionIds"] and a.get("name") == body.get("name")
               for a in self.artifacts.values()):
            raise ApiError(409, f"version {version_id} has an artifact named {body.get('name')!r}")
        artifact = self._new(body, artifactType=body.get("artifactType", "model-artifact"),
                             state=body.get("state", "UNKNOWN"))
        artifact["modelVersionIds"] = [version_id]  # the association, kept beside the resource
        self.artifacts[artifact["id"]] = artifact
        return 201, self._public(artifact)

    def _getModelVersionArtifacts(self, params, query, body):
        version_id = params["modelversionId"]
        self._get(self.model_versions, version_id, "model version")
        found = [self._public(a) for a in self.artifacts.values() if version_id in a["modelVersionIds"]
                 and query.get("artifactType", a["artifactType"]) == a["artifactType"]]
        return 200, self._page(found, query)

    def _findModelArtifact(self, params, query, body):
        return 200, self._public(self._found(
            [a for a in self.artifacts.values() if a["artifactType"] == "model-artifact"], query,
            f"model artifact {query}", parents=lambda a: a["modelVersionIds"]))

    def _getModelArtifact(self, params, query, body):
        return 200, self._public(self._get(self.artifacts, params["modelartifactId"], "model artifact"))

    @staticmethod
    def _public(artifact: dict) -> dict:
        return {k: v for k, v in artifact.items() if k != "modelVersionIds"}

    # -- for tests --------------------------------------------------------------------------------

    def versions_of(self, name: str) -> dict[str, dict]:
        """{version name: version} of the registered model ``name``."""
        (model,) = [m for m in self.registered_models.values() if m["name"] == name]
        return {v["name"]: v for v in self.model_versions.values() if v["registeredModelId"] == model["id"]}

    def artifacts_of(self, version_id: str) -> list[dict]:
        return [self._public(a) for a in self.artifacts.values() if version_id in a["modelVersionIds"]]
