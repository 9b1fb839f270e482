"""S3 for every step that talks to it, configured like an OpenShift AI data connection.

A data connection is a Secret with ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_S3_ENDPOINT``,
``AWS_DEFAULT_REGION`` and ``AWS_S3_BUCKET``; the pipeline hands its keys to a step as environment
variables. Calls retry with backoff, time out, use multipart transfers for large files, and fail with
a ``StorageError`` that names the operation, endpoint, bucket and key — never a secret.
"""

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

ENV_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_S3_ENDPOINT", "AWS_DEFAULT_REGION", "AWS_S3_BUCKET")
MULTIPART_THRESHOLD = 64 << 20
NOT_FOUND = ("404", "NoSuchKey", "NotFound")
# A conditional write lost to another writer (412), or raced one on AWS (409).
CONFLICT = ("412", "PreconditionFailed", "409", "ConditionalRequestConflict")
NOT_IMPLEMENTED = ("501", "NotImplemented")  # a server without conditional writes
_RAISE = object()


class StorageError(RuntimeError):
    """An S3 call that failed, with what was asked of which endpoint."""


@dataclass(frozen=True)
class S3Url:
    bucket: str
    key: str = ""

    @classmethod
    def parse(cls, url: str) -> "S3Url":
        if not url.startswith("s3://") or not url[5:].split("/", 1)[0]:
            raise ValueError(f"not an S3 URL (s3://bucket/key): {url!r}")
        bucket, _, key = url[5:].partition("/")
        return cls(bucket, key)

    def join(self, *parts: str) -> "S3Url":
        return S3Url(self.bucket, "/".join(p.strip("/") for p in (self.key, *parts) if p.strip("/")))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def is_s3(url: str) -> bool:
    return url.startswith("s3://")


