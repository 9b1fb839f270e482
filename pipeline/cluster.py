"""Talking to a Data Science Pipelines (KFP v2) server: submit runs, upload versions, schedule retraining.

Authentication as OpenShift routes want it: a bearer token from ``--token`` or ``--token-file``, else
``KFP_TOKEN`` or ``KF_PIPELINES_TOKEN``, else the service-account token a workbench pod carries; it goes
over TLS only (plain HTTP when asked: ``allow_plain_http_token``) and never to another origin than the
host's (``components.core.urls``; kfp.Client's urllib3 drops it on such a redirect itself). TLS as a workbench
needs it: an explicit CA bundle, else the cluster's service CA for a ``*.svc`` host, else the cluster's
trusted bundle, else the system store (``pick_ca_bundle``); ``verify_ssl=False`` only when asked.
"""

import contextlib
import io
import json
import logging
import os
import re
import socket
import ssl
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from components.core.tls import SYSTEM_STORE, is_service_host, pick_ca_bundle
from components.core.urls import read_token_file, redact, refuse_credentials_in, refuse_plain_http_token, urlopen
from pipeline import servers
from pipeline.kfp_internals import create_recurring_run_on_latest_version
from pipeline.parameters import convert_params
from pipeline.pipeline import PIPELINE_NAME, CompileOptions, compile_pipeline

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
TOKEN_ENVS = ("KFP_TOKEN", "KF_PIPELINES_TOKEN")
HEALTHZ = "/apis/v2beta1/healthz"
FINAL_STATES = {"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"}
DEFAULT_EXPERIMENT = PIPELINE_NAME


def resolve_token(flag: str | None, token_file: str = SERVICE_ACCOUNT_TOKEN, given_file: str | None = None
                  ) -> str | None:
    """The flag, else the file given, else the environment, else the pod's service-account token, else none."""
    if flag:
        return flag
    if given_file:
        return read_token_file(given_file)
    for name in TOKEN_ENVS:
        if os.environ.get(name):
            return os.environ[name]
    if os.path.exists(token_file):
        with open(token_file) as f:
            return f.read().strip()
    return None


# KFP's scheduler understands these too; written out, the six-field form says exactly when they fire.
PREDEFINED_SCHEDULES = {"@hourly": "0 0 * * * *", "@daily": "0 0 0 * * *", "@midnight": "0 0 0 * * *",
                        "@weekly": "0 0 0 * * 0", "@monthly": "0 0 0 1 * *", "@yearly": "0 0 0 1 1 *",
                        "@annually": "0 0 0 1 1 *"}
TIME_ZONE = "UTC"  # the time zone of the scheduled-workflow controller of Data Science Pipelines


# KFP's scheduler parses cron with robfig/cron: each field a list of N, a-b, */n, a/n or a-b/n, where * or ?
# is the whole range; months and days of the week also by their English abbreviations, in any case.
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
CRON_FIELDS = (("second", 0, 59, {}), ("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day-of-month", 1, 31, {}),
               ("month", 1, 12, {name: i + 1 for i, name in enumerate(MONTHS)}),
               ("day-of-week", 0, 6, {name: i for i, name in enumerate(WEEKDAYS)}))


def cron_field_values(text: str, field: tuple) -> set[int]:
    """The values one cron field fires at; a ValueError saying what is wrong with it."""
    name, low, high, names = field
    values: set[int] = set()
    for part in text.split(","):
        span, slash, step = part.partition("/")
        if span in ("*", "?"):
            start, end = low, high
        else:
            first, dash, last = span.partition("-")
            start = names.get(first.lower(), int(first) if first.isdigit() else None)
            end = names.get(last.lower(), int(last) if last.isdigit() else None) if dash else (
                high if slash else start)
            if start is None or end is None:
                raise ValueError(f"{part!r} is not a number{', a name' if names else ''} or a range")
            if start > end:
                raise ValueError(f"{part!r} runs backwards")
            if start < low or end > high:
                raise ValueError(f"{part!r} is outside {low}-{high}")
        if slash and not (step.isdigit() and int(step) > 0):
            raise ValueError(f"{part!r} has step {step!r}, not a positive whole number")
        values.update(range(start, end + 1, int(step) if slash else 1))
    return values


