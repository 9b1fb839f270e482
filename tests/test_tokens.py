"""Tokens stay with their host: no credential follows a redirect to another origin or to plain HTTP, a
token goes over plain HTTP only when asked, and no URL is repeated with the secret written into it.

A redirecting server sends every request on to a second server at another origin, which records the
headers it receives: the token must never arrive there.
"""

import contextlib
import io
import json
import logging

import pytest
from http_standin import Served, answer_json
from kfp_standin import API, KfpStandIn
from model_registry_standin import ModelRegistryStandIn

from yolo_kfp.cli import main
from yolo_kfp.cluster.client import Server, resolve_token
from yolo_kfp.infra.urls import CrossOriginRedirect, has_credentials, origin, redact
from yolo_kfp.params.service_hosts import service_url_problems
from yolo_kfp.pipeline.compile_options import CompileOptions

TOKEN = "tok-that-must-stay-home"
SECRET = "s3cret"


@contextlib.contextmanager
def redirecting(to: str, tls: tuple[str, str] | None = None, code: int = 302):
    """A server that answers every request with ``code`` to the same path at ``to`` (``{path}`` is filled in)."""
    def handle(request, method):
        request.rfile.read(int(request.headers.get("Content-Length") or 0))
        request.send_response(code)
        request.send_header("Location", to.replace("{path}", request.path) if "{path}" in to else to + request.path)
        request.send_header("Content-Length", "0")
        request.end_headers()

    served = Served(handle, ("GET", "POST"), tls)
    try:
        yield served
    finally:
        served.close()


def tokens_seen(requests) -> list[str]:
    return [value for r in requests for name, value in r.headers.items()
            if name in ("authorization", "cookie", "proxy-authorization")]


@pytest.fixture
def elsewhere():
    """The second server, at another origin than any redirecting one (its own port, the name localhost)."""
    with KfpStandIn(hostname="localhost") as standin:
        yield standin


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return str(path)


@pytest.fixture
def tls(test_ca):
    return test_ca["cert"], test_ca["key"]


# -- redirects ----------------------------------------------------------------------------------------

def test_the_health_check_keeps_its_token_through_a_redirect_at_the_same_origin():
    seen = []

    def handle(request, method):
        seen.append(request.headers.get("Authorization"))
        if "moved" not in request.path:
            request.send_response(302)
            request.send_header("Location", f"{request.path}?moved=1")
            request.send_header("Content-Length", "0")
            request.end_headers()
        else:
            answer_json(request, 200, {"multi_user": False})

    served = Served(handle, ("GET",))
    try:
        Server(served.url, token=TOKEN, allow_plain_http_token=True).reachable()
    finally:
        served.close()
    assert seen == [f"Bearer {TOKEN}"] * 2


@pytest.mark.parametrize("https", [False, True], ids=["http-to-another-origin", "https-to-http"])
def test_the_health_check_does_not_follow_a_redirect_elsewhere_with_the_token(elsewhere, test_ca, tls, https):
    with redirecting(elsewhere.url, tls if https else None) as redirector:
        server = Server(redirector.url, token=TOKEN, ca_bundle=test_ca["ca"], allow_plain_http_token=not https)
        with pytest.raises(CrossOriginRedirect, match="another origin"):
            server.reachable()
    assert elsewhere.requests == []


def test_submit_says_where_it_was_redirected_without_the_secrets(elsewhere, token_file, capsys, caplog):
    with redirecting(f"http://u:{SECRET}@localhost:{elsewhere.url.rsplit(':', 1)[1]}{{path}}") as redirector:
        assert main(["submit", "--host", redirector.url, "--token-file", token_file,
                     "--allow-plain-http-token"]) == 2
    captured = capsys.readouterr()
    assert f"{redirector.url}{API}/healthz redirected to http://***@localhost" in captured.err
    for text in (captured.out, captured.err, caplog.text):
        assert SECRET not in text and TOKEN not in text
    assert elsewhere.requests == []


@pytest.mark.parametrize("https", [False, True], ids=["http-to-another-origin", "https-to-http"])
def test_kfp_clients_calls_reach_another_origin_without_the_token(elsewhere, test_ca, tls, https):
    """kfp.Client's REST client (kfp_server_api on urllib3 2.x) strips the token itself on such a redirect."""
    import kfp

    with redirecting(elsewhere.url, tls if https else None) as redirector, contextlib.redirect_stdout(io.StringIO()):
        client = kfp.Client(host=redirector.url, existing_token=TOKEN, ssl_ca_cert=test_ca["ca"])
        client.create_experiment("exp-a")
        client.list_experiments()
    assert elsewhere.calls("GET", f"{API}/healthz") and elsewhere.calls("GET", f"{API}/experiments"), \
        "the redirects were followed"
    assert tokens_seen(elsewhere.requests) == []


