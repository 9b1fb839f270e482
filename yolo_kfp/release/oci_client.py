"""An OCI registry's API (the distribution spec) through ORAS' Python client, with this project's rules.

- **Credentials** come from a ``kubernetes.io/dockerconfigjson`` Secret's ``.dockerconfigjson``, handed to the
  step as ``REGISTRY_AUTH_JSON`` (never from ``~/.docker``): the entry of the registry's host, or of a namespace
  under it, the most specific one first. They go to the registry itself (Basic) or to the token service its
  challenge names, and to that only over HTTPS or on the registry's own origin.
- **TLS** always: ``REGISTRY_CA_BUNDLE`` if set, else the cluster's trusted bundle where OpenShift AI mounts
  one, else the system's store (``yolo_kfp.infra.tls``).
- **Refusals** (wrong credentials, no right to push, no such image) fail at once in one line; ORAS retries
  only what may pass on a second try (a dropped connection, a 5xx).
- **Nothing read is trusted**: every manifest and blob is checked against the digest that named it.
"""

import base64
import binascii
import hashlib
import json
import os
import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

from yolo_kfp.infra.oci_reference import Reference
from yolo_kfp.infra.tls import SYSTEM_STORE, pick_ca_bundle

AUTH_VARIABLE = "REGISTRY_AUTH_JSON"  # a dockerconfigjson document: {"auths": {"<host>": {"auth": ...}}}
CA_VARIABLE = "REGISTRY_CA_BUNDLE"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPTED = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class RegistryAccessError(RuntimeError):
    """A registry call that cannot succeed as it is, in one line: what, where, why, and what to do."""


