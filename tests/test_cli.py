"""The yolo-kfp command line: parameters come from the pipeline's signature."""

import json
import re
import subprocess
import sys

import pytest

from yolo_kfp.cli import build_parser, main
from yolo_kfp.local.runner import failed_step, failure_line, last_exception
from yolo_kfp.params.run_parameters import defaults as parameter_defaults
from yolo_kfp.params.run_values import parse_params


def test_param_values_are_json_when_they_parse_else_strings():
    params = parse_params(['classes=["Car","Bicycle"]', "epochs=3", "base_model=s3://b/k.pt", "cache=disk",
                           "train_args={\"nbs\": 16}", "lr0=0.002", "include_group_of=false"])
    assert params == {"classes": ["Car", "Bicycle"], "epochs": 3, "base_model": "s3://b/k.pt", "cache": "disk",
                      "train_args": {"nbs": 16}, "lr0": 0.002, "include_group_of": False}


def test_param_values_take_the_types_the_pipeline_declares():
    """What kfp checks when the pipeline is called (a whole number for a float crashed it after 15-50 s)."""
    from kfp.dsl.types.type_utils import verify_type_compatibility

    from yolo_kfp.pipeline.pipeline import yolo_pipeline

    params = parse_params(["min_map50=0", "lr0=1", 'epochs="3"', "max_map50_drop=0", "imgsz=320.0", "seed=+7",
                           "include_group_of=False", 'cache=""', "split=validation"])
    assert params == {"min_map50": 0.0, "lr0": 1.0, "epochs": 3, "max_map50_drop": 0.0, "imgsz": 320, "seed": 7,
                      "include_group_of": False, "cache": "", "split": "validation"}
    assert [type(params[k]) for k in ("min_map50", "lr0", "epochs", "imgsz")] == [float, float, int, int]
    inputs = yolo_pipeline.component_spec.inputs
    defaults_as_text = [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in parameter_defaults().items()]
    for name, value in {**parse_params(defaults_as_text), **params}.items():
        assert verify_type_compatibility(value, inputs[name], f"{name}: "), name