def test_predict_does_not_follow_a_redirect_elsewhere_with_the_token(elsewhere):
    from yolo_kfp.cluster.predict import predict_remote

    with redirecting(elsewhere.url) as redirector:
        with pytest.raises(CrossOriginRedirect, match="another origin"):
            predict_remote(url=f"{redirector.url}/v2/models/yolo-kfp", images=[], names=["Car"], token=TOKEN,
                           allow_plain_http_token=True)
    assert elsewhere.requests == []


@pytest.mark.parametrize("https", [False, True], ids=["http-to-another-origin", "https-to-http"])
def test_the_model_registry_client_reaches_another_origin_without_the_token(test_ca, tls, https):
    """The official client (aiohttp) drops the token on a redirect to another origin."""
    from yolo_kfp.release import registry

    with ModelRegistryStandIn(hostname="localhost") as standin:
        with redirecting(standin.url, tls if https else None) as redirector:
            with pytest.raises(registry.RegistryError):  # the stand-in refuses a request without a token
                registry.connect(redirector.url, token=TOKEN, ca_bundle=test_ca["ca"], attempts=1)
        assert standin.requests, "the redirect was followed"
        assert tokens_seen(standin.requests) == []


def test_mlflow_reaches_another_origin_without_its_token(elsewhere, monkeypatch):
    """MLflow's client (requests) drops MLFLOW_TRACKING_TOKEN on a redirect to another host."""
    from mlflow.exceptions import MlflowException

    from yolo_kfp.model import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", TOKEN)
    with redirecting(elsewhere.url) as redirector:
        with pytest.raises(MlflowException):  # the second server is no MLflow
            tracking._client(redirector.url).get_experiment_by_name("exp")
    assert elsewhere.requests, "the redirect was followed"
    assert tokens_seen(elsewhere.requests) == []


# -- plain HTTP ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["submit"], ["upload"], ["schedule", "--list"]])
def test_a_token_is_not_sent_over_plain_http_unless_allowed(elsewhere, token_file, capsys, command):
    assert main([command[0], "--host", elsewhere.url, "--token-file", token_file, *command[1:]]) == 2
    error = capsys.readouterr().err
    assert f"refusing to send a token to {elsewhere.url} over plain HTTP" in error
    assert "--allow-plain-http-token" in error and len(error.strip().splitlines()) == 1
    assert elsewhere.requests == []


def test_predict_sends_no_token_over_plain_http_unless_allowed(elsewhere, tmp_path, capsys):
    image = tmp_path / "a.jpg"
    image.write_bytes(b"not looked at")
    assert main(["predict", "--url", f"{elsewhere.url}/v2/models/yolo-kfp", "--token", TOKEN, str(image)]) == 2
    assert "over plain HTTP" in capsys.readouterr().err
    assert elsewhere.requests == []