def six_field_cron(expression: str) -> str:
    """KFP's cron has six fields, seconds first; a five-field expression would silently mean another time,
    a value outside a field's range is named here before the server is asked (its API answers with
    robfig/cron's error), and a seconds field with more than one value would start several runs a minute."""
    expression = PREDEFINED_SCHEDULES.get(expression.strip().lower(), expression)
    fields = expression.split()
    if len(fields) == 5:
        raise ValueError(f"cron {expression!r} has five fields, but KFP's cron has six, seconds first: sent as it "
                         f"is, it would run at other times than it says. The same schedule in KFP's form: "
                         f"'0 {' '.join(fields)}'")
    if len(fields) != 6:
        raise ValueError(f"cron {expression!r} must have six fields: second minute hour day-of-month month "
                         "day-of-week, e.g. '0 0 3 * * 1' for Mondays at 03:00 UTC, or one of "
                         f"{', '.join(PREDEFINED_SCHEDULES)}")
    fired = []
    for text, field in zip(fields, CRON_FIELDS):
        name, low, high, names = field
        try:
            fired.append(cron_field_values(text, field))
        except ValueError as error:
            named = f" or {list(names)[0].upper()}-{list(names)[-1].upper()}" if names else ""
            raise ValueError(f"cron {expression!r}: its {name} field {error}: use {low}-{high}{named}, "
                             "a range a-b, a list a,b, a step */n, or *") from None
    if len(fired[0]) > 1:
        raise ValueError(f"cron {expression!r} fires more than once a minute (its first field, {fields[0]!r}, is "
                         "the second): each firing starts a training run. Use one second, e.g. "
                         f"'0 {' '.join(fields[1:])}'")
    return " ".join(fields)


def check_schedule_name(name: str) -> None:
    """A recurring run's name as KFP takes it: not empty (the API refuses it), and one whose Kubernetes form
    (lower case, letters, digits and '-' kept: KFP's toSWFCRDResourceGeneratedName) does not start with '-',
    which the ScheduledWorkflow it names could not have. Surrounding spaces would make --delete NAME miss it."""
    if not name.strip() or name != name.strip() or not name.isprintable():
        raise ValueError(f"--name {name!r} is not a recurring run's name: give a name without surrounding spaces or "
                         "control characters, e.g. yolo-kfp-retraining")
    if re.sub(r"[^a-z0-9-]", "", name.lower()).startswith("-"):
        raise ValueError(f"--name {name!r} would name a Kubernetes ScheduledWorkflow starting with '-', which "
                         "Kubernetes refuses: start the name with a letter or digit")


@dataclass
class Server:
    host: str
    token: str | None = None
    ca_bundle: str | None = None  # explicit; else chosen by pick_ca_bundle
    verify_ssl: bool = True  # False only when asked (--insecure)
    ui_host: str | None = None  # a KFP UI for run links
    dashboard: str | None = None  # the OpenShift AI dashboard, for run links
    namespace: str | None = None  # the project, for the dashboard's run links
    allow_plain_http_token: bool = False  # send the token over plain HTTP (a test server on 127.0.0.1)

    def __post_init__(self):
        if not re.match(r"https?://[^/\s]", self.host):  # urllib would answer "unknown url type"
            address = self.host.rsplit("@", 1)[-1]  # what follows any credentials, which are never shown
            shown = self.host if address == self.host else f"***@{address}"
            raise ValueError(f"--host {shown!r} is not an http(s):// URL: give the pipeline server's route with its "
                             f"scheme, e.g. https://{address.split('://')[-1]}")
        refuse_credentials_in("the pipeline server's URL", self.host,
                              "pass the token by --token-file or KFP_TOKEN")
        refuse_plain_http_token(self.host, self.token, self.allow_plain_http_token)
        self.tried: list[str] = []
        if self.host.startswith("https://") and self.verify_ssl:
            self.ca_bundle, self.tried = pick_ca_bundle(self.host, self.ca_bundle)
            log.info("%s: %s", self.host, self.verification)

    @property
    def verification(self) -> str:
        """How the server's certificate is checked, in words."""
        if not self.host.startswith("https://"):
            return "plain HTTP, no TLS"
        if not self.verify_ssl:
            return "TLS not verified (--insecure)"
        return f"TLS verified with {self.ca_bundle or SYSTEM_STORE}"

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
            with urlopen(request, timeout=timeout, context=self._ssl_context()) as response:
                status, kind, body = response.status, response.headers.get("Content-Type", ""), response.read(65536)
        except urllib.error.HTTPError as error:
            status, kind, body = error.code, error.headers.get("Content-Type", ""), b""
        except (TimeoutError, socket.timeout):
            raise ValueError(f"the pipeline server at {self.host} did not answer within {timeout:g} s: is it the "
                             "route of the DSPA's API server (oc get route ds-pipeline-dspa)?") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise ValueError(f"the certificate of {self.host} is not signed by a CA in what was tried: "
                                 f"{', '.join(self.tried)} ({reason.verify_message}); pass --ca-bundle FILE (the CA "
                                 "that signed the route or service), or --insecure") from None
            raise ValueError(f"cannot reach the pipeline server at {self.host}: {redact(reason)}") from None
        if status in (401, 403):
            raise ValueError(f"the pipeline server at {self.host} refused the request ({status}): pass a token "
                             "(--token-file FILE or KFP_TOKEN) that may use it")
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
        """The run's page: on the KFP UI if one is named, else on the OpenShift AI dashboard, else on the host."""
        if not self.ui_host and self.dashboard and self.namespace:
            return redact(f"{self.dashboard.rstrip('/')}/pipelineRuns/{self.namespace}/runs/{run_id}")
        return redact(f"{(self.ui_host or self.host).rstrip('/')}/#/runs/details/{run_id}")


