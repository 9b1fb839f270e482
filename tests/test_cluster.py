"""submit, upload and schedule against a stand-in of the KFP v2beta1 API: what the server receives."""

import json

import pytest
import yaml
from kfp_standin import API, KfpStandIn

from pipeline.cli import main
from pipeline.cluster import resolve_token, six_field_cron


@pytest.fixture
def server():
    with KfpStandIn() as standin:
        yield standin


def run_cli(*args):
    return main(list(args))


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
    assert run_cli("submit", "--host", server.url, "--token", "t", "--wait", "--poll-seconds", "0.01") == 0
    out = capsys.readouterr().out
    assert "RUNNING" in out and "ended SUCCEEDED" in out
    server.final_state = "FAILED"
    assert run_cli("submit", "--host", server.url, "--token", "t", "--wait", "--poll-seconds", "0.01") == 1
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


def test_schedule_references_the_latest_version_with_six_field_cron(server, capsys):
    run_cli("upload", "--host", server.url, "--token", "t", "--version", "v1")
    run_cli("upload", "--host", server.url, "--token", "t", "--version", "v2")
    assert run_cli("schedule", "--host", server.url, "--token", "t", "--cron", "0 0 3 * * 1",
                   "--name", "weekly", "--param", "epochs=5") == 0
    (created,) = server.calls("POST", f"{API}/recurringruns")
    body = created.body
    latest = [v for v in server.versions.values() if v["display_name"] == "v2"][0]
    assert body["pipeline_version_reference"] == {"pipeline_id": latest["pipeline_id"],
                                                  "pipeline_version_id": latest["pipeline_version_id"]}
    assert "pipeline_spec" not in body or body["pipeline_spec"] is None
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
    assert body["max_concurrency"] == 1
    assert body["no_catchup"] is True and body["display_name"] == "weekly"
    assert body["runtime_config"]["parameters"] == {"epochs": 5}
    assert created.headers["authorization"] == "Bearer t"

    capsys.readouterr()
    assert run_cli("schedule", "--host", server.url, "--token", "t", "--list") == 0
    assert "name=weekly" in capsys.readouterr().out and "ENABLED" in json.dumps(list(server.recurring.values()))
    assert run_cli("schedule", "--host", server.url, "--token", "t", "--disable", "weekly") == 0
    assert [r["status"] for r in server.recurring.values()] == ["DISABLED"]


def test_five_field_cron_is_refused_with_the_six_field_form(server, capsys):
    run_cli("upload", "--host", server.url, "--token", "t")
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
