"""Talking to a Data Science Pipelines (KFP v2) server: submit runs, follow them, upload versions (recurring
runs: ``schedules``; the server a workbench finds: ``workbench``).

Authentication as OpenShift routes want it: a bearer token from ``--token`` or ``--token-file``, else
``KFP_TOKEN`` or ``KF_PIPELINES_TOKEN``, else the service-account token a workbench pod carries; it goes
over TLS only (plain HTTP when asked: ``allow_plain_http_token``) and never to another origin than the
host's (``yolo_kfp.infra.urls``; kfp.Client's urllib3 drops it on such a redirect itself). TLS as a workbench
needs it: an explicit CA bundle, else the cluster's service CA for a ``*.svc`` host, else the cluster's
trusted bundle, else the system store (``pick_ca_bundle``); ``verify_ssl=False`` only when asked.
"""

import contextlib
import io
import json
import logging
import os
import re
import ssl
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass

from yolo_kfp.infra.tls import SYSTEM_STORE, pick_ca_bundle
from yolo_kfp.infra.urls import (
    checked_token,
    read_token_file,
    redact,
    refuse_credentials_in,
    refuse_plain_http_token,
    urlopen,
)
from yolo_kfp.params.run_values import convert_params
from yolo_kfp.params.service_hosts import service_url_problems
from yolo_kfp.params.validation import check
from yolo_kfp.pipeline import servers
from yolo_kfp.pipeline.compile_options import DEFAULT_OPTIONS, CompileOptions
from yolo_kfp.pipeline.pipeline import PIPELINE_NAME, compile_pipeline

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
        return checked_token(flag, "--token")
    if given_file:
        return read_token_file(given_file)
    for name in TOKEN_ENVS:
        if os.environ.get(name):
            return checked_token(os.environ[name].strip(), name)
    if os.path.exists(token_file):
        with open(token_file) as f:
            return f.read().strip()
    return None


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
        except TimeoutError:
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
        with warnings.catch_warnings():
            # said on every Client(), whatever the server: every server this targets runs KFP 2 (pipeline/servers.py)
            warnings.filterwarnings("ignore", "This client only works with Kubeflow Pipeline", FutureWarning)
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


def answered(value: str | None, what: str) -> str:
    """An id that the server's answer carries (kfp_server_api's models declare every field optional)."""
    if value is None:
        raise RuntimeError(f"the pipeline server answered without {what}, which its API always gives: is --host "
                           "the pipeline server's route (oc get route ds-pipeline-dspa)?")
    return value


def _compiled(options: CompileOptions, workdir: str) -> str:
    return compile_pipeline(os.path.join(workdir, f"{PIPELINE_NAME}.yaml"), options)


def submit(server: Server, params: dict, experiment: str = DEFAULT_EXPERIMENT, run_name: str | None = None,
           options: CompileOptions = DEFAULT_OPTIONS) -> str:
    """Starts a run of the freshly compiled pipeline; returns its id."""
    params = convert_params(params)
    servers.check_run_parameters(params, options.target)
    check(service_url_problems(params, options.service_hosts))
    client = server.client()
    with tempfile.TemporaryDirectory() as workdir, own_links():
        result = client.create_run_from_pipeline_package(
            _compiled(options, workdir), arguments=params, experiment_name=experiment,
            run_name=run_name or f"{PIPELINE_NAME} {time.strftime('%Y-%m-%d %H:%M:%S')}")
    run_id = answered(result.run_id, "the run's id")
    log.info("run %s started: %s", run_id, server.run_link(run_id))
    return run_id


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


def upload(server: Server, version: str | None = None, options: CompileOptions = DEFAULT_OPTIONS) -> tuple[str, str]:
    """Uploads the pipeline as a new version of the pipeline named yolo-kfp (created on first upload)."""
    client = server.client()
    version = version or time.strftime("v%Y%m%d-%H%M%S", time.gmtime())
    with tempfile.TemporaryDirectory() as workdir, own_links():
        path = _compiled(options, workdir)
        pipeline_id = client.get_pipeline_id(PIPELINE_NAME)
        if pipeline_id is None:
            pipeline = client.upload_pipeline(path, pipeline_name=PIPELINE_NAME,
                                              description="Open Images subset -> YOLOv5 by transfer learning")
            pipeline_id = answered(pipeline.pipeline_id, "the pipeline's id")
        created = client.upload_pipeline_version(path, pipeline_version_name=version, pipeline_id=pipeline_id)
    version_id = answered(created.pipeline_version_id, "the version's id")
    log.info("uploaded %s version %s (%s)", PIPELINE_NAME, version, version_id)
    return pipeline_id, version_id