@pytest.mark.parametrize("item, message", [
    ("epochs=abc", "epochs must be an integer, not 'abc'"),
    ("epochs=3.5", "epochs must be an integer, not '3.5'"),
    ("epochs=true", "epochs must be an integer, not 'true'"),
    ("lr0=fast", "lr0 must be a number, not 'fast'"),
    ("classes=Car,Bus", "classes must be a JSON list, not 'Car,Bus'"),
    ("train_args=[1]", "train_args must be a JSON object, not '[1]'"),
    ("include_group_of=maybe", "include_group_of must be true or false, not 'maybe'"),
])
def test_param_values_that_do_not_convert_are_refused(item, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_params([item])


def test_unknown_param_lists_the_known_ones():
    with pytest.raises(ValueError) as error:
        parse_params(["epoch=3"])
    assert "'epoch'" in str(error.value)
    for name in parameter_defaults():
        assert name in str(error.value)


def test_cli_reports_bad_params_without_a_traceback(capsys, tmp_path):
    assert main(["run-local", "--output-dir", str(tmp_path), "--param", "nonsense"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize("flag, variable, shown", [(["--debug"], None, True), ([], "1", True), ([], None, False),
                                                   ([], "0", False)])
def test_debug_adds_the_traceback_a_failure_line_replaces(flag, variable, shown, capsys, tmp_path, monkeypatch):
    """--debug or YOLO_KFP_DEBUG=1 print the traceback before the one line; without them there is none."""
    if variable is None:
        monkeypatch.delenv("YOLO_KFP_DEBUG", raising=False)
    else:
        monkeypatch.setenv("YOLO_KFP_DEBUG", variable)
    assert main([*flag, "run-local", "--output-dir", str(tmp_path), "--param", "nonsense"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "yolo-kfp: error: --param wants KEY=VALUE, not 'nonsense'"
    assert ("Traceback (most recent call last):" in err) is shown
    if shown:
        assert "ValueError: --param wants KEY=VALUE, not 'nonsense'" in err and "parse_param" in "\n".join(err)
    assert any(line.startswith('  File "') for line in err) is shown


def test_any_failure_is_one_printable_line_and_an_unexpected_one_asks_for_a_report(capsys, tmp_path, monkeypatch):
    from yolo_kfp.cli import cluster_commands

    def broken(args):
        raise OverflowError("cannot convert float infinity \x1b[31mto integer\n" + "x" * 5000)

    monkeypatch.setattr(cluster_commands, "compile_pipeline", lambda output, options: broken(None))
    monkeypatch.delenv("YOLO_KFP_DEBUG", raising=False)
    assert main(["compile", "--output", str(tmp_path / "p.yaml")]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("yolo-kfp: error: OverflowError: cannot convert float infinity \\x1b[31mto integer x")
    assert len(line) < 700 and line.endswith("… (an unexpected failure; run again with --debug for the traceback, "
                                             "and report it)")
    assert main(["--debug", "compile", "--output", str(tmp_path / "p.yaml")]) == 1
    assert "Traceback (most recent call last):" in capsys.readouterr().err


def test_compile_writes_a_pipeline(tmp_path, capsys):
    assert main(["compile", "--output", str(tmp_path / "p.yaml"), "--shm-size", "2Gi"]) == 0
    assert "sizeLimit: 2Gi" in (tmp_path / "p.yaml").read_text()


def test_compile_options_for_several_gpus_and_a_queue(tmp_path):
    assert main(["compile", "--output", str(tmp_path / "p.yaml"), "--gpus", "2", "--cpu-per-gpu", "4",
                 "--memory-per-gpu", "16Gi", "--kueue-queue", "gpu-team", "--download-parallelism", "6"]) == 0
    text = (tmp_path / "p.yaml").read_text()
    assert "gpus=2 cpu_per_gpu=4 memory_per_gpu=16Gi shm_size=8Gi" in text
    assert "kueue_queue=gpu-team download_parallelism=6" in text
    assert "resourceMemoryRequest: 48Gi" in text and "resourceMemoryLimit: 48Gi" in text and "sizeLimit: 16Gi" in text


def test_a_failed_step_is_told_in_one_line_with_its_cause():
    message = ("Pipeline \x1b[95m'yolo-kfp'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m. Inner task failed: "
               "\x1b[96m'download-shard'\x1b[0m inside \x1b[96m'for-loop-1'\x1b[0m.")
    log = ["    [KFP Executor 2026-12-01 06:42:35,100 INFO]: fetching 12 images",
           "    Traceback (most recent call last):",
           '      File "/x/a.py", line 3, in fetch',
           "        raise OSError('cut')",
           "    OSError: cut",
           "",
           "    During handling of the above exception, another exception occurred:",
           "",
           "    Traceback (most recent call last):",
           '      File "/x/a.py", line 9, in <module>',
           "        fetch()",
           "    yolo_kfp.infra.storage.StorageError: S3 download of s3://b/k at AWS S3 failed:",
           "    NoSuchKey: not found",
           "",
           "",
           "2026-12-01 06:42:35,600 INFO root: Skipping task merge-download"]
    assert failed_step(message) == "download-shard"
    assert last_exception(log) == ("yolo_kfp.infra.storage.StorageError: S3 download of s3://b/k at AWS S3 "
                                   "failed: NoSuchKey: not found")
    assert failure_line(message, log) == (
        "step 'download-shard' failed: yolo_kfp.infra.storage.StorageError: S3 download of s3://b/k at "
        "AWS S3 failed: NoSuchKey: not found -- check the data connection (AWS_* variables: endpoint, keys, bucket) "
        "and run again")
    assert failure_line(message, log[:1]).startswith("step 'download-shard' failed without a Python error")


def test_the_commands_are_defined_without_the_heavy_libraries():
    """The base install (a workbench) has no numpy, OpenCV, torch or FiftyOne: building the parser of every
    command, predict's included, may not import them."""
    code = ("import sys; from yolo_kfp.cli import build_parser; build_parser(); "
            "print(sorted({'numpy', 'cv2', 'torch', 'fiftyone', 'pandas'} & set(sys.modules)))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert found.strip() == "[]"


def test_every_option_of_every_command_has_help_and_shows_its_default():
    import argparse

    from yolo_kfp.cli.options import DefaultsShown
    from yolo_kfp.cli.parsers import every_parser
    from yolo_kfp.cluster.predict import NMS_IOU, TIMEOUT
    from yolo_kfp.model.analysis import CONFIDENCE

    parsers = list(every_parser(build_parser()))
    assert len(parsers) == 14, [p.prog for p in parsers]  # the top, its 7 commands (step among them), step's 6
    for parser in parsers:
        text = parser.format_help()
        assert "``" not in text and "docs/" not in text, parser.prog
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            shown = DefaultsShown(parser.prog)._get_help_string(action)
            assert action.help, (parser.prog, action.option_strings)
            assert action.nargs == 0 or action.required or "default" in shown, (parser.prog, action.option_strings)
            assert shown.count("(default:") <= 1, (parser.prog, action.option_strings)
    predict = build_parser().parse_args(["predict", "x.jpg", "--url", "https://h"])
    assert predict.timeout is None
    text = next(p for p in parsers if p.prog.endswith(" predict")).format_help()
    flat = " ".join(text.split())
    assert f"(default: {CONFIDENCE}," in flat and f"(default: Ultralytics' {NMS_IOU})" in flat
    assert f"(default: {TIMEOUT:g})" in flat
