"""A published model as an OCI image (a KServe ModelCar), pushed with a registry client, no container engine, to a
real registry (Debian's docker-registry on 127.0.0.1, TLS and htpasswd), and read back by digest, here and by
skopeo."""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import pytest
import requests
import yaml
from test_publish import storage_for

from yolo_kfp.cli.local_run import demo_preset
from yolo_kfp.cli.parsers import build_parser
from yolo_kfp.infra.oci_reference import Reference
from yolo_kfp.local.demo import DEMO_PUBLISH_TO
from yolo_kfp.local.oci_registry import USER
from yolo_kfp.params.run_values import parse_params
from yolo_kfp.pipeline.compile_options import CompileOptions
from yolo_kfp.release import oci_client
from yolo_kfp.release.modelcar import DEFAULT_BASE, LATEST, VERSION_KEY, base_problems, push_modelcar
from yolo_kfp.release.oci_client import AUTH_VARIABLE, CA_VARIABLE, RegistryAccessError, RegistryClient
from yolo_kfp.release.publish import publish_model, read_latest

RUN = "0123456789abcdef"


@pytest.fixture
def registry(oci_registry, monkeypatch):
    """The session's registry, its credentials and CA handed to the step as the cluster hands them."""
    server, base = oci_registry
    monkeypatch.setenv(AUTH_VARIABLE, server.auth_json())
    monkeypatch.setenv(CA_VARIABLE, server.ca)
    return server, base


@pytest.fixture
def published_inputs(tmp_path):
    """What train, evaluate, convert and export hand to publish: the ONNX model is 12 MB of bytes, as large as a
    YOLOv5n's (a registry closes the connection on an upload sent without credentials before 10 MB are sent)."""
    model = tmp_path / "model"
    (model / "weights").mkdir(parents=True)
    (model / "weights" / "best.pt").write_bytes(b"w" * 1000)
    (model / "args.yaml").write_text(yaml.safe_dump({"epochs": 3, "imgsz": 160}))
    onnx = tmp_path / "onnx"
    (onnx / "yolo-kfp" / "1").mkdir(parents=True)
    (onnx / "yolo-kfp" / "1" / "model.onnx").write_bytes(os.urandom(12_000_000))
    (onnx / "export.json").write_text(json.dumps({"path": "yolo-kfp/1/model.onnx", "opset": 17}))
    (tmp_path / "metrics.json").write_text(json.dumps({"map50": 0.8, "map50_95": 0.5}))
    (tmp_path / "stats.json").write_text(json.dumps({"classes": ["Car"], "seed": 42}))
    return {"model_dir": str(model), "onnx_dir": str(onnx), "metrics_path": str(tmp_path / "metrics.json"),
            "stats_path": str(tmp_path / "stats.json")}


def pulled_files(server, repository: str, digest: str, work) -> tuple[dict, dict]:
    """The image's files (name -> bytes, or the link's target) over all its layers, and its config: pulled by
    digest, each blob checked against its digest by the client."""
    reference = Reference.parse(f"{repository}@{digest}", "image")
    client = RegistryClient(server.host, (USER, server.password), server.ca)
    data, media_type = client.manifest(reference.path, digest)
    manifest = json.loads(data)
    assert media_type == manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    files = {}
    for layer in manifest["layers"]:
        path = str(work / layer["digest"].replace(":", "-"))
        client.get_blob(reference.path, layer["digest"], path)
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    files[member.name] = (tar.extractfile(member).read(), member.mode, member.uid)
                elif member.issym():
                    files[member.name] = member.linkname
    return files, client.blob_json(reference.path, manifest["config"]["digest"], str(work))


def storage_snapshot(folder: str) -> dict:
    return {os.path.join(root, name): (os.path.getsize(os.path.join(root, name)),
                                       os.stat(os.path.join(root, name)).st_mtime_ns)
            for root, _, names in os.walk(folder) for name in names}