@contextlib.contextmanager
def own_links():
    """kfp.Client prints, or in a notebook displays, links of its own, built from the API host: from a
    workbench those are *.svc URLs that no browser opens. Here only ours (``Server.run_link``) are shown."""
    from kfp.client import auth

    is_ipython = auth.is_ipython
    auth.is_ipython = lambda: False
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        auth.is_ipython = is_ipython


def _compiled(options: CompileOptions, workdir: str) -> str:
    return compile_pipeline(os.path.join(workdir, f"{PIPELINE_NAME}.yaml"), options)


def submit(server: Server, params: dict, experiment: str = DEFAULT_EXPERIMENT, run_name: str | None = None,
           options: CompileOptions = CompileOptions()) -> str:
    """Starts a run of the freshly compiled pipeline; returns its id."""
    params = convert_params(params)
    servers.check_run_parameters(params, options.target)
    client = server.client()
    with tempfile.TemporaryDirectory() as workdir, own_links():
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
    with tempfile.TemporaryDirectory() as workdir, own_links():
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
             catch_up: bool = False, target: servers.ServerTarget = servers.server_target()) -> tuple[str, str]:
    """A recurring run of the pipeline, one run at a time; returns its id and which version it runs.

    From KFP 2.5 (kubeflow/pipelines#11560) a recurring run given the pipeline but no version runs the
    pipeline's latest version at each trigger, so a later ``upload`` is picked up; older servers need a
    version, and the schedule stays on the one that is latest now."""
    cron, params = six_field_cron(cron), convert_params(params)
    check_schedule_name(name)
    servers.check_run_parameters(params, target)
    client = server.client()
    if any(s["name"] == name for s in list_schedules(server)):
        raise ValueError(f"a recurring run named {name!r} exists: pick another --name, or --delete {name} first")
    pipeline_id = client.get_pipeline_id(PIPELINE_NAME)
    if pipeline_id is None:
        raise ValueError(f"no pipeline named {PIPELINE_NAME} on {server.host}: run yolo-kfp upload first")
    version_id = latest_version(client, pipeline_id)
    with own_links():
        experiment_id = client.create_experiment(experiment).experiment_id
        if servers.follows_latest_version(target):
            recurring = create_recurring_run_on_latest_version(client, name=name, experiment_id=experiment_id,
                                                               pipeline_id=pipeline_id, cron=cron, params=params,
                                                               catch_up=catch_up)
            version = "the latest version at each run"
        else:
            log.warning("%s cannot follow the latest version (KFP 2.5 can): this schedule stays on version %s; "
                        "schedule again after the next upload", target.name, version_id)
            recurring = client.create_recurring_run(
                experiment_id=experiment_id, job_name=name, cron_expression=cron, max_concurrency=1,
                no_catchup=not catch_up, params=params, pipeline_id=pipeline_id, version_id=version_id)
            version = f"version {version_id}"
    log.info("scheduled %s (%s) at cron %r %s", name, recurring.recurring_run_id, cron, TIME_ZONE)
    return recurring.recurring_run_id, version


def list_schedules(server: Server) -> list[dict]:
    runs = server.client().list_recurring_runs(page_size=100).recurring_runs or []
    return [{"name": r.display_name, "id": r.recurring_run_id, "status": r.status,
             "cron": r.trigger.cron_schedule.cron if r.trigger and r.trigger.cron_schedule else None} for r in runs]


SCHEDULE_ACTIONS = {"enable": "enable_recurring_run", "disable": "disable_recurring_run",
                    "delete": "delete_recurring_run"}


def change_schedule(server: Server, name: str, action: str) -> str:
    """Enables, disables or deletes the recurring run named ``name``; returns its id."""
    matches = [s for s in list_schedules(server) if s["name"] == name]
    if not matches:
        raise ValueError(f"no recurring run named {name!r}; yolo-kfp schedule --list shows them")
    client = server.client()
    for match in matches:
        getattr(client, SCHEDULE_ACTIONS[action])(match["id"])
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