def credentials_for(reference: Reference, auth_json: str | None) -> tuple[str, str] | None:
    """The user and password a dockerconfigjson document holds for ``reference`` (the most specific of the
    entries for its host or a namespace above its repository), or None."""
    if not auth_json:
        return None
    try:
        auths = json.loads(auth_json).get("auths", {})
    except (ValueError, AttributeError):
        raise RegistryAccessError(f"{AUTH_VARIABLE} is not a dockerconfigjson document "
                                  '({"auths": {"<registry>": {"auth": "<base64 user:password>"}}}): check the '
                                  "Secret named by --registry-secret") from None
    scopes = {_scope(key): entry for key, entry in auths.items() if isinstance(entry, dict)} if isinstance(
        auths, dict) else {}
    matching = [s for s in scopes if s == reference.host or reference.repository.startswith(s + "/")]
    if not matching:
        return None
    scope = max(matching, key=len)
    entry = scopes[scope]
    if entry.get("username") and entry.get("password"):
        return str(entry["username"]), str(entry["password"])
    try:
        user, _, password = base64.b64decode(str(entry.get("auth", "")), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        user, password = "", ""
    if not user or not password:
        raise RegistryAccessError(f"{AUTH_VARIABLE}'s entry for {scope} holds no user and password (an 'auth' of "
                                  "base64 user:password, or 'username' and 'password'): check the Secret named by "
                                  "--registry-secret")
    return user, password


def _scope(key: str) -> str:
    """An auths key as host[/namespace]: without scheme, trailing slash, or Docker Hub's /v1 path."""
    key = re.sub(r"^https?://", "", key.strip()).rstrip("/")
    return "docker.io" if key in ("index.docker.io/v1", "index.docker.io", "registry-1.docker.io") else key


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.partition(" ")
    return scheme.lower(), {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}


def _auth_backend(host: str, credentials: tuple[str, str] | None, ca: str | bool):
    """An ORAS auth backend that answers a Basic or Bearer challenge with ``credentials``, and raises (ORAS does
    not retry that) where it cannot."""
    import requests
    from oras.auth import AuthenticationException, TokenAuth

    class Challenged(TokenAuth):
        def __init__(self) -> None:
            super().__init__()
            self.session, self.prefix = requests.Session(), "https"
            # ORAS declares a bool, and hands it to requests' verify, which takes a CA bundle's path as well
            self._tls_verify = ca  # pyright: ignore[reportAttributeAccessIssue]
            self.basic = base64.b64encode(":".join(credentials).encode()).decode() if credentials else ""
            self.authorization = ""

        def load_configs(self, container: Any, configs: list | None = None) -> None:
            """Credentials come from the Secret only, never from a Docker config on the machine."""

        def get_auth_header(self) -> dict:
            """What ORAS sends with every request once a challenge was answered (``token`` set): without it, an
            upload goes out bare, and the registry's 401 closes the connection before a large body is sent."""
            return {"Authorization": self.authorization}

        def authenticate_request(self, original, headers: dict, refresh: bool = False):
            scheme, fields = _challenge(original.headers.get("Www-Authenticate", ""))
            if scheme == "basic" and self.basic:
                self.token, self.authorization = "basic", f"Basic {self.basic}"
            elif scheme == "bearer" and "realm" in fields:
                self.token = self._bearer(fields, original.status_code)
                self.authorization = f"Bearer {self.token}"
            else:
                raise AuthenticationException(_refusal(host, original.status_code, credentials))
            return {**(headers or {}), "Authorization": self.authorization}, True

        def _bearer(self, fields: dict[str, str], status: int) -> str:
            realm = urllib.parse.urlsplit(fields["realm"])
            if self.basic and realm.scheme != "https" and realm.netloc != host:
                raise AuthenticationException(f"{host} asks for its credentials to go to {fields['realm']} over plain "
                                              "HTTP: refused")
            params = {k: v for k, v in fields.items() if k in ("service", "scope")}
            answer = self.session.get(fields["realm"], params=params, verify=self._tls_verify, timeout=60,
                                      headers={"Authorization": f"Basic {self.basic}"} if self.basic else {})
            try:
                body = answer.json() if answer.ok else {}
            except ValueError:  # not JSON: no token (raised here, as ORAS would retry anything else for minutes)
                body = {}
            token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
            if not token:
                raise AuthenticationException(_refusal(host, answer.status_code if not answer.ok else status,
                                                       credentials))
            return str(token)

    return Challenged()


def _refusal(host: str, status: int, credentials: tuple[str, str] | None) -> str:
    if credentials:
        return (f"registry {host} refused the credentials of user {credentials[0]!r} (HTTP {status}): check the "
                f"Secret named by --registry-secret ({AUTH_VARIABLE})")
    return (f"registry {host} wants credentials (HTTP {status}) and {AUTH_VARIABLE} holds none for it: add them "
            "to the Secret named by --registry-secret")


class RegistryClient:
    """One registry, as a user with ``credentials`` (or anonymous), over TLS verified with ``ca_bundle``."""

    def __init__(self, host: str, credentials: tuple[str, str] | None, ca_bundle: str | None = None) -> None:
        import oras.provider

        self.host, self.credentials = host, credentials
        ca, _ = pick_ca_bundle(f"https://{host}", ca_bundle or os.environ.get(CA_VARIABLE))
        self.verified_with = ca or SYSTEM_STORE
        self.oras = oras.provider.Registry(hostname=host, tls_verify=ca or True)
        self.oras.auth = _auth_backend(host, credentials, ca or True)

    @classmethod
    def for_reference(cls, reference: Reference) -> "RegistryClient":
        return cls(reference.host, credentials_for(reference, os.environ.get(AUTH_VARIABLE)))

    def request(self, method: str, path: str, url: str = "", **settings) -> Any:
        """``method`` on ``/v2/<path>`` (or ``url``, on the registry); a refusal, an unverifiable certificate or a
        dropped connection as one line."""
        import requests
        from oras.auth import AuthenticationException

        try:
            answer = self.oras.do_request(url or f"https://{self.host}/v2/{path}", method, **settings)
        except AuthenticationException as refused:
            raise RegistryAccessError(str(refused)) from None
        except requests.exceptions.SSLError as error:
            if "CERTIFICATE_VERIFY_FAILED" not in str(error):
                raise RegistryAccessError(f"registry {self.host} closed the connection: {method} {path or url[:80]} "
                                          "(TLS); run the step again") from None
            raise RegistryAccessError(f"registry {self.host}'s TLS certificate cannot be verified with "
                                      f"{self.verified_with}: set {CA_VARIABLE} to its CA's PEM file") from None
        except requests.exceptions.ConnectionError as error:
            raise RegistryAccessError(f"registry {self.host} cannot be reached: {type(error).__name__}") from None
        if answer.status_code in (401, 403):
            raise RegistryAccessError(_refusal(self.host, answer.status_code, self.credentials)
                                      if answer.status_code == 401 or not self.credentials else
                                      f"registry {self.host} denies user {self.credentials[0]!r} {method} on "
                                      f"/v2/{path.split('/blobs/')[0].split('/manifests/')[0]} (HTTP 403): grant "
                                      "the robot account write access to the repository")
        return answer

    def manifest(self, repository: str, reference: str) -> tuple[bytes, str] | None:
        """A manifest's bytes and media type, or None where there is none; checked against a digest reference."""
        answer = self.request("GET", f"{repository}/manifests/{reference}", headers={"Accept": ", ".join(ACCEPTED)})
        if answer.status_code == 404:
            return None
        _check_ok(answer, f"the manifest {self.host}/{repository}:{reference}")
        if DIGEST.fullmatch(reference) and digest_of(answer.content) != reference:
            raise RegistryAccessError(f"{self.host}/{repository}@{reference}: the registry sent a manifest of "
                                      f"another digest ({digest_of(answer.content)}): refused")
        return answer.content, answer.headers.get("Content-Type", "").split(";")[0]

    def tagged_digest(self, repository: str, tag: str) -> str | None:
        answer = self.request("HEAD", f"{repository}/manifests/{tag}", headers={"Accept": ", ".join(ACCEPTED)})
        return answer.headers.get("Docker-Content-Digest") if answer.status_code == 200 else None

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        answer = self.request("PUT", f"{repository}/manifests/{reference}", data=data,
                              headers={"Content-Type": media_type})
        _check_ok(answer, f"pushing the manifest {self.host}/{repository}:{reference}")
        digest = digest_of(data)
        if answer.headers.get("Docker-Content-Digest", digest) != digest:
            raise RegistryAccessError(f"{self.host}/{repository}:{reference} was stored as "
                                      f"{answer.headers['Docker-Content-Digest']}, not {digest}")
        return digest

    def has_blob(self, repository: str, digest: str) -> bool:
        return self.request("HEAD", f"{repository}/blobs/{digest}").status_code == 200

    def put_blob(self, repository: str, path: str, digest: str) -> bool:
        """Uploads the file at ``path`` unless the repository has it; whether it was uploaded."""
        if self.has_blob(repository, digest):
            return False
        start = self.request("POST", f"{repository}/blobs/uploads/", headers={"Content-Length": "0"})
        _check_ok(start, f"starting an upload to {self.host}/{repository}")
        location = urllib.parse.urljoin(f"https://{self.host}/", start.headers.get("Location", ""))
        if urllib.parse.urlsplit(location).netloc != self.host:  # the credentials go nowhere else
            raise RegistryAccessError(f"registry {self.host} sent an upload to {location[:120]}: refused")
        with open(path, "rb") as f:
            done = self.request("PUT", "", url=location + ("&" if "?" in location else "?") + f"digest={digest}",
                                data=f.read(), headers={"Content-Type": "application/octet-stream"})
        _check_ok(done, f"uploading {digest} to {self.host}/{repository}")
        return True

    def get_blob(self, repository: str, digest: str, path: str) -> None:
        """Writes the blob to ``path``, checked against its digest."""
        answer = self.request("GET", f"{repository}/blobs/{digest}", stream=True)
        _check_ok(answer, f"the blob {self.host}/{repository}@{digest}")
        hashed = hashlib.sha256()
        with answer, open(path, "wb") as f:
            for chunk in answer.iter_content(chunk_size=1 << 20):
                hashed.update(chunk)
                f.write(chunk)
        if f"sha256:{hashed.hexdigest()}" != digest:
            os.remove(path)
            raise RegistryAccessError(f"{self.host}/{repository}@{digest}: the registry sent a blob of another "
                                      "digest: refused")

    def blob_json(self, repository: str, digest: str, folder: str) -> Any:
        path = os.path.join(folder, digest.replace(":", "-"))
        self.get_blob(repository, digest, path)
        with open(path) as f:
            return json.load(f)


def _check_ok(answer: Any, what: str) -> None:
    if answer.status_code >= 300:
        detail = "; ".join(_errors(answer))
        raise RegistryAccessError(f"{what}: HTTP {answer.status_code}" + (f" ({detail})" if detail else ""))


def _errors(answer: Any) -> Iterator[str]:
    try:
        errors = answer.json().get("errors", [])
    except ValueError:
        return
    for error in errors[:3] if isinstance(errors, list) else []:
        if isinstance(error, dict):
            yield f"{error.get('code', '')}: {str(error.get('message', ''))[:200]}"


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def check_credentials(repository: str) -> None:
    """Signs in to ``repository``'s registry with the Secret's credentials (its API root): a refusal, an
    unverifiable certificate or no answer as one line, before any work."""
    reference = Reference.parse(repository, "publish_oci")
    client = RegistryClient.for_reference(reference)
    _check_ok(client.request("GET", ""), f"registry {reference.host}")
