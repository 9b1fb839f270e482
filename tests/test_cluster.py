"""submit, upload and schedule against a stand-in of the KFP v2beta1 API: what the server receives."""


import pytest
import yaml
from kfp_standin import API, KfpStandIn

from yolo_kfp.cli import main
from yolo_kfp.cluster.client import resolve_token
from yolo_kfp.cluster.schedules import six_field_cron


@pytest.fixture
def server():
    with KfpStandIn() as standin:
        yield standin


def run_cli(*args):
    """The command, allowed to send its token to a stand-in's plain-HTTP address on 127.0.0.1."""
    plain_http = any(str(arg).startswith("http://") for arg in args)
    return main([args[0], *(["--allow-plain-http-token"] if plain_http else []), *args[1:]])


def test_submit_sends_typed_parameters_the_spec_and_the_token(server, capsys):
    assert run_cli("submit", "--host", server.url, "--token", "tok-123", "--experiment", "exp-a",
                   "--param", "epochs=3", "--param", 'classes=["Car"]', "--param", "lr0=0.002",
                   "--param", "cache=disk", "--param", "include_group_of=false") == 0
    (created,) = server.calls("POST", f"{API}/runs")
    assert created.headers["authorization"] == "Bearer tok-123"
    assert created.body["runtime_config"]["parameters"] == {"epochs": 3, "classes": ["Car"], "lr0": 0.002,
                                                            "cache": "disk", "include_group_of": False}
    spec = created.body["pipeline_spec"]
    pipeline_spec, platform = spec["pipeline_spec"], spec["platform_spec"]
    resources = pipeline_spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    train = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert train["emptyDirMounts"][0]["mountPath"] == "/dev/shm" and train["emptyDirMounts"][0]["medium"] == "Memory"
    experiment = server.experiments[created.body["experiment_id"]]
    assert experiment["display_name"] == "exp-a"
    assert "/#/runs/details/" in capsys.readouterr().out


def test_submit_wait_follows_the_run_and_fails_when_it_fails(server, capsys):
    assert run_cli("submit", "--host", server.url, "--token", "t", "--wait", "--poll-seconds", "1") == 0
    out = capsys.readouterr().out
    assert "RUNNING" in out and "ended SUCCEEDED" in out
    server.final_state = "FAILED"
    assert run_cli("submit", "--host", server.url, "--token", "t", "--wait", "--poll-seconds", "1") == 1
    assert "ended FAILED" in capsys.readouterr().out


def test_token_comes_from_flag_then_environment_then_service_account(tmp_path, monkeypatch):
    token_file = tmp_path / "token"
    token_file.write_text("sa-token\n")
    monkeypatch.delenv("KFP_TOKEN", raising=False)
    monkeypatch.delenv("KF_PIPELINES_TOKEN", raising=False)
    assert resolve_token(None, str(token_file)) == "sa-token"
    monkeypatch.setenv("KF_PIPELINES_TOKEN", "env-2")
    assert resolve_token(None, str(token_file)) == "env-2"
    monkeypatch.setenv("KFP_TOKEN", "env-1")
    assert resolve_token(None, str(token_file)) == "env-1"
    assert resolve_token("flag", str(token_file)) == "flag"
    assert resolve_token(None, str(tmp_path / "none")) == "env-1"


def test_upload_creates_the_pipeline_then_adds_versions(server):
    assert run_cli("upload", "--host", server.url, "--token", "t", "--version", "v1") == 0
    assert run_cli("upload", "--host", server.url, "--token", "t", "--version", "v2", "--shm-size", "16Gi") == 0
    (first,) = server.calls("POST", f"{API}/pipelines/upload")
    assert first.query["name"] == "yolo-kfp" and first.headers["authorization"] == "Bearer t"
    uploads = server.calls("POST", f"{API}/pipelines/upload_version")
    assert [u.query["name"] for u in uploads] == ["v1", "v2"]
    (pipeline_id,) = server.pipelines
    assert all(u.query["pipelineid"] == pipeline_id for u in uploads)
    spec, platform = yaml.safe_load_all(uploads[-1].body["uploadfile"])
    mount = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]["emptyDirMounts"][0]
    assert mount["sizeLimit"] == "16Gi"


