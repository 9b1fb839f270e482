"""Where a run may send credentials: the MLflow server (the MLflow connection's token or password) and the Model
Registry (the pod's service-account token). Whoever compiles the pipeline names those hosts (the compile option
``service_hosts``); whoever starts a run picks among them, or loopback, which never leaves the pod. Plain
``http://`` goes only to an in-cluster service (``*.svc``) named there, or to loopback: anywhere else a token
would cross the network unencrypted.

The compiled pipeline hands the list to its steps in ``SERVICE_HOSTS_ENV``; preflight refuses a run whose
``mlflow_tracking_uri`` or ``model_registry_url`` names another host before any work, and ``submit`` before the
run is created.
"""

import ipaddress
import os
import re
import urllib.parse
from collections.abc import Sequence

from yolo_kfp.infra.urls import redact, shown

SERVICE_HOSTS_ENV = "YOLO_KFP_SERVICE_HOSTS"  # the compile option's hosts, comma-separated
# The run parameters whose host is sent credentials, and what it is sent.
CREDENTIALS_SENT = {"mlflow_tracking_uri": "MLflow's credentials (--mlflow-connection)",
                    "model_registry_url": "the pod's service-account token"}
HOST_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*",
                       flags=re.ASCII)
IN_CLUSTER = re.compile(r".+\.svc(\.cluster\.local)?", flags=re.ASCII)  # a Service's DNS name


def service_host_problems(hosts: object) -> list[str]:
    """What is wrong with the compile option's value: a list of lowercase DNS names (no scheme, port or path)."""
    if not isinstance(hosts, list) or not all(isinstance(host, str) for host in hosts):
        return [f"--service-hosts must be a JSON list of host names, not {hosts!r}"]
    return [f"--service-hosts: {redact(host)[:100]!r} is not a host name: give names alone, lowercase, without "
            "scheme, port or path, e.g. mlflow.example.com or model-registry.rhoai-model-registries.svc"
            for host in hosts if not HOST_NAME.fullmatch(host)]


def compiled_service_hosts() -> tuple[str, ...]:
    """The hosts the pipeline this step belongs to was compiled with (none where it was compiled with none)."""
    return tuple(host for host in os.environ.get(SERVICE_HOSTS_ENV, "").split(",") if host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _scheme_and_host(url) -> tuple[str, str]:
    """A URL's scheme and lowercased host; empty for no URL, or one that does not parse (its own rule,
    ``validation.mlflow_uri_problems`` or ``registry_url_problems``, refuses that)."""
    try:
        parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
        return (parts.scheme, parts.hostname or "") if parts else ("", "")
    except ValueError:
        return "", ""


def named_hosts(p: dict) -> list[str]:
    """The hosts ``p``'s MLflow and registry URLs name: what ``run-local``, which compiles the pipeline for the
    run it starts, allows."""
    hosts = (_scheme_and_host(p.get(name))[1] for name in CREDENTIALS_SENT)
    return [host for host in hosts if host]


def service_url_problems(p: dict, hosts: Sequence[str]) -> list[str]:
    """The run parameters in ``p`` that would send credentials to a host outside ``hosts`` and loopback, or over
    plain HTTP to one that is not an in-cluster service."""
    problems = []
    for name, sent in CREDENTIALS_SENT.items():
        scheme, host = _scheme_and_host(p.get(name))
        if not host or is_loopback(host):
            continue
        named = f"{name} {shown(p[name])}"
        if host not in hosts:
            problems.append(f"{named} names {host!r}, not a host this pipeline was compiled for ("
                            f"{', '.join(hosts) or 'none'}): {sent} go only there; ask whoever compiles it to add "
                            f"--service-hosts {host}")
        elif scheme == "http" and not IN_CLUSTER.fullmatch(host):
            problems.append(f"{named} is plain http:// to {host!r}, which is not an in-cluster service (*.svc): "
                            f"{sent} would cross the network unencrypted; use https://")
    return problems