@dataclass
class Storage:
    """An S3 client with the project's timeouts, retries and error messages."""

    endpoint: str = ""
    region: str = "us-east-1"
    access_key: str = ""
    secret_key: str = field(default="", repr=False)
    connect_timeout: float = 5
    read_timeout: float = 60
    max_attempts: int = 4

    @classmethod
    def from_env(cls, env=None) -> "Storage":
        env = os.environ if env is None else env
        return cls(endpoint=env.get("AWS_S3_ENDPOINT", ""), region=env.get("AWS_DEFAULT_REGION") or "us-east-1",
                   access_key=env.get("AWS_ACCESS_KEY_ID", ""), secret_key=env.get("AWS_SECRET_ACCESS_KEY", ""))

    @property
    def where(self) -> str:
        return self.endpoint or "AWS S3"

    @cached_property
    def client(self):
        import boto3
        from botocore.config import Config

        config = Config(signature_version="s3v4", connect_timeout=self.connect_timeout,
                        read_timeout=self.read_timeout, retries={"max_attempts": self.max_attempts, "mode": "standard"},
                        s3={"addressing_style": "path"})
        credentials = {"aws_access_key_id": self.access_key, "aws_secret_access_key": self.secret_key} \
            if self.access_key else {}
        return boto3.client("s3", endpoint_url=self.endpoint or None, region_name=self.region, config=config,
                            **credentials)

    def _call(self, operation: str, url: S3Url, func: Callable[[], Any], if_missing: Any = _RAISE,
              answers: dict[str, Any] | None = None) -> Any:
        """Runs one S3 call (boto3's answers are untyped dicts); returns ``if_missing`` instead of failing where
        the object does not exist, and ``answers[code]`` where the server answers with an error code listed there."""
        from botocore.exceptions import BotoCoreError, ClientError

        answers = answers or {}
        try:
            return func()
        except ClientError as error:
            info = error.response.get("Error", {})
            code = str(info.get("Code") or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
            if code in NOT_FOUND and if_missing is not _RAISE:
                return if_missing
            if code in answers:
                return answers[code]
            reason = f"{code}: {info.get('Message') or _meaning(code)}"
        except (BotoCoreError, OSError) as error:
            reason = f"{type(error).__name__}: {error}"
        raise StorageError(f"S3 {operation} {url} at {self.where} failed: {reason}") from None

    def upload_file(self, path: str, url: S3Url) -> None:
        from boto3.s3.transfer import TransferConfig

        transfer = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_THRESHOLD)
        self._call("upload to", url, lambda: self.client.upload_file(path, url.bucket, url.key, Config=transfer))

    def download_file(self, url: S3Url, path: str) -> str:
        from boto3.s3.transfer import TransferConfig

        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        transfer = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_THRESHOLD)
        partial = f"{path}.partial"
        self._call("download of", url, lambda: self.client.download_file(url.bucket, url.key, partial,
                                                                           Config=transfer))
        os.replace(partial, path)  # never leave a half file under the real name
        return path

    def put_bytes(self, url: S3Url, data: bytes) -> None:
        self._call("upload to", url, lambda: self.client.put_object(Bucket=url.bucket, Key=url.key, Body=data))

    def get_bytes(self, url: S3Url) -> bytes:
        return self._call("download of", url,
                          lambda: self.client.get_object(Bucket=url.bucket, Key=url.key)["Body"].read())

    def get_tagged(self, url: S3Url) -> tuple[bytes, str] | None:
        """An object's content and ETag (what ``put_if`` compares with), or None where there is none."""
        answer = self._call("download of", url, lambda: self.client.get_object(Bucket=url.bucket, Key=url.key),
                            if_missing=None)
        return None if answer is None else (answer["Body"].read(), answer["ETag"])

    def put_if(self, url: S3Url, data: bytes, etag: str | None) -> bool:
        """Writes ``data`` only while the object is the one ``etag`` names (None: while there is none), with
        the server's conditional write; False where another writer came first. A server without
        conditional writes takes it as a plain write: the caller compared just before."""
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        answers = {**dict.fromkeys(CONFLICT, False), **dict.fromkeys(NOT_IMPLEMENTED, None)}
        written = self._call("conditional upload to", url, lambda: self.client.put_object(
            Bucket=url.bucket, Key=url.key, Body=data, **condition), answers=answers)
        if written is None:
            self.put_bytes(url, data)
        return written is not False

    def exists(self, url: S3Url) -> bool:
        head = self._call("check of", url, lambda: self.client.head_object(Bucket=url.bucket, Key=url.key),
                          if_missing=None)
        return head is not None

    def list_objects(self, prefix: S3Url) -> list[dict]:
        """Every object under ``prefix``: key, size and ETag."""
        def pages():
            paginator = self.client.get_paginator("list_objects_v2")
            key = prefix.key.rstrip("/") + "/" if prefix.key else ""
            return [obj for page in paginator.paginate(Bucket=prefix.bucket, Prefix=key)
                    for obj in page.get("Contents", [])]

        objects = self._call("listing of", prefix, pages)
        return [{"key": o["Key"], "size": o["Size"], "etag": o["ETag"]} for o in objects]

    def delete(self, url: S3Url) -> None:
        self._call("delete of", url, lambda: self.client.delete_object(Bucket=url.bucket, Key=url.key))

    def check_writable(self, prefix: S3Url) -> None:
        """Writes and deletes a probe object under ``prefix``: the surest test of write access."""
        probe = prefix.join(".yolo-kfp-write-check")
        self.put_bytes(probe, b"ok")
        self.delete(probe)

    def upload_dir(self, local_dir: str, prefix: S3Url, threads: int = 8) -> list[str]:
        names = sorted(os.path.relpath(os.path.join(root, f), local_dir)
                       for root, _, files in os.walk(local_dir) for f in files)
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda n: self.upload_file(os.path.join(local_dir, n), prefix.join(n)), names))
        return names

    def download_prefix(self, prefix: S3Url, local_dir: str, threads: int = 8) -> list[str]:
        base = prefix.key.rstrip("/") + "/" if prefix.key else ""
        names = [o["key"][len(base):] for o in self.list_objects(prefix) if not o["key"].endswith("/")]
        for name in names:
            if os.path.isabs(name) or ".." in name.split("/"):
                raise StorageError(f"refusing object {prefix.join(name)}: its name leaves {local_dir}")
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda n: self.download_file(prefix.join(n), os.path.join(local_dir, n)), names))
        return names

    def fingerprint(self, prefix: S3Url) -> str:
        """Changes whenever an object under ``prefix`` is added, removed or rewritten."""
        digest = hashlib.sha256()
        for obj in sorted(self.list_objects(prefix), key=lambda o: o["key"]):
            digest.update(f"{obj['key']}\0{obj['size']}\0{obj['etag']}\n".encode())
        return digest.hexdigest()


def _meaning(code) -> str:
    return {"403": "access denied (check the data connection's keys)", "404": "not found"}.get(str(code), "")


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_checksum(path: str, sha256: str, name: str) -> None:
    """Refuses a file whose SHA-256 is not ``sha256`` (no check when it is empty)."""
    if sha256:
        actual = sha256_of(path)
        if actual != sha256.lower():
            raise ValueError(f"{name} has SHA-256 {actual}, not the expected {sha256}: refusing it")
