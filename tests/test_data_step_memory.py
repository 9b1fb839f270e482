"""The data steps' memory defaults come from their peaks measured at scale (``yolo_kfp/infra/measured_memory.py``,
``bench/metadata_scale.py``, ``bench/convert_scale.py``): a pod below its step's peak would be killed."""

import os
import re

import pytest
import yaml

from yolo_kfp.infra.measured_memory import HEADROOM, MINIMUM_MIB, PEAK_GIB, memory
from yolo_kfp.infra.pod_size import quantity
from yolo_kfp.pipeline.compile_options import CompileOptions
from yolo_kfp.pipeline.pipeline import compile_pipeline

BENCH_README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "README.md")
GIB = 1 << 30


@pytest.fixture(scope="module")
def executors(tmp_path_factory):
    path = compile_pipeline(str(tmp_path_factory.mktemp("memory") / "pipeline.yaml"), CompileOptions())
    with open(path) as f:
        return next(yaml.safe_load_all(f))["deploymentSpec"]["executors"]


@pytest.mark.parametrize("step", sorted(PEAK_GIB))
def test_each_data_step_is_compiled_with_its_measured_peak_and_headroom(executors, step):
    resources = executors[f"exec-{step}"]["container"]["resources"]
    limit, request = quantity(resources["resourceMemoryLimit"]), quantity(resources["resourceMemoryRequest"])
    assert limit >= request >= PEAK_GIB[step] * HEADROOM * GIB, (step, resources)
    assert resources["resourceMemoryLimit"] == memory(step)


def test_the_peaks_in_the_code_are_those_bench_readme_records():
    with open(BENCH_README) as f:
        text = f.read()
    recorded = {m[1]: float(m[2]) for m in re.finditer(r"^\| `([a-z-]+)` \| ([0-9.]+) GiB \|", text, re.MULTILINE)}
    assert recorded == PEAK_GIB
    for step in PEAK_GIB:
        assert re.search(rf"^\| `{step}` \|.*\| {memory(step)} \|", text, re.MULTILINE), step


@pytest.mark.parametrize("step", sorted(PEAK_GIB))
def test_memory_is_the_peak_with_headroom_rounded_up_to_512_mib(step):
    size, wanted = quantity(memory(step)), max(PEAK_GIB[step] * HEADROOM * GIB, MINIMUM_MIB << 20)
    assert size % (512 << 20) == 0 and wanted <= size < wanted + (512 << 20)
