"""The yolo-kfp command line: parameters come from the pipeline's signature."""

import pytest

from pipeline.cli import main
from pipeline.local import parse_params
from pipeline.pipeline import parameter_defaults


def test_param_values_are_json_when_they_parse_else_strings():
    params = parse_params(['classes=["Car","Bicycle"]', "epochs=3", "base_model=s3://b/k.pt", "cache=disk",
                           "train_args={\"nbs\": 16}", "lr0=0.002", "include_group_of=false"])
    assert params == {"classes": ["Car", "Bicycle"], "epochs": 3, "base_model": "s3://b/k.pt", "cache": "disk",
                      "train_args": {"nbs": 16}, "lr0": 0.002, "include_group_of": False}


def test_unknown_param_lists_the_known_ones():
    with pytest.raises(ValueError) as error:
        parse_params(["epoch=3"])
    assert "'epoch'" in str(error.value)
    for name in parameter_defaults():
        assert name in str(error.value)


def test_cli_reports_bad_params_without_a_traceback(capsys, tmp_path):
    assert main(["run-local", "--output-dir", str(tmp_path), "--param", "nonsense"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_compile_writes_a_pipeline(tmp_path, capsys):
    assert main(["compile", "--output", str(tmp_path / "p.yaml"), "--shm-size", "2Gi"]) == 0
    assert "sizeLimit: 2Gi" in (tmp_path / "p.yaml").read_text()


def test_compile_options_for_several_gpus_and_a_queue(tmp_path):
    assert main(["compile", "--output", str(tmp_path / "p.yaml"), "--gpus", "2", "--cpu-per-gpu", "4",
                 "--memory-per-gpu", "16Gi", "--kueue-queue", "gpu-team", "--download-parallelism", "6"]) == 0
    text = (tmp_path / "p.yaml").read_text()
    assert "compile options: gpus=2 cpu_per_gpu=4 memory_per_gpu=16Gi shm_size=8Gi" in text
    assert "kueue_queue=gpu-team download_parallelism=6" in text
    assert "resourceMemoryRequest: 48Gi" in text and "sizeLimit: 16Gi" in text