def test_schedule_follows_the_latest_version_with_six_field_cron(server, capsys):
    run_cli("upload", "--host", server.url, "--token", "t", "--version", "v1")
    assert run_cli("schedule", "--host", server.url, "--token", "t", "--cron", "0 0 3 * * 1",
                   "--name", "weekly", "--param", "epochs=5") == 0
    assert "at '0 0 3 * * 1' (UTC), running the latest version at each run" in capsys.readouterr().out
    (created,) = server.calls("POST", f"{API}/recurringruns")
    body = created.body
    (pipeline_id,) = server.pipelines
    assert body["pipeline_version_reference"] == {"pipeline_id": pipeline_id}, "no version: the server takes the latest"
    assert "pipeline_spec" not in body or body["pipeline_spec"] is None
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
    assert body["max_concurrency"] == 1 and body["mode"] == "ENABLE"
    assert body["no_catchup"] is True and body["display_name"] == "weekly"
    assert body["runtime_config"]["parameters"] == {"epochs": 5}
    assert created.headers["authorization"] == "Bearer t"


def test_servers_before_kfp_2_5_get_the_latest_version_pinned_with_a_warning(server, capsys, caplog):
    run_cli("upload", "--host", server.url, "--token", "t", "--version", "v1")
    run_cli("upload", "--host", server.url, "--token", "t", "--version", "v2")
    assert run_cli("schedule", "--host", server.url, "--token", "t", "--cron", "@weekly", "--name", "weekly",
                   "--server", "rhoai-2.19") == 0
    (created,) = server.calls("POST", f"{API}/recurringruns")
    latest = [v for v in server.versions.values() if v["display_name"] == "v2"][0]
    assert created.body["pipeline_version_reference"] == {"pipeline_id": latest["pipeline_id"],
                                                          "pipeline_version_id": latest["pipeline_version_id"]}
    assert "rhoai-2.19 cannot follow the latest version" in caplog.text
    assert f"running version {latest['pipeline_version_id']}" in capsys.readouterr().out


def test_predefined_schedules_are_written_out_in_six_fields(server):
    run_cli("upload", "--host", server.url, "--token", "t")
    for name, expected in [("@hourly", "0 0 * * * *"), ("@daily", "0 0 0 * * *"), ("@weekly", "0 0 0 * * 0"),
                           ("@monthly", "0 0 0 1 * *")]:
        assert run_cli("schedule", "--host", server.url, "--token", "t", "--cron", name, "--name", name) == 0
        assert server.calls("POST", f"{API}/recurringruns")[-1].body["trigger"]["cron_schedule"]["cron"] == expected


@pytest.mark.parametrize("expression", ["*/5 * * * * *", "* 0 3 * * 1", "0,30 0 3 * * 1", "0-10 * * * * *"])
def test_a_schedule_firing_more_than_once_a_minute_is_refused(server, capsys, expression):
    """Refused before anything is asked of the server (no pipeline need exist)."""
    assert run_cli("schedule", "--host", server.url, "--token", "t", "--cron", expression) == 2
    assert "fires more than once a minute" in capsys.readouterr().err
    assert server.calls("POST", f"{API}/recurringruns") == []


def test_a_second_schedule_of_the_same_name_is_refused(server, capsys):
    run_cli("upload", "--host", server.url, "--token", "t")
    assert run_cli("schedule", "--host", server.url, "--token", "t", "--cron", "@daily", "--name", "nightly") == 0
    assert run_cli("schedule", "--host", server.url, "--token", "t", "--cron", "@hourly", "--name", "nightly") == 2
    assert "a recurring run named 'nightly' exists" in capsys.readouterr().err
    assert len(server.recurring) == 1


def test_schedules_are_listed_disabled_enabled_and_deleted_by_name(server, capsys):
    run_cli("upload", "--host", server.url, "--token", "t")
    run_cli("schedule", "--host", server.url, "--token", "t", "--cron", "@daily", "--name", "nightly")
    (recurring_id,) = server.recurring
    capsys.readouterr()
    assert run_cli("schedule", "--host", server.url, "--token", "t", "--list") == 0
    assert "name=nightly" in capsys.readouterr().out
    assert run_cli("schedule", "--host", server.url, "--token", "t", "--disable", "nightly") == 0
    assert server.recurring[recurring_id]["status"] == "DISABLED"
    assert run_cli("schedule", "--host", server.url, "--token", "t", "--enable", "nightly") == 0
    assert server.recurring[recurring_id]["status"] == "ENABLED"
    assert run_cli("schedule", "--host", server.url, "--token", "t", "--delete", "nightly") == 0
    assert server.calls("DELETE", f"{API}/recurringruns/{recurring_id}") and server.recurring == {}
    assert run_cli("schedule", "--host", server.url, "--token", "t", "--delete", "nightly") == 2
    assert "no recurring run named 'nightly'" in capsys.readouterr().err


def test_five_field_cron_is_refused_with_the_six_field_form(server, capsys):
    assert run_cli("schedule", "--host", server.url, "--token", "t", "--cron", "0 3 * * 1") == 2
    assert "'0 0 3 * * 1'" in capsys.readouterr().err
    assert server.calls("POST", f"{API}/recurringruns") == []