def test_without_a_token_plain_http_needs_no_flag(elsewhere, monkeypatch, tmp_path):
    for name in ("KFP_TOKEN", "KF_PIPELINES_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert main(["upload", "--host", elsewhere.url]) == 0
    assert elsewhere.calls("POST", f"{API}/pipelines/upload") and tokens_seen(elsewhere.requests) == []


# -- where the token comes from -----------------------------------------------------------------------

def test_submit_takes_the_token_from_a_file(elsewhere, token_file):
    assert main(["submit", "--host", elsewhere.url, "--token-file", token_file, "--allow-plain-http-token"]) == 0
    (created,) = elsewhere.calls("POST", f"{API}/runs")
    assert created.headers["authorization"] == f"Bearer {TOKEN}"


def test_a_token_file_comes_before_the_environment_and_must_hold_a_token(token_file, tmp_path, monkeypatch):
    monkeypatch.setenv("KFP_TOKEN", "env-token")
    assert resolve_token(None, given_file=token_file) == TOKEN
    assert resolve_token(None) == "env-token"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        resolve_token(None, given_file=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="cannot be read"):
        resolve_token(None, given_file=str(tmp_path / "missing"))


def test_token_and_token_file_are_one_or_the_other(token_file, capsys):
    assert main(["submit", "--host", "https://x.example.com", "--token", "t", "--token-file", token_file]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


# -- secrets written into URLs ------------------------------------------------------------------------

def test_redact_masks_user_info_wherever_a_url_is():
    assert redact(f"http://user:{SECRET}@host:5000/x") == "http://***@host:5000/x"
    assert redact("https://user@host/") == "https://***@host/"
    assert redact(f"failed: 'http://a:{SECRET}@h/p?q=x@y' and s3://k:{SECRET}@bucket/k") == \
        "failed: 'http://***@h/p?q=x@y' and s3://***@bucket/k"
    assert redact("https://host/path@not-user-info") == "https://host/path@not-user-info"
    assert has_credentials("http://u@h") and not has_credentials("http://h/u@x")
    for text, masked in [  # a password holding what ends a URL's user-info elsewhere, no scheme, a secret query key
            (f"http://u:pa/{SECRET}@h/p", "http://***@h/p"), (f"http://u:pa?{SECRET}@h", "http://***@h"),
            (f"http://u:pa#{SECRET}@h", "http://***@h"), (f"http://u:pa {SECRET}@h x", "http://***@h x"),
            (f"KEY:{SECRET}@bucket/m.pt", "***@bucket/m.pt"), (f"see user:{SECRET}@host", "see ***@host"),
            (f"https://h/p?token={SECRET}&x=1", "https://h/p?token=***&x=1"),
            (f"https://b.s3.example/m.pt?X-Amz-Signature={SECRET}#f", "https://b.s3.example/m.pt?X-Amz-Signature=***#f"),
            (f"https://h/?access_token={SECRET}", "https://h/?access_token=***")]:
        assert redact(text) == masked and has_credentials(text), text
    for plain in ("https://host:8080/x?page=2", "mail a@b.example", "s3://bucket/prefix", "lr0=0.01"):
        assert redact(plain) == plain and not has_credentials(plain), plain
    assert origin("https://Host") == origin("https://host:443") != origin("http://host:443")


@pytest.mark.parametrize("param, names", [
    (f"mlflow_tracking_uri=http://user:{SECRET}@mlflow.example.com", "--mlflow-connection"),
    (f"mlflow_tracking_uri=https://{SECRET}@mlflow.example.com", "--mlflow-connection"),
    (f"model_registry_url=http://user:{SECRET}@registry.example.com", "model_registry_url"),
    (f"base_model=s3://KEY:{SECRET}@bucket/m.pt", "--data-connection"),
    (f"publish_to=s3://KEY:{SECRET}@bucket/models", "--data-connection"),
    (f"extra_data=KEY:{SECRET}@bucket/labelled", "--data-connection"),
    (f"open_images_cache=s3://bucket/oi?X-Amz-Signature={SECRET}", "--data-connection"),
    (f'train_args={{"cfg": "http://u:{SECRET}@host/c.yaml"}}', "--data-connection"),
])
def test_a_parameter_with_credentials_in_its_url_is_refused_without_repeating_them(elsewhere, token_file, capsys,
                                                                                  caplog, param, names):
    caplog.set_level(logging.DEBUG)
    assert main(["submit", "--host", elsewhere.url, "--token-file", token_file, "--allow-plain-http-token",
                 "--param", param]) == 2
    captured = capsys.readouterr()
    assert names in captured.err
    for text in (captured.out, captured.err, caplog.text):
        assert SECRET not in text
    assert elsewhere.calls("POST", f"{API}/runs") == []


@pytest.mark.parametrize("args", [
    ["submit", "--host", f"http://u:{SECRET}@127.0.0.1:1", "--token", TOKEN],
    ["predict", "--url", f"http://u:{SECRET}@127.0.0.1:1/v2/models/m", "IMAGE"],
])
def test_a_host_with_credentials_in_its_url_is_named_without_them(args, tmp_path, capsys, caplog):
    image = tmp_path / "a.jpg"
    image.write_bytes(b"not looked at")
    assert main([str(image) if a == "IMAGE" else a for a in args]) == 2
    captured = capsys.readouterr()
    assert "http://***@127.0.0.1:1" in captured.err and "has credentials in it" in captured.err
    for text in (captured.out, captured.err, caplog.text):
        assert SECRET not in text and TOKEN not in text


def test_tracking_refuses_a_uri_with_credentials():
    from yolo_kfp.model import tracking

    with pytest.raises(ValueError) as refused:
        tracking.start_training_run(tracking_uri=f"http://u:{SECRET}@127.0.0.1:1", experiment="e", training="k",
                                    params={}, tags={})
    assert SECRET not in str(refused.value) and "--mlflow-connection" in str(refused.value)


def test_run_links_are_shown_without_credentials():
    server = Server("https://ds-pipeline-dspa.ns.svc:8443", verify_ssl=False, ui_host=f"https://u:{SECRET}@ui.example.com")
    assert server.run_link("r1") == "https://***@ui.example.com/#/runs/details/r1"
    server = Server("https://x.svc", verify_ssl=False, dashboard=f"https://u:{SECRET}@dashboard", namespace="ns")
    assert SECRET not in server.run_link("r1")


# -- where MLflow's credentials and the registry's token may go ---------------------------------------

def test_mlflow_and_registry_hosts_are_the_ones_compiled_in_https_or_an_in_cluster_service():
    hosts = ["mlflow.example.com", "mlflow.team.svc", "registry.team.svc.cluster.local"]
    allowed = ["https://mlflow.example.com", "http://mlflow.team.svc:5000", "https://mlflow.team.svc",
               "http://registry.team.svc.cluster.local:8080", "http://127.0.0.1:5000", "http://localhost",
               "http://[::1]:8080", ""]
    for url in allowed:
        assert service_url_problems({"mlflow_tracking_uri": url, "model_registry_url": url}, hosts) == [], url
    refused = {"https://mlflow.attacker.example": "not a host this pipeline was compiled for",
               "http://mlflow.other.svc:5000": "ask whoever compiles it to add --service-hosts mlflow.other.svc",
               "http://mlflow.example.com": "plain http:// to 'mlflow.example.com', which is not an in-cluster"}
    for url, message in refused.items():
        for name in ("mlflow_tracking_uri", "model_registry_url"):
            (problem,) = service_url_problems({name: url}, hosts)
            assert problem.startswith(f"{name} '{url}'") and message in problem, problem
    assert "none" in service_url_problems({"mlflow_tracking_uri": "https://mlflow.example.com"}, [])[0]
    for bad in (["https://mlflow.example.com"], ["mlflow.example.com:443"], ["MLflow.example.com"], "mlflow", [1]):
        with pytest.raises(ValueError, match="--service-hosts"):
            CompileOptions(service_hosts=bad)  # pyright: ignore[reportArgumentType]  (a wrong type on purpose)


def test_submit_refuses_a_host_outside_the_compile_options_before_creating_a_run(elsewhere, token_file, capsys):
    base = ["submit", "--host", elsewhere.url, "--token-file", token_file, "--allow-plain-http-token"]
    for param in ("mlflow_tracking_uri=http://mlflow.example.com", "model_registry_url=https://registry.example.com"):
        assert main([*base, "--param", param]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert "not a host this pipeline was compiled for (none)" in line and "--service-hosts" in line
    assert main([*base, "--service-hosts", '["mlflow.example.com"]', "--param",
                 "mlflow_tracking_uri=http://mlflow.example.com"]) == 2
    assert "plain http://" in capsys.readouterr().err
    assert elsewhere.calls("POST", f"{API}/runs") == []
    assert main([*base, "--service-hosts", '["mlflow.team.svc"]', "--param",
                 "mlflow_tracking_uri=http://mlflow.team.svc:5000"]) == 0
    (created,) = elsewhere.calls("POST", f"{API}/runs")
    assert "YOLO_KFP_SERVICE_HOSTS" in json.dumps(created.body), "the compiled hosts travel with the run"


def test_preflight_refuses_a_host_the_pipeline_was_not_compiled_for(local_kfp, capfd):
    """The run form's way in: kfp.local runs the pipeline's preflight with the environment it compiles."""
    from yolo_kfp.pipeline.pipeline import make_pipeline

    with pytest.raises(RuntimeError, match="preflight"):
        make_pipeline(CompileOptions(service_hosts=["mlflow.team.svc"]))(
            mlflow_tracking_uri="http://mlflow.team.svc:5000", model_registry_url="http://registry.elsewhere.svc")
    output = capfd.readouterr()
    text = output.out + output.err
    assert "bad parameter: model_registry_url 'http://registry.elsewhere.svc' names 'registry.elsewhere.svc'" in text
    assert "mlflow_tracking_uri" not in text.split("bad parameter:")[1].splitlines()[0], "the compiled host passes"
    assert "'download'" not in text, "nothing ran after it"
