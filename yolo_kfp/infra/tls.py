"""Which CA bundle verifies a server inside an OpenShift AI cluster: a pipeline server from a workbench,
a model registry from a pipeline step.

Explicit, else the cluster's service CA for a ``*.svc`` host (it signs services' certificates), else the
cluster's trusted bundle (odh-trusted-ca-bundle, mounted where the platform is configured with one),
else the system's store. The environment names other paths for the two cluster files, for tests.
"""

import os
import urllib.parse

SERVICE_CA = ("YOLO_KFP_SERVICE_CA", "/var/run/secrets/kubernetes.io/serviceaccount/service-ca.crt")
TRUSTED_CA = ("YOLO_KFP_TRUSTED_CA", "/etc/pki/tls/custom-certs/ca-bundle.crt")
SYSTEM_STORE = "the system's CA store"


def is_service_host(host: str) -> bool:
    hostname = urllib.parse.urlparse(host).hostname or ""
    return hostname.endswith(".svc") or ".svc." in hostname


def pick_ca_bundle(host: str, explicit: str | None) -> tuple[str | None, list[str]]:
    """The CA bundle to verify ``host`` (a URL) with, None for the system's store; and what was tried,
    for the error that names it."""
    if explicit:
        return explicit, [explicit]
    tried = []
    candidates = ([os.environ.get(*SERVICE_CA)] if is_service_host(host) else []) + [os.environ.get(*TRUSTED_CA)]
    for path in candidates:
        if os.path.exists(path):
            return path, [*tried, path]
        tried.append(f"{path} (missing)")
    return None, [*tried, SYSTEM_STORE]