@pytest.mark.parametrize("expression", ["0 3 * *", "1 2 3 4 5 6 7", ""])
def test_cron_needs_six_fields(expression):
    with pytest.raises(ValueError, match="six"):
        six_field_cron(expression)


def test_schedule_without_an_upload_says_so(server, capsys):
    assert run_cli("schedule", "--host", server.url, "--token", "t", "--cron", "0 0 3 * * 1") == 2
    assert "yolo-kfp upload" in capsys.readouterr().err


def test_server_errors_are_reported_not_thrown(server, capsys):
    # the server lists a pipeline whose versions it then cannot find: the version upload gets a 404
    server.pipelines["listed"] = {"pipeline_id": "gone", "display_name": "yolo-kfp"}
    assert run_cli("upload", "--host", server.url, "--token", "t") == 1
    assert "the pipeline server answered 404" in capsys.readouterr().err


@pytest.fixture
def tls_server(test_ca, monkeypatch, tmp_path):
    """The API stand-in over TLS at the service name a workbench finds (``*.svc``), signed by a test CA."""
    from conftest import SERVICE_HOST

    monkeypatch.setenv("YOLO_KFP_LOOPBACK_HOSTS", SERVICE_HOST)
    monkeypatch.setenv("YOLO_KFP_TRUSTED_CA", str(tmp_path / "no-trusted-bundle.crt"))
    with KfpStandIn(tls=(test_ca["cert"], test_ca["key"]), hostname=SERVICE_HOST) as standin:
        yield standin


def test_a_service_host_is_verified_with_the_service_ca(tls_server, test_ca, monkeypatch, capsys):
    monkeypatch.setenv("YOLO_KFP_SERVICE_CA", test_ca["ca"])
    assert run_cli("submit", "--host", tls_server.url, "--token", "t", "--param", "epochs=1") == 0
    assert run_cli("upload", "--host", tls_server.url, "--token", "t") == 0
    assert run_cli("schedule", "--host", tls_server.url, "--token", "t", "--cron", "@daily") == 0
    assert len(tls_server.calls("POST", f"{API}/runs")) == 1 and len(tls_server.recurring) == 1


def test_without_the_ca_the_error_names_the_bundles_tried(tls_server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("YOLO_KFP_SERVICE_CA", str(tmp_path / "no-service-ca.crt"))
    assert run_cli("submit", "--host", tls_server.url, "--token", "t") == 2
    error = capsys.readouterr().err
    assert f"the certificate of {tls_server.url} is not signed by a CA in what was tried" in error
    assert "no-service-ca.crt (missing)" in error and "no-trusted-bundle.crt (missing)" in error
    assert "the system's CA store" in error and "--ca-bundle" in error
    assert tls_server.calls("POST", f"{API}/runs") == []


def test_an_explicit_bundle_comes_first_and_the_trusted_bundle_serves_routes(test_ca, monkeypatch):
    from yolo_kfp.cluster.client import Server

    monkeypatch.setenv("YOLO_KFP_SERVICE_CA", test_ca["ca"])
    monkeypatch.setenv("YOLO_KFP_TRUSTED_CA", test_ca["cert"])
    assert Server("https://ds-pipeline-dspa.ns.svc:8443").ca_bundle == test_ca["ca"]
    assert Server("https://ds-pipeline-dspa-ns.apps.example.com").ca_bundle == test_ca["cert"]
    assert Server("https://ds-pipeline-dspa.ns.svc:8443", ca_bundle="/mine.pem").ca_bundle == "/mine.pem"
    assert Server("https://x.svc", verify_ssl=False).verification == "TLS not verified (--insecure)"
    with KfpStandIn(tls=(test_ca["cert"], test_ca["key"]), hostname="localhost") as standin:
        assert run_cli("submit", "--host", standin.url, "--token", "t", "--ca-bundle", test_ca["ca"]) == 0


def test_run_links_open_the_dashboards_run_page_in_a_workbench(monkeypatch):
    from yolo_kfp.cluster.client import Server
    from yolo_kfp.cluster.workbench import dashboard_url

    monkeypatch.setenv("NOTEBOOK_ARGS", '--ServerApp.port=8888\n--ServerApp.tornado_settings={"user":"ada",'
                                        '"hub_host":"https://rhods-dashboard-redhat-ods-applications.apps.example.com",'
                                        '"hub_prefix":"/projects/vision"}')
    server = Server("https://ds-pipeline-dspa.vision.svc:8443", dashboard=dashboard_url(), namespace="vision")
    assert server.run_link("r1") == ("https://rhods-dashboard-redhat-ods-applications.apps.example.com/pipelineRuns/"
                                     "vision/runs/r1")
    monkeypatch.delenv("NOTEBOOK_ARGS")
    assert dashboard_url() is None