def test_publish_pushes_a_modelcar_by_digest_and_a_retry_pushes_nothing(s3, bucket, registry, published_inputs,
                                                                         tmp_path):
    server, base = registry
    repository = f"{server.host}/team/yolo-kfp-model"
    target = f"s3://{bucket}/yolo-kfp"
    result = publish_model(publish_to=target, run_id=RUN, storage=storage_for(s3), publish_oci=repository,
                           modelcar_base=base, **published_inputs)
    image, version = result["manifest"]["oci"], result["version"]
    digest = image["digest"]
    assert image["uri"] == f"oci://{repository}@{digest}" and image["tags_pushed"] == [version, LATEST]
    assert read_latest(target, storage_for(s3))["oci"] == image  # the S3 manifest names the image by digest

    files, config = pulled_files(server, repository, digest, tmp_path)
    onnx = open(os.path.join(published_inputs["onnx_dir"], "yolo-kfp", "1", "model.onnx"), "rb").read()
    assert files["models/1/model.onnx"] == (onnx, 0o644, 0)  # what OpenVINO Model Server reads under /mnt/models
    assert files["bin/sh"] == files["bin/sleep"] == "busybox"  # the base: what KServe's ModelCar sidecar runs
    assert config["config"]["Labels"][VERSION_KEY] == version and config["os"] == "linux"

    cert_dir = tmp_path / "certs"  # skopeo reads a registry's CA as *.crt in a folder
    cert_dir.mkdir()
    shutil.copy(server.ca, cert_dir / "ca.crt")
    skopeo = shutil.which("skopeo")
    assert skopeo, "skopeo is missing: apt-get install skopeo (.ci/run does)"
    inspected = subprocess.run([skopeo, "inspect", "--cert-dir", str(cert_dir), "--creds",
                                f"{USER}:{server.password}", f"docker://{repository}@{digest}"],
                               capture_output=True, text=True, timeout=60)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["Digest"] == digest

    before = storage_snapshot(server.storage)
    again = publish_model(publish_to=target, run_id=RUN, storage=storage_for(s3), publish_oci=repository,
                          modelcar_base=base, **published_inputs)  # KFP retries the step
    assert again["version"] == version and again["manifest"]["oci"]["digest"] == digest
    assert again["manifest"]["oci"]["tags_pushed"] == [] and again["manifest"]["oci"]["blobs_uploaded"] == 0
    assert storage_snapshot(server.storage) == before  # nothing pushed, nothing rewritten


def test_wrong_credentials_fail_in_one_line_and_nothing_is_published(s3, bucket, registry, published_inputs,
                                                                     monkeypatch):
    server, base = registry
    monkeypatch.setenv(AUTH_VARIABLE, server.auth_json(password="a-wrong-password-for-the-test"))
    target = f"s3://{bucket}/yolo-kfp"
    started = time.monotonic()
    with pytest.raises(RegistryAccessError) as refused:
        publish_model(publish_to=target, run_id=RUN, storage=storage_for(s3), modelcar_base=base,
                      publish_oci=f"{server.host}/team/yolo-kfp-model", **published_inputs)
    assert time.monotonic() - started < 10  # not retried
    message = str(refused.value)
    assert message == (f"registry {server.host} refused the credentials of user '{USER}' (HTTP 401): check the "
                       f"Secret named by --registry-secret ({AUTH_VARIABLE})")
    assert read_latest(target, storage_for(s3)) is None  # no manifest: the version is not published
    with pytest.raises(RegistryAccessError) as early:  # preflight's check, before any work
        oci_client.check_credentials(f"{server.host}/team/yolo-kfp-model")
    assert str(early.value) == message
    monkeypatch.setenv(AUTH_VARIABLE, server.auth_json())
    oci_client.check_credentials(f"{server.host}/team/yolo-kfp-model")


def test_latest_moves_only_forward(registry, published_inputs):
    server, base = registry
    repository = f"{server.host}/team/forward"
    folder = os.path.join(published_inputs["onnx_dir"], "yolo-kfp")
    client = RegistryClient(server.host, (USER, server.password), server.ca)

    def push(version: str) -> dict:
        return push_modelcar(repository=repository, base=base, model_folder=folder, version=version, run_id=version)

    newer = push("20261205-000000-bbbbbbbb")
    older = push("20261201-000000-aaaaaaaa")  # a slower run of an earlier start finishes later
    assert older["tags_pushed"] == ["20261201-000000-aaaaaaaa"] and older["digest"] != newer["digest"]
    assert client.tagged_digest("team/forward", LATEST) == newer["digest"]
    newest = push("20261206-000000-cccccccc")
    assert newest["tags_pushed"] == ["20261206-000000-cccccccc", LATEST]
    assert client.tagged_digest("team/forward", LATEST) == newest["digest"]


def test_credentials_come_from_the_most_specific_entry_and_never_show():
    reference = Reference.parse("quay.io/team/model", "publish_oci")
    auths = {"auths": {"quay.io": {"username": "everyone", "password": "p1"},
                       "https://quay.io/team/": {"username": "team+robot", "password": "p2"},
                       "quay.io/other": {"username": "other", "password": "p3"}}}
    assert oci_client.credentials_for(reference, json.dumps(auths)) == ("team+robot", "p2")
    assert oci_client.credentials_for(Reference.parse("ghcr.io/team/model", "x"), json.dumps(auths)) is None
    with pytest.raises(RegistryAccessError) as broken:
        oci_client.credentials_for(reference, '{"auths": {"quay.io": {"auth": "bm90LWEtcGFpcg=="}}}')
    assert "quay.io" in str(broken.value) and "not-a-pair" not in str(broken.value)


def test_a_token_service_over_plain_http_elsewhere_is_not_sent_the_credentials():
    from oras.auth import AuthenticationException

    challenge = requests.Response()
    challenge.status_code = 401
    challenge.headers["Www-Authenticate"] = 'Bearer realm="http://tokens.example.com/token",service="registry"'
    backend = oci_client._auth_backend("quay.io", ("robot", "secret"), True)
    with pytest.raises(AuthenticationException, match="over plain HTTP: refused"):
        backend.authenticate_request(challenge, {})


