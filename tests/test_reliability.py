"""Bad input refused early and clearly; transient faults survived; interrupted work resumed."""

import json
import os
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from cli_process import CLI, REFUSED_WITHIN
from conftest import CLASSES
from PIL import Image
from test_convert import box_row, make_raw

from yolo_kfp.cluster.client import Server
from yolo_kfp.components.step_settings import SETTINGS
from yolo_kfp.data import openimages as oi
from yolo_kfp.data.convert import convert_to_yolo
from yolo_kfp.infra.image_files import readable
from yolo_kfp.infra.storage import S3Url, Storage
from yolo_kfp.local.s3_server import free_ports
from yolo_kfp.model.train import resume_epoch
from yolo_kfp.pipeline.compile_options import FAN_IN_STEPS, CompileOptions
from yolo_kfp.pipeline.pipeline import compile_pipeline


def test_a_local_base_model_is_read_for_its_depth(base_checkpoint, tmp_path):
    from yolo_kfp.params.validation import base_model_problems

    assert base_model_problems(base_checkpoint, 10) == []
    assert "freeze 25 is beyond" in base_model_problems(base_checkpoint, 25)[0]
    broken = tmp_path / "broken.pt"
    broken.write_bytes(open(base_checkpoint, "rb").read()[:5000])
    assert "is not a readable PyTorch checkpoint" in base_model_problems(str(broken), 10)[0]


def test_an_s3_base_model_is_fetched_and_checked_by_preflight(s3, base_checkpoint):
    from yolo_kfp.infra.storage import StorageError, sha256_of
    from yolo_kfp.params.preflight import check_s3_inputs

    storage = Storage.from_env(s3.data_connection())
    storage.client.create_bucket(Bucket="base-models")
    storage.upload_file(base_checkpoint, S3Url("base-models", "yolov5n.pt"))
    url, digest = "s3://base-models/yolov5n.pt", sha256_of(base_checkpoint)
    assert check_s3_inputs(base_model=url, base_model_sha256=digest, freeze=10, storage=storage) == ""
    with pytest.raises(StorageError, match=r"base_model=s3://base-models/yolov5n.pt .*freeze 25 is beyond"):
        check_s3_inputs(base_model=url, freeze=25, storage=storage)
    with pytest.raises(StorageError, match="SHA-256 .* not the expected 0{64}"):
        check_s3_inputs(base_model=url, base_model_sha256="0" * 64, freeze=10, storage=storage)


