"""From an OpenShift AI workbench: its namespace, the namespace's pipeline server (read from its
DataSciencePipelinesApplication) and run links that open the dashboard's run page."""

import os
import re

from yolo_kfp.cluster.client import SERVICE_ACCOUNT_TOKEN, Server, resolve_token
from yolo_kfp.infra.tls import is_service_host

DSPA = ("datasciencepipelinesapplications.opendatahub.io", "v1", "datasciencepipelinesapplications")
NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def current_namespace(default: str = "default") -> str:
    """The workbench's namespace (from its pod), else the kubeconfig's, else ``default``."""
    if os.path.exists(NAMESPACE_FILE):
        with open(NAMESPACE_FILE) as f:
            return f.read().strip()
    try:
        from kubernetes import config

        return config.list_kube_config_contexts()[1]["context"].get("namespace", default)
    except Exception:  # no kubeconfig: nothing better to go on
        return default


def find_pipeline_server(namespace: str) -> tuple[str, str | None]:
    """The URL of the namespace's pipeline server, read from its DataSciencePipelinesApplication, and its
    route if it has one.

    Inside the cluster the API server's service is preferred (no route, no OAuth proxy hop); outside,
    its route.
    """
    from kubernetes import client, config

    in_cluster = os.path.exists(SERVICE_ACCOUNT_TOKEN)
    if in_cluster:
        config.load_incluster_config()
    else:
        config.load_kube_config()
    items = client.CustomObjectsApi().list_namespaced_custom_object(DSPA[0], DSPA[1], namespace, DSPA[2])["items"]
    if not items:
        raise ValueError(f"no DataSciencePipelinesApplication in namespace {namespace!r}: apply manifests/ first")
    api_server = items[0].get("status", {}).get("components", {}).get("apiServer", {})
    url = api_server.get("url") if in_cluster else api_server.get("externalUrl")
    url = url or api_server.get("externalUrl") or api_server.get("url")
    if not url:
        raise ValueError(f"pipeline server {items[0]['metadata']['name']!r} in {namespace!r} is not ready yet")
    route = api_server.get("externalUrl")
    return url, None if not route or is_service_host(route) else route


def dashboard_url() -> str | None:
    """The OpenShift AI dashboard that started this workbench: its Jupyter arguments name it (hub_host)."""
    match = re.search(r'"hub_host"\s*:\s*"([^"]+)"', os.environ.get("NOTEBOOK_ARGS", ""))
    return match[1] if match else None


def workbench_server(namespace: str, host: str = "", allow_plain_http_token: bool = False) -> Server:
    """The namespace's pipeline server as a workbench reaches it: ``host`` or the one its DSPA names, the
    workbench's token, and run links to the dashboard's run page (else the DSPA's route) that a browser
    outside the cluster opens."""
    found, route = find_pipeline_server(namespace)
    dashboard = dashboard_url()
    return Server(host=host or found, token=resolve_token(None), ui_host=None if dashboard else route,
                  dashboard=dashboard, namespace=namespace, allow_plain_http_token=allow_plain_http_token)
