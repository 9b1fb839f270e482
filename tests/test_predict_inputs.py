"""``yolo-kfp predict`` refuses what cannot give boxes in one line, before any work, and says of a server
that cannot be used which URL it is and what answered there (refused, an HTTP status, not JSON, nothing)."""

import os
import socket
import struct
import subprocess
import time
import zlib

import pytest
from cli_process import CLI
from http_standin import Served

from yolo_kfp.cli import main
from yolo_kfp.model.export import SERVING_NAME

NO_SERVER = f"http://127.0.0.1:9/v2/models/{SERVING_NAME}"  # never reached: the images are refused first


@pytest.fixture
def files(tmp_path):
    """Stand-ins for what a user points predict at: a good image, broken ones, models that are not ONNX."""
    from PIL import Image

    (tmp_path / "photos").mkdir()
    Image.new("RGB", (64, 48), (90, 120, 200)).save(tmp_path / "photos" / "street.jpg")
    whole = (tmp_path / "photos" / "street.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(whole[:len(whole) // 2])
    (tmp_path / "no-images").mkdir()
    (tmp_path / "no-images" / "labels.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (tmp_path / "best.pt").write_bytes(b"PK\x03\x04 a checkpoint")
    (tmp_path / "corrupt.onnx").write_bytes(b"\xff\xfe not protobuf \x00\x01" * 8)
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "no-model" / SERVING_NAME).mkdir(parents=True)
    return tmp_path


def one_error_line(capsys) -> str:
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("yolo-kfp: error: ")
    return line


@pytest.mark.parametrize("args, message", [
    (["--model", "MODEL", "--conf", "1.5"], "--conf 1.5 is not between 0 and 1"),
    (["--model", "MODEL", "--conf", "-1"], "--conf -1 is not between 0 and 1"),
    (["--model", "MODEL", "--iou", "1.01"], "--iou 1.01 is not between 0 and 1"),
    (["--url", NO_SERVER, "--timeout", "0"], "argument --timeout: '0' is not from 0.1 to 3600 seconds"),
    (["--url", NO_SERVER, "--timeout", "1e308"], "argument --timeout: '1e308' is not from 0.1 to 3600 seconds"),
    (["--url", NO_SERVER, "--timeout", "nan"], "argument --timeout: 'nan' is not from 0.1 to 3600 seconds"),
    (["--model", "{dir}/best.pt"], "export it first with 'yolo-kfp step export"),
    (["--model", "{dir}/corrupt.onnx"], "{dir}/corrupt.onnx is not an ONNX model (it does not parse)"),
    (["--model", "{dir}/empty.onnx"], "{dir}/empty.onnx is empty (0 bytes)"),
    (["--model", "{dir}/no-model"], f"no model in the folder {{dir}}/no-model: it holds none of model.onnx, "
                                    f"{SERVING_NAME}/1/model.onnx"),
    (["--model", "{dir}/missing.onnx"], "no such model: {dir}/missing.onnx"),
])
def test_settings_and_models_that_cannot_work_are_refused_in_one_line(files, args, message, capsys):
    args = [a.format(dir=files) for a in args]
    assert main(["predict", *args, str(files / "photos" / "street.jpg")]) == 2
    assert message.format(dir=files) in one_error_line(capsys)


@pytest.mark.parametrize("image, message", [
    ("truncated.jpg", "not a whole image (empty, truncated or corrupt): {dir}/truncated.jpg"),
    ("no-images", "no images in the folder {dir}/no-images"),
    ("missing.jpg", "no such image: {dir}/missing.jpg"),
    ("nothing-*.png", "no image matches {dir}/nothing-*.png"),
])
def test_images_that_cannot_be_read_are_refused_in_one_line(files, image, message, capsys):
    assert main(["predict", "--url", NO_SERVER, str(files / image)]) == 2
    assert message.format(dir=files) in one_error_line(capsys)


def bomb_png(path, side: int = 20000) -> None:
    """A one-colour PNG of ``side`` x ``side`` 1-bit pixels, written chunk by chunk: a few tens of KB on disk
    that claim side² pixels (PIL would decode 1.2 GB of RGB from it)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row = zlib.compressobj(9), b"\x00" * (1 + side // 8)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def peak_memory_mb(args: list[str]) -> float:
    """The peak resident memory of one ``yolo-kfp`` process of its own (``os.wait4`` reads that child's alone, so
    nothing this test process or another child reached before counts)."""
    process = subprocess.Popen([CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.returncode == 2, args
    return usage.ru_maxrss / 1024


@pytest.mark.parametrize("save", [False, True])
def test_an_image_of_too_many_pixels_is_refused_from_its_header(files, save, capsys):
    bomb = files / "bomb.png"
    bomb_png(bomb)
    assert bomb.stat().st_size < 100_000
    saving = ["--save", str(files / "drawn")] if save else []
    started = time.monotonic()
    assert main(["predict", str(bomb), "--url", NO_SERVER, *saving]) == 2
    assert time.monotonic() - started < 2
    assert f"{bomb} is 20000 x 20000 pixels, more than 64 million" in one_error_line(capsys)
    assert not (files / "drawn").exists()
    # the same refusal of a small image that is no image (it is not decoded either) is the baseline
    (files / "small.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    grown = (peak_memory_mb(["predict", str(bomb), "--url", NO_SERVER, *saving])
             - peak_memory_mb(["predict", str(files / "small.png"), "--url", NO_SERVER, *saving]))
    assert grown < 200, grown


def test_drawings_may_not_replace_the_images_given(files, capsys):
    image = files / "photos" / "street.jpg"
    before = image.read_bytes()
    assert main(["predict", "--url", NO_SERVER, "--save", str(files / "photos"), str(image)]) == 2
    assert "the drawings would replace them" in one_error_line(capsys)
    assert image.read_bytes() == before


def test_save_into_a_file_is_refused(files, capsys):
    image = str(files / "photos" / "street.jpg")
    assert main(["predict", "--url", NO_SERVER, "--save", str(files / "best.pt"), image]) == 2
    assert f"--save {files}/best.pt is a file, not a folder" in one_error_line(capsys)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def predict_url(url: str, files, *more) -> int:
    return main(["predict", "--url", url, *more, str(files / "photos" / "street.jpg")])


def test_a_closed_port_is_named_and_said_to_refuse(files, capsys):
    url = f"http://127.0.0.1:{free_port()}/v2/models/{SERVING_NAME}"
    assert predict_url(url, files) == 1
    assert f"cannot reach {url}: Connection refused" in one_error_line(capsys)


def test_what_a_server_answered_is_told_with_its_url(files, capsys):
    def handle(request, method):
        status, kind, body = {"/v2/models/html": (200, "text/html", b"<html>a login page</html>"),
                              "/v2/models/gone": (404, "application/json", b'{"error": "Model not found"}'),
                              "/v2/models/odd": (200, "application/json", b'{"name": "odd"}')}[request.path]
        request.send_response(status)
        request.send_header("Content-Type", kind)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    served = Served(handle, ("GET",))
    try:
        assert predict_url(f"{served.url}/v2/models/html", files) == 1
        assert (f"{served.url}/v2/models/html answered 200 with no JSON object (text/html): <html>a login page"
                in one_error_line(capsys))
        assert predict_url(f"{served.url}/v2/models/gone", files) == 1
        assert f'{served.url}/v2/models/gone answered 404 Not Found: {{"error": "Model not found"}}' in one_error_line(
            capsys)
        assert predict_url(f"{served.url}/v2/models/odd", files) == 1
        assert "answered JSON that is not a KServe v2 model's metadata" in one_error_line(capsys)
    finally:
        served.close()


def test_a_silent_server_is_given_up_after_the_timeout(files, capsys):
    with socket.socket() as silent:  # the kernel completes the connection; nobody ever reads or answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v2/models/{SERVING_NAME}"
        started = time.monotonic()
        assert predict_url(url, files, "--timeout", "1") == 1
        assert time.monotonic() - started < 5
    assert f"{url} did not answer within 1 s (--timeout)" in one_error_line(capsys)


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_an_onnx_file_no_engine_can_load_is_refused_in_one_line(files, engine, capsys):
    """It parses and carries an export's metadata, but its graph names an operator that does not exist."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("NoSuchOperator", ["images"], ["output0"])], "broken",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 7, 21])])
    model = helper.make_model(graph)
    helper.set_model_props(model, {"names": "{0: 'Bicycle', 1: 'Car', 2: 'Traffic sign'}"})
    onnx.save(model, files / "broken.onnx")
    assert main(["predict", "--model", str(files / "broken.onnx"), "--engine", engine,
                 str(files / "photos" / "street.jpg")]) == 2
    assert f"{engine} cannot load {files}/broken.onnx, which parses as ONNX" in one_error_line(capsys)
