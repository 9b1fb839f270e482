"""An image reference as the OCI distribution grammar spells it, with its registry written out (a bare name
would be pulled from docker.io): ``host[:port]/namespace/name[:tag][@sha256:<digest>]``. The one grammar of the
project's images (compile options), the ModelCar base and the repository a model is pushed to.
"""

import re
from dataclasses import dataclass

from yolo_kfp.infra.urls import shown

HOST_PART = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
REGISTRY = rf"(?:localhost(?::\d+)?|{HOST_PART}(?:\.{HOST_PART})+(?::\d+)?|{HOST_PART}:\d+)"
PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
TAG = r"\w[\w.-]{0,127}"
IMAGE_REFERENCE = re.compile(
    rf"(?P<host>{REGISTRY})/(?P<path>{PATH_PART}(?:/{PATH_PART})*)(?::(?P<tag>{TAG}))?"
    rf"(?:@(?P<digest>sha256:[0-9a-f]{{64}}))?", flags=re.ASCII)
# Where images are moved to (--image-registry): a registry host with an optional namespace path.
REGISTRY_REFERENCE = re.compile(rf"{REGISTRY}(?:/{PATH_PART})*/?", flags=re.ASCII)


@dataclass(frozen=True)
class Reference:
    """A parsed image reference; ``repository`` is host/path."""

    host: str
    path: str
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, text: str, what: str) -> "Reference":
        found = IMAGE_REFERENCE.fullmatch(text)
        if not found:
            raise ValueError(f"{what} {shown(text)} is not an image reference: give host[:port]/namespace/name in "
                             "lower case, the host with a dot or a port, e.g. quay.io/team/yolo-kfp-model")
        return cls(found["host"], found["path"], found["tag"] or "", found["digest"] or "")

    @property
    def repository(self) -> str:
        return f"{self.host}/{self.path}"

    def __str__(self) -> str:
        return self.repository + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def repository_problems(name: str, value: str) -> list[str]:
    """What is wrong with ``value`` as a repository to push to (no tag, no digest: the publish names them)."""
    try:
        reference = Reference.parse(value, name)
    except ValueError as problem:
        return [str(problem)]
    if reference.tag or reference.digest:
        return [f"{name} {shown(value)} names a tag or digest: give the repository alone ({reference.repository}); the "
                "publish tags each version"]
    return []