def test_misspelled_class_fails_within_seconds_and_leaves_nothing(tmp_path):
    started = time.monotonic()
    result = subprocess.run([CLI, "run-local", "--demo", "--output-dir", str(tmp_path / "out"), "--param",
                             'classes=["Bicycle","Carr"]'], capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < REFUSED_WITHIN
    assert result.returncode == 2
    assert "'Carr' (did you mean 'Car'?)" in result.stderr
    assert not (tmp_path / "out").exists()


def test_bad_parameters_stop_the_cli_before_any_work(tmp_path):
    result = subprocess.run([CLI, "run-local", "--output-dir", str(tmp_path / "out"), "--param", "imgsz=650",
                             "--param", "epochs=0"], capture_output=True, text=True, timeout=60)
    (last,) = result.stderr.strip().splitlines()
    assert result.returncode == 2 and "imgsz 650" in last and "epochs must be" in last
    assert not (tmp_path / "out").exists()


def _raw_with_broken_images(root):
    ids = [f"{i:016x}" for i in range(1, 13)]
    raw = make_raw(root, [box_row(i, name, 0.2, 0.6, 0.2, 0.6) for i in ids for name in ("Car", "Bicycle")], ids)
    data = os.path.join(raw, oi.DATA_DIR)
    open(os.path.join(data, f"{ids[0]}.jpg"), "wb").close()  # zero bytes
    with open(os.path.join(data, f"{ids[1]}.jpg"), "wb") as f:
        f.write(b"this is not a jpeg")  # corrupt
    Image.new("RGB", (64, 64), "red").save(os.path.join(data, f"{ids[2]}.jpg"), quality=95)
    with open(os.path.join(data, f"{ids[2]}.jpg"), "r+b") as f:
        f.truncate(os.path.getsize(f.name) // 2)  # truncated
    return raw, ids


def test_unreadable_images_are_dropped_and_counted(tmp_path):
    raw, ids = _raw_with_broken_images(tmp_path / "raw")
    stats = convert_to_yolo(raw_dir=raw, output_dir=str(tmp_path / "out"), classes=["Bicycle", "Car"], seed=42)
    assert stats["dropped"]["unreadable_images"] == 3 and stats["images"] == len(ids) - 3


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_readable_checks_end_markers_and_decodes_the_rest(tmp_path, suffix):
    path = str(tmp_path / f"image{suffix}")
    Image.new("RGB", (64, 48), "blue").save(path)
    assert readable(path)
    with open(path, "ab") as f:
        f.write(b"trailing bytes")  # no end marker last: decoded in full, and it still decodes
    assert readable(path)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    assert not readable(path)


def test_a_class_without_images_fails_unless_allowed(tmp_path):
    raw, _ = _raw_with_broken_images(tmp_path / "raw")
    with pytest.raises(ValueError, match=r"no image has a box of \['Traffic sign'\].*allow_missing_classes"):
        convert_to_yolo(raw_dir=raw, output_dir=str(tmp_path / "out"), classes=CLASSES, seed=42)
    assert not (tmp_path / "out").exists()
    stats = convert_to_yolo(raw_dir=raw, output_dir=str(tmp_path / "allowed"), classes=CLASSES, seed=42,
                            allow_missing_classes=True)
    assert stats["splits"]["train"]["per_class"]["Traffic sign"]["boxes"] == 0


@pytest.mark.slow
def test_freeze_beyond_the_model_is_refused_before_training(yolo_dataset, base_checkpoint, tmp_path):
    from yolo_kfp.model.train import train_yolo

    with pytest.raises(ValueError, match=r"freeze 30 is beyond .*'s 25 layers \(0-24\)"):
        train_yolo(data_dir=yolo_dataset, output_dir=str(tmp_path / "model"), base_model=base_checkpoint, epochs=1,
                   batch=8, imgsz=64, freeze=30)
    assert not (tmp_path / "model" / "weights").exists()


def test_unreachable_pipeline_server_fails_fast():
    (port,) = free_ports(1)
    started = time.monotonic()
    with pytest.raises(ValueError, match=f"cannot reach the pipeline server at http://127.0.0.1:{port}"):
        Server(host=f"http://127.0.0.1:{port}").client()
    assert time.monotonic() - started < 12


class NotKfp(BaseHTTPRequestHandler):
    """A web server that is not a pipeline server: every path is an HTML page not found."""

    def do_GET(self):
        body = b"<html><body>Not Found</body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def web_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotKfp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_port():
    """A port that accepts connections (the kernel's backlog) and never answers."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=8)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


@pytest.mark.parametrize("host, message", [
    ("web_server", "is not a KFP API server: GET /apis/v2beta1/healthz answered 404 (text/html)"),
    ("silent_port", "did not answer within 10 s"),
])
def test_a_host_that_is_no_pipeline_server_fails_within_seconds_in_one_line(host, message, request):
    url = request.getfixturevalue(host)
    started = time.monotonic()
    result = subprocess.run([CLI, "submit", "--host", url], capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < REFUSED_WITHIN
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("yolo-kfp: error: ") and message in line, result.stderr


class FlakyProxy:
    """A TCP proxy on 127.0.0.1 that cuts its first ``drops`` connections mid-request, then forwards."""

    def __init__(self, target_port: int, drops: int):
        self.target, self.drops, self.accepted = target_port, drops, 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.accepted += 1
            if self.accepted <= self.drops:
                client.recv(1024)  # take part of the request, then drop the connection
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.server.close()


def test_a_transfer_cut_midway_is_retried(s3, tmp_path):
    direct = Storage.from_env(s3.data_connection())
    direct.client.create_bucket(Bucket="flaky")
    proxy = FlakyProxy(int(s3.endpoint.rsplit(":", 1)[1]), drops=2)
    try:
        flaky = Storage(endpoint=f"http://127.0.0.1:{proxy.port}", access_key=s3.access_key,
                        secret_key=s3.secret_key)
        payload = os.urandom(200_000)
        (tmp_path / "blob").write_bytes(payload)
        flaky.upload_file(str(tmp_path / "blob"), S3Url("flaky", "blob"))
        assert proxy.accepted >= 3, "the first two attempts were cut"
        assert direct.get_bytes(S3Url("flaky", "blob")) == payload
    finally:
        proxy.close()


# with fan-in, the one-step download without, and the train step as a launcher of a job across nodes
@pytest.mark.parametrize(("server", "nodes"), [("kfp-2.15", 1), ("kfp-2.5", 1), ("rhoai-3.2", 2)])
def test_compiled_pipeline_retries_with_backoff_and_times_out_every_step(tmp_path, server, nodes):
    options = CompileOptions(server=server, nodes=nodes)
    with open(compile_pipeline(str(tmp_path / "p.yaml"), options)) as f:
        spec, platform = yaml.safe_load_all(f)
    loop = spec["components"].get("comp-for-loop-1", {"dag": {"tasks": {}}})
    tasks = {**spec["root"]["dag"]["tasks"], **loop["dag"]["tasks"]}
    fan_in = options.target.features.fan_in
    trains = "train" if nodes == 1 else "train-on-nodes"
    for step in ("plan-download", "download-shard", trains) if fan_in else ("download", trains):
        policy = tasks[step]["retryPolicy"]
        assert policy["maxRetryCount"] >= 2 and policy["backoffFactor"] >= 2 and policy["backoffDuration"]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    absent = {"download"} if fan_in else {*FAN_IN_STEPS, "train-trial"}
    absent |= {"train-on-nodes"} if nodes == 1 else {"train"}
    assert {name[len("exec-"):] for name in executors} == set(SETTINGS) - absent
    for name, config in executors.items():
        assert int(config["activeDeadlineSeconds"]) == SETTINGS[name[len("exec-"):]].timeout_hours * 3600


def checkpoint_epoch(path) -> int | None:
    """The 0-based epoch a whole checkpoint holds; None while it is missing or being written."""
    import torch

    try:
        epoch = torch.load(path, map_location="cpu", weights_only=False)["epoch"]
    except Exception:  # missing, or still being written
        return None
    return epoch if epoch >= 0 else None


@pytest.mark.slow
def test_killed_training_resumes_from_its_last_checkpoint(yolo_dataset, base_checkpoint, tmp_path):
    out = tmp_path / "model"
    last = out / "weights" / "last.pt"
    args = [CLI, "step", "train", "--data", yolo_dataset, "--output-dir", str(out), "--base-model", base_checkpoint,
            "--epochs", "4", "--batch", "8", "--imgsz", "64", "--workers", "0", "--train-args",
            json.dumps({"nbs": 8, "plots": False})]
    first = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, epoch = time.monotonic() + 300, None
    while epoch is None and time.monotonic() < deadline:
        time.sleep(0.2)
        if checkpoint_epoch(last) is not None:
            first.send_signal(signal.SIGSTOP)  # frozen: the checkpoint read now is the one a resume finds
            epoch = checkpoint_epoch(last)
            if epoch is None:
                first.send_signal(signal.SIGCONT)  # caught while writing the next one
    first.send_signal(signal.SIGKILL)  # a preempted node: no chance to clean up
    first.wait()
    assert epoch is not None and epoch + 1 < 4, "killed after its first checkpoint, before the end"

    second = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"resuming {last} at epoch {epoch + 2} of 4" in second.stderr
    summary = json.loads(second.stdout[second.stdout.index("{"):])
    assert summary["epochs"] == 4 and summary["resumed_at_epoch"] == epoch + 2
    rows = (out / "results.csv").read_text().splitlines()[1:]
    assert [int(float(r.split(",")[0])) for r in rows] == [1, 2, 3, 4]  # an epoch done twice is listed once


def test_a_checkpoint_cut_off_mid_write_is_moved_aside_not_resumed(tmp_path, caplog):
    last = tmp_path / "weights" / "last.pt"
    last.parent.mkdir()
    last.write_bytes(b"PK\x03\x04 half a zip archive")
    assert resume_epoch(str(last)) is None
    assert not last.exists() and (tmp_path / "weights" / "last.pt.unreadable").exists()
    assert "does not load" in caplog.text


def test_download_rerun_fetches_only_what_is_missing_or_broken(mirror, tmp_path):
    from yolo_kfp.data.download import download_open_images

    out = tmp_path / "raw"
    first = download_open_images(output_dir=str(out), classes=CLASSES, max_samples_per_class=4, split="validation",
                                 seed=42)
    names = sorted(os.listdir(out / oi.DATA_DIR))
    os.remove(out / oi.DATA_DIR / names[0])
    open(out / oi.DATA_DIR / names[1], "wb").close()  # left broken by an interruption
    again = download_open_images(output_dir=str(out), classes=CLASSES, max_samples_per_class=4, split="validation",
                                 seed=42)
    assert again["reused_images"] == len(names) - 2
    assert sorted(os.listdir(out / oi.DATA_DIR)) == names and again["images"] == first["images"]
    assert os.path.getsize(out / oi.DATA_DIR / names[1]) > 0


class Preempted(Exception):
    pass


@pytest.mark.slow
def test_a_retried_pod_resumes_from_the_checkpoint_in_s3(s3, yolo_dataset, base_checkpoint, tmp_path, monkeypatch):
    from ultralytics.utils.callbacks import base as callbacks  # what get_default_callbacks copies

    import yolo_kfp.model.checkpoints as checkpoints_module
    import yolo_kfp.model.train as train_module

    storage = Storage.from_env(s3.data_connection())
    storage.client.create_bucket(Bucket="checkpoints")
    monkeypatch.setattr(Storage, "from_env", classmethod(lambda cls, env=None: storage))
    monkeypatch.setattr(checkpoints_module, "CHECKPOINT_POLL_SECONDS", 0.1)
    monkeypatch.setattr(checkpoints_module, "SETTLE_SECONDS", 0.1)
    kept = S3Url("checkpoints", "yolo-kfp/checkpoints/run-1/last.pt")

    def preempt_once_kept(trainer):  # the node goes away right after the first checkpoint is stored
        deadline = time.monotonic() + 30
        while not storage.exists(kept) and time.monotonic() < deadline:
            time.sleep(0.1)
        raise Preempted()

    prefix = "s3://checkpoints/yolo-kfp/checkpoints/run-1"
    tiny = {"epochs": 3, "batch": 8, "imgsz": 64, "workers": 0, "train_args": {"nbs": 8, "plots": False}}
    with monkeypatch.context() as patch:
        patch.setitem(callbacks.default_callbacks, "on_model_save", [preempt_once_kept])
        with pytest.raises(Preempted):
            train_module.train_yolo(data_dir=yolo_dataset, output_dir=str(tmp_path / "pod-1"),
                                    base_model=base_checkpoint,
                                    checkpoints=checkpoints_module.Checkpoints(prefix).claim(wait=0), **tiny)
    assert storage.exists(kept)
    # the retry runs in a new pod: an empty output dir, the same run's checkpoint prefix, the lease let go
    retry = checkpoints_module.Checkpoints(prefix).claim(wait=0)
    assert retry.holds_lease
    summary = train_module.train_yolo(data_dir=yolo_dataset, output_dir=str(tmp_path / "pod-2"),
                                      base_model=base_checkpoint, checkpoints=retry, **tiny)
    assert summary["resumed_at_epoch"] == 2 and summary["epochs"] == 3
    assert len((tmp_path / "pod-2" / "results.csv").read_text().splitlines()) == 1 + 2  # epochs 2 and 3 here
    assert not storage.exists(kept), "a finished training drops its checkpoint: an identical re-run trains anew"
