"""Talking to a Data Science Pipelines (KFP v2) server: submit runs, upload versions, schedule retraining.

Authentication as OpenShift routes want it: a bearer token from ``--token``, else ``KFP_TOKEN`` or
``KF_PIPELINES_TOKEN``, else the service-account token a workbench pod carries; a CA bundle or
``verify_ssl=False`` for routes with private certificates.
"""

import json
import logging
import os
import socket
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from pipeline import servers
from pipeline.parameters import convert_params
from pipeline.pipeline import PIPELINE_NAME, CompileOptions, compile_pipeline

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
TOKEN_ENVS = ("KFP_TOKEN", "KF_PIPELINES_TOKEN")
HEALTHZ = "/apis/v2beta1/healthz"
FINAL_STATES = {"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"}
DEFAULT_EXPERIMENT = PIPELINE_NAME


def resolve_token(flag: str | None, token_file: str = SERVICE_ACCOUNT_TOKEN) -> str | None:
    """The flag, else the environment, else the pod's service-account token, else none."""
    if flag:
        return flag
    for name in TOKEN_ENVS:
        if os.environ.get(name):
            return os.environ[name]
    if os.path.exists(token_file):
        with open(token_file) as f:
            return f.read().strip()
    return None


def six_field_cron(expression: str) -> str:
    """KFP's cron has six fields, seconds first; a five-field expression would silently mean another time."""
    fields = expression.split()
    if len(fields) == 6:
        return " ".join(fields)
    if len(fields) == 5:
        raise ValueError(f"cron {expression!r} has five fields, but KFP's cron has six, seconds first: sent as it "
                         f"is, it would run at other times than it says. The same schedule in KFP's form: "
                         f"'0 {' '.join(fields)}'")
    raise ValueError(f"cron {expression!r} must have six fields: second minute hour day-of-month month "
                     "day-of-week, e.g. '0 0 3 * * 1' for Mondays at 03:00")


@dataclass
class Server:
    host: str
    token: str | None = None
    ca_bundle: str | None = None
    verify_ssl: bool = True
    ui_host: str | None = None

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_bundle)
        if not self.verify_ssl:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        return context

    def reachable(self, timeout: float = 10) -> None:
        """Fails within about ``timeout`` unless a KFP API server answers its health check at the host
        (kfp.Client would retry for minutes, then fail with a long traceback)."""
        url = f"{self.host.rstrip('/')}{HEALTHZ}"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"} if self.token else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self._ssl_context()) as response:
                status, kind, body = response.status, response.headers.get("Content-Type", ""), response.read(65536)
        except urllib.error.HTTPError as error:
            status, kind, body = error.code, error.headers.get("Content-Type", ""), b""
        except (TimeoutError, socket.timeout):
            raise ValueError(f"the pipeline server at {self.host} did not answer within {timeout:g} s: is it the "
                             "route of the DSPA's API server (oc get route ds-pipeline-dspa)?") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ValueError(f"cannot reach the pipeline server at {self.host}: {reason}") from None
        if status in (401, 403):
            raise ValueError(f"the pipeline server at {self.host} refused the request ({status}): pass a token "
                             "(--token \"$(oc whoami -t)\" or KFP_TOKEN) that may use it")
        try:
            answer = json.loads(body) if status == 200 and "json" in kind else None
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ValueError(f"{self.host} is not a KFP API server: GET {HEALTHZ} answered {status} "
                             f"({kind or 'no content type'}); use the DSPA's route (oc get route ds-pipeline-dspa)")

    def client(self):
        import kfp

        self.reachable()
        return kfp.Client(host=self.host, existing_token=self.token, ssl_ca_cert=self.ca_bundle,
                          verify_ssl=self.verify_ssl, ui_host=self.ui_host)

    def run_link(self, run_id: str) -> str:
        return f"{(self.ui_host or self.host).rstrip('/')}/#/runs/details/{run_id}"


def _compiled(options: CompileOptions, workdir: str) -> str:
    return compile_pipeline(os.path.join(workdir, f"{PIPELINE_NAME}.yaml"), options)


