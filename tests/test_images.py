"""The component images: lint-clean Containerfiles that run as non-root, and compiled pipelines that
name exactly our images (overridable at compile time). CI builds both images and runs convert, train,
evaluate and export in them (.ci/image-smoke.sh)."""

import glob
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from components.images import DATA_IMAGE, TRAIN_IMAGE, image_ref
from pipeline.pipeline import CompileOptions, compile_pipeline

ROOT = os.path.join(os.path.dirname(__file__), "..")
CONTAINERFILES = sorted(glob.glob(os.path.join(ROOT, "images", "*.Containerfile")))


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
def test_the_base_is_a_pinned_build_argument(path):
    text = open(path).read()
    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, flags=re.MULTILINE)
    assert default and re.search(r":[\w.-]*\d|@sha256:", default.group(1)), "pin the default base"
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, flags=re.MULTILINE)


def test_images_can_be_moved_to_another_registry_at_compile_time(tmp_path):
    options = CompileOptions(image_registry="mirror.example.com:5000/ml", image_tag="2.0")
    with open(compile_pipeline(str(tmp_path / "p.yaml"), options)) as f:
        spec = next(yaml.safe_load_all(f))
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"mirror.example.com:5000/ml/data:2.0", "mirror.example.com:5000/ml/train:2.0"}
    assert "images=mirror.example.com:5000/ml/{data,train}:2.0" in spec["pipelineInfo"]["description"]
    assert image_ref(DATA_IMAGE, "r.io/x/", "t") == "r.io/x/data:t"