def test_the_base_is_named_by_digest_and_the_publish_step_gets_the_registry_secret(default_pipeline):
    assert base_problems(DEFAULT_BASE) == []
    assert "names no digest" in base_problems("registry.access.redhat.com/ubi9/ubi-micro:9.4")[0]
    with pytest.raises(ValueError, match="--modelcar-base 'busybox' is not an image reference"):
        CompileOptions(modelcar_base="busybox")
    with open(default_pipeline) as f:
        spec, platform = yaml.safe_load_all(f)
    executor = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-publish"]
    secret = {"runtimeValue": {"constant": "yolo-kfp-registry"}}
    assert {"keyToEnv": [{"envVar": AUTH_VARIABLE, "secretKey": ".dockerconfigjson"}], "optional": True,
            "secretName": "yolo-kfp-registry", "secretNameParameter": secret} in executor["secretAsEnv"]
    (publish,) = [task for component in spec["components"].values() for task in component.get("dag", {}).get(
        "tasks", {}).values() if task["componentRef"]["name"] == "comp-publish"]
    assert publish["inputs"]["parameters"]["modelcar_base"] == {"runtimeValue": {"constant": DEFAULT_BASE}}
    assert f"modelcar_base={DEFAULT_BASE}" in spec["pipelineInfo"]["description"]


def test_the_demos_registry_prints_a_run_local_that_publishes_to_it_and_leaves_nothing(monkeypatch):
    """docs/tracking.md's way to try it: the registry it starts takes the credentials it prints, the command it
    prints parses, and the demo then publishes to its own bucket; Ctrl-C stops it and removes its files."""
    process = subprocess.Popen([sys.executable, "-m", "yolo_kfp.local.oci_registry"], stdout=subprocess.PIPE,
                               text=True)
    try:
        shown = [process.stdout.readline() for _ in range(3)]
        ca = re.search(r"\(TLS: (\S+);", shown[0])[1]
        auth = re.search(r'"\$\(cat (\S+)\)"', shown[1])[1]
        monkeypatch.setenv(AUTH_VARIABLE, open(auth).read())
        monkeypatch.setenv(CA_VARIABLE, ca)
        args = build_parser().parse_args([*shlex.split(shown[2])[1:], "--output-dir", "out"])
        params = parse_params(args.param, demo_preset(args.param, search=False))  # as run-local takes them
        oci_client.check_credentials(params["publish_oci"])
        assert base_problems(args.modelcar_base) == [] and args.demo and params["publish_to"] == DEMO_PUBLISH_TO
        assert "publish_to" not in demo_preset([*args.param, "publish_to=s3://models/x"], search=False)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    assert process.returncode == 0 and not os.path.exists(os.path.dirname(os.path.dirname(ca)))


@pytest.mark.parametrize("token_answer", ["json", "html"])
def test_a_registry_with_a_token_service_gets_a_token_for_the_credentials_or_one_line(test_ca, monkeypatch,
                                                                                      token_answer):
    """quay.io's way: the API answers 401 with a Bearer challenge; the token service on the same origin takes the
    user and password. A refusal, or a token service answering a page, fails in one line, at once."""
    import base64

    from http_standin import Served, answer_json

    seen = []

    def handle(request, method):
        authorization = request.headers.get("Authorization", "")
        seen.append((request.path.split("?")[0], authorization.split(" ")[0]))
        if request.path.startswith("/token"):
            if authorization != "Basic " + base64.b64encode(b"robot:right").decode():
                return answer_json(request, 401, {"details": "invalid"})
            if token_answer == "html":
                request.send_response(200)
                request.send_header("Content-Length", "6")
                request.end_headers()
                return request.wfile.write(b"<html>")
            return answer_json(request, 200, {"token": "t0k3n"})
        if authorization == "Bearer t0k3n":
            return answer_json(request, 200, {})
        request.send_response(401)
        request.send_header("Www-Authenticate", f'Bearer realm="{served.url}/token",service="{host}"')
        request.send_header("Content-Length", "0")
        request.end_headers()

    served = Served(handle, ("GET",), tls=(test_ca["cert"], test_ca["key"]))
    host = served.url.removeprefix("https://")
    monkeypatch.setenv(CA_VARIABLE, test_ca["ca"])
    try:
        for password in ("wrong", "right"):
            entry = {"username": "robot", "password": password}
            monkeypatch.setenv(AUTH_VARIABLE, json.dumps({"auths": {host: entry}}))
            started = time.monotonic()
            if password == "right" and token_answer == "json":
                oci_client.check_credentials(f"{host}/team/model")
                assert ("/v2/", "Bearer") in seen  # the token, sent to the registry
                continue
            with pytest.raises(RegistryAccessError) as refused:
                oci_client.check_credentials(f"{host}/team/model")
            assert str(refused.value).startswith(f"registry {host} refused the credentials of user 'robot' (HTTP ")
            assert "\n" not in str(refused.value) and password not in str(refused.value)
            assert time.monotonic() - started < 5  # not retried
    finally:
        served.close()