def submit(server: Server, params: dict, experiment: str = DEFAULT_EXPERIMENT, run_name: str | None = None,
           options: CompileOptions = CompileOptions()) -> str:
    """Starts a run of the freshly compiled pipeline; returns its id."""
    params = convert_params(params)
    servers.check_run_parameters(params, options.target)
    client = server.client()
    with tempfile.TemporaryDirectory() as workdir:
        result = client.create_run_from_pipeline_package(
            _compiled(options, workdir), arguments=params, experiment_name=experiment,
            run_name=run_name or f"{PIPELINE_NAME} {time.strftime('%Y-%m-%d %H:%M:%S')}")
    log.info("run %s started: %s", result.run_id, server.run_link(result.run_id))
    return result.run_id


def wait(server: Server, run_id: str, poll_seconds: float = 10, timeout: float = 7 * 24 * 3600) -> str:
    """Follows a run to its end, printing each state change; returns the final state."""
    client, started, last = server.client(), time.monotonic(), None
    while time.monotonic() - started < timeout:
        state = str(client.get_run(run_id).state or "PENDING")
        if state != last:
            print(f"[{time.monotonic() - started:7.0f} s] run {run_id}: {state}", flush=True)
            last = state
        if state in FINAL_STATES:
            return state
        time.sleep(poll_seconds)
    raise TimeoutError(f"run {run_id} did not finish within {timeout} s")


def upload(server: Server, version: str | None = None, options: CompileOptions = CompileOptions()) -> tuple[str, str]:
    """Uploads the pipeline as a new version of the pipeline named yolo-kfp (created on first upload)."""
    client = server.client()
    version = version or time.strftime("v%Y%m%d-%H%M%S", time.gmtime())
    with tempfile.TemporaryDirectory() as workdir:
        path = _compiled(options, workdir)
        pipeline_id = client.get_pipeline_id(PIPELINE_NAME)
        if pipeline_id is None:
            pipeline = client.upload_pipeline(path, pipeline_name=PIPELINE_NAME,
                                              description="Open Images subset -> YOLOv5 by transfer learning")
            pipeline_id = pipeline.pipeline_id
        created = client.upload_pipeline_version(path, pipeline_version_name=version, pipeline_id=pipeline_id)
    log.info("uploaded %s version %s (%s)", PIPELINE_NAME, version, created.pipeline_version_id)
    return pipeline_id, created.pipeline_version_id


def latest_version(client, pipeline_id: str) -> str:
    versions = client.list_pipeline_versions(pipeline_id, sort_by="created_at desc", page_size=1).pipeline_versions
    if not versions:
        raise ValueError(f"pipeline {PIPELINE_NAME} has no version: run yolo-kfp upload first")
    return versions[0].pipeline_version_id


def schedule(server: Server, cron: str, name: str, params: dict, experiment: str = DEFAULT_EXPERIMENT,
             catch_up: bool = False, target: servers.ServerTarget = servers.server_target()) -> str:
    """A recurring run of the latest uploaded version (compiled for ``target``), one at a time; returns its id."""
    cron, params = six_field_cron(cron), convert_params(params)
    servers.check_run_parameters(params, target)
    client = server.client()
    pipeline_id = client.get_pipeline_id(PIPELINE_NAME)
    if pipeline_id is None:
        raise ValueError(f"no pipeline named {PIPELINE_NAME} on {server.host}: run yolo-kfp upload first")
    experiment_id = client.create_experiment(experiment).experiment_id
    recurring = client.create_recurring_run(
        experiment_id=experiment_id, job_name=name, cron_expression=cron, max_concurrency=1,
        no_catchup=not catch_up, params=params, pipeline_id=pipeline_id,
        version_id=latest_version(client, pipeline_id))
    log.info("scheduled %s (%s) at cron %r", name, recurring.recurring_run_id, cron)
    return recurring.recurring_run_id


def list_schedules(server: Server) -> list[dict]:
    runs = server.client().list_recurring_runs(page_size=100).recurring_runs or []
    return [{"name": r.display_name, "id": r.recurring_run_id, "status": r.status,
             "cron": r.trigger.cron_schedule.cron if r.trigger and r.trigger.cron_schedule else None} for r in runs]


def disable_schedule(server: Server, name: str) -> str:
    matches = [s for s in list_schedules(server) if s["name"] == name]
    if not matches:
        raise ValueError(f"no recurring run named {name!r}; yolo-kfp schedule --list shows them")
    client = server.client()
    for match in matches:
        client.disable_recurring_run(match["id"])
    return ", ".join(m["id"] for m in matches)




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


def find_pipeline_server(namespace: str) -> str:
    """The URL of the namespace's pipeline server, read from its DataSciencePipelinesApplication.

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
    return url
