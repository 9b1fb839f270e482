"""Wrong values are refused at the door: within seconds, before any step runs or any file is written, in one
line that names the value and what to do. The tables of the rules: run parameters, compile options, schedules,
the demo's classes, imgsz, train_args."""

import re
import subprocess
import time

import pytest
from cli_process import CLI, REFUSED_WITHIN

from yolo_kfp.cli import main
from yolo_kfp.cluster.schedules import six_field_cron
from yolo_kfp.params import run_parameters
from yolo_kfp.params.run_parameters import defaults as parameter_defaults
from yolo_kfp.params.validation import parameter_problems
from yolo_kfp.pipeline.compile_options import CompileOptions

# Nothing listens on port 9: a command that asked the server would fail otherwise than the test expects.
HOST = ["--host", "http://127.0.0.1:9", "--token", "t", "--allow-plain-http-token"]


def refused_in_one_line(capsys, argv: list[str], message: str) -> None:
    started = time.monotonic()
    assert main(argv) == 2
    assert time.monotonic() - started < 10
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("yolo-kfp: error: ") and message in line, line


@pytest.mark.parametrize("args, message", [
    (["--cpu-per-gpu", "0"], "--cpu-per-gpu 0 is below 1 per GPU (one core per GPU runs the training loop): give at "
                             "least 1"),
    (["--cpu-per-gpu", "-2"], "--cpu-per-gpu -2 is below 1 per GPU"),
    (["--cpu-per-gpu", "500m"], "--cpu-per-gpu 500m is below 1 per GPU"),
    (["--cpu-per-gpu", "1000"], "--cpu-per-gpu 1000 is above 128 per GPU, more than any node has"),
    (["--cpu-per-gpu", "eight"], "--cpu-per-gpu: 'eight' is not a Kubernetes quantity"),
    (["--shm-size", "1Ki"], "--shm-size 1Ki is below 64Mi per GPU (64Mi is Docker's default /dev/shm"),
    (["--memory-per-gpu", "1Ki"], "--memory-per-gpu 1Ki is below 2Gi per GPU"),
    (["--memory-per-gpu", "24 GB"], "--memory-per-gpu: '24 GB' is not a Kubernetes quantity like 8, 500m or 24Gi"),
    (["--memory-per-gpu", "2Pi"], "--memory-per-gpu 2Pi is above 1Ti per GPU"),
    (["--gpus", "1000"], "--gpus 1000 is more than a node has (the largest have 8-16) and a pod runs on one node: "
                         "use at most 16"),
    (["--gpus", "0"], "--gpus must be 1 or more, not 0"),
    (["--kueue-queue", "bad name!"], "--kueue-queue 'bad name!' is not a Kubernetes label value: use at most 63"),
    (["--kueue-queue", "q" * 64], "is not a Kubernetes label value"),
    (["--kueue-queue=-gpu"], "--kueue-queue '-gpu' is not a Kubernetes label value"),
    (["--image-registry", "Bad Registry"], "--image-registry 'Bad Registry' is not a registry: give "
                                           "host[:port][/namespace]"),
    (["--image-registry", "quay.io/Org"], "--image-registry 'quay.io/Org' is not a registry"),
    (["--image-tag=-rc1"], "--image-tag '-rc1' is not an image tag"),
])
def test_bad_compile_options_are_refused_by_compile_submit_and_upload(tmp_path, capsys, args, message):
    output = tmp_path / "p.yaml"
    refused_in_one_line(capsys, ["compile", "--output", str(output), *args], message)
    assert not output.exists()
    refused_in_one_line(capsys, ["submit", *HOST, *args], message)
    refused_in_one_line(capsys, ["upload", *HOST, *args], message)


def test_compile_options_at_their_bounds_compile():
    options = CompileOptions(gpus=16, cpu_per_gpu="1", memory_per_gpu="2Gi", shm_size="64Mi",
                             kueue_queue="Team_A.gpu-1", image_registry="mirror.example.com:5000/ml/")
    assert (options.train_cpu, options.train_memory) == ("16", "33Gi")
    assert CompileOptions(cpu_per_gpu="128", memory_per_gpu="1Ti", shm_size="1Ti", kueue_queue="q" * 63)


@pytest.mark.parametrize("cron, message", [
    ("0 0 25 * * 1", "its hour field '25' is outside 0-23: use 0-23, a range a-b"),
    ("60 0 3 * * 1", "its second field '60' is outside 0-59"),
    ("0 60 3 * * 1", "its minute field '60' is outside 0-59"),
    ("0 0 3 0 * *", "its day-of-month field '0' is outside 1-31"),
    ("0 0 3 32 * *", "its day-of-month field '32' is outside 1-31"),
    ("0 0 3 1-40 * *", "its day-of-month field '1-40' is outside 1-31"),
    ("0 0 3 * 13 *", "its month field '13' is outside 1-12: use 1-12 or JAN-DEC"),
    ("0 0 3 * JAN-FOO *", "its month field 'JAN-FOO' is not a number, a name or a range"),
    ("0 0 3 * * 7", "its day-of-week field '7' is outside 0-6: use 0-6 or SUN-SAT"),
    ("0 0 3 * * FRI-MON", "its day-of-week field 'FRI-MON' runs backwards"),
    ("0 0 */0 * * *", "its hour field '*/0' has step '0', not a positive whole number"),
    ("0 0 3 * * L", "its day-of-week field 'L' is not a number"),
    ("0 0 3,,4 * * *", "its hour field '' is not a number"),
    ("0 0 -3 * * *", "its hour field '-3' is not a number"),
])
def test_cron_fields_out_of_range_are_refused_before_asking_the_server(capsys, cron, message):
    refused_in_one_line(capsys, ["schedule", *HOST, "--cron", cron], f"cron {cron!r}: {message}")


@pytest.mark.parametrize("cron", ["0 0 3 * * 1", "0 0 3 ? * MON-FRI", "0 */15 * * * *", "0 0 0 1 jan,Jul ?",
                                  "59 59 23 31 12 6", "0 0 0 1-7 * SUN", "0 0 1/6 * * *", "0 0 0 * DEC sat"])
def test_crons_robfig_accepts_pass_unchanged(cron):
    assert six_field_cron(cron) == cron


@pytest.mark.parametrize("name, message", [
    ("", "--name '' is not a recurring run's name"),
    ("  ", "is not a recurring run's name: give a name without surrounding spaces"),
    (" nightly", "without surrounding spaces"),
    ("night\nly", "control characters"),
    ("-nightly", "--name '-nightly' would name a Kubernetes ScheduledWorkflow starting with '-'"),
    ("_-nightly", "start the name with a letter or digit"),
])
def test_schedule_names_kfp_would_refuse_are_refused_before_asking_the_server(capsys, name, message):
    refused_in_one_line(capsys, ["schedule", *HOST, "--cron", "@daily", f"--name={name}"], message)


@pytest.mark.parametrize("args", [["--list", "--delete", "nightly"], ["--cron", "@daily", "--disable", "nightly"],
                                  ["--enable", "a", "--delete", "b"], []])
def test_schedule_actions_are_mutually_exclusive(args):
    started = time.monotonic()
    result = subprocess.run([CLI, "schedule", *HOST, *args], capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < REFUSED_WITHIN
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and re.search(r"not allowed with argument|one of the arguments .* is required",
                                                last), result.stderr


def test_run_parameters_of_a_schedule_go_with_cron_only(capsys):
    refused_in_one_line(capsys, ["schedule", *HOST, "--list", "--param", "epochs=3"],
                        "--param and --catch-up go with --cron")


@pytest.mark.parametrize("command", [["submit"], ["upload"], ["schedule", "--list"]])
@pytest.mark.parametrize("host, shown, suggested", [("127.0.0.1:8888", "'127.0.0.1:8888'", "https://127.0.0.1:8888"),
                                                    ("ftp://dspa.example.com", "'ftp://dspa.example.com'",
                                                     "https://dspa.example.com"),
                                                    ("me:secret@dspa.example.com", "'***@dspa.example.com'",
                                                     "https://dspa.example.com")])
def test_a_host_without_http_is_refused_naming_host(capsys, command, host, shown, suggested):
    started = time.monotonic()
    assert main([*command, "--host", host, "--token", "t"]) == 2
    assert time.monotonic() - started < 10
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"--host {shown} is not an http(s):// URL" in line and f"e.g. {suggested}" in line, line
    assert "secret" not in line


def run_local_refused(tmp_path, *args) -> str:
    """The last line of a run-local that must be refused within seconds, leaving nothing written."""
    started = time.monotonic()
    result = subprocess.run([CLI, "run-local", "--output-dir", str(tmp_path / "out"), *args],
                            capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < REFUSED_WITHIN
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("yolo-kfp: error: ")
    assert not (tmp_path / "out").exists() and "Executing task" not in result.stdout + result.stderr
    return last


def test_a_real_class_missing_from_the_demo_mirror_is_named_as_such(tmp_path):
    last = run_local_refused(tmp_path, "--demo", "--param", 'classes=["Bus","Car"]')
    assert ("the demo mirror has only its 8 classes (Bicycle, Car, Traffic sign, Bicycle wheel, Bicycle helmet, "
            "Traffic light, Stop sign, Person), not 'Bus': choose among them, or run without --demo") in last
    assert "unknown Open Images class" not in last


def test_a_train_args_value_of_the_wrong_type_is_refused_before_any_step(tmp_path):
    last = run_local_refused(tmp_path, "--param", 'train_args={"cos_lr": "yes", "mosaic": 1.5}')
    assert 'train_args cos_lr="yes" is not what Ultralytics takes: give true or false' in last
    assert "train_args mosaic=1.5 is not what Ultralytics takes: give a number from 0 to 1" in last


@pytest.mark.parametrize("train_args, message", [
    ({"cos_lr": 1}, "cos_lr=1 is not what Ultralytics takes: give true or false"),
    ({"lrf": float("nan")}, "lrf=NaN is not what Ultralytics takes: give a number from 0 to 1"),
    ({"warmup_epochs": "3"}, 'warmup_epochs="3" is not what Ultralytics takes: give a number'),
    ({"nbs": 0}, "nbs=0 is not what Ultralytics takes: give a whole number, 1 or more"),
    ({"close_mosaic": 2.5}, "close_mosaic=2.5 is not what Ultralytics takes: give a whole number"),
    ({"fraction": 0}, "fraction=0 is not what Ultralytics takes: give a share in (0, 1]"),
    ({"amp": "fp8"}, 'amp="fp8" is not what Ultralytics takes: give true, false, or one of fp16, bf16, fp32'),
    ({"mosaic": None}, "mosaic=null is not what Ultralytics takes"),
])
def test_train_args_values_are_named_with_what_they_take(train_args, message):
    (problem,) = parameter_problems({"train_args": train_args})
    assert problem == f"train_args {message}" or message in problem, problem


def test_train_args_values_ultralytics_takes_pass():
    assert parameter_problems({"train_args": {"cos_lr": True, "nbs": 16.0, "conf": None, "fraction": [0.8, 0.2],
                                              "scale": [0.5, 1.5], "amp": "BF16", "compile": "max-autotune",
                                              "warmup_epochs": 0, "mosaic": 1}}) == []
    # as KFP hands them to preflight and the train step: numbers inside a dict as floats
    assert parameter_problems({"train_args": {"quantize": 8.0, "fraction": 100.0, "nbs": 16.0}}) == []


def test_a_refused_key_is_named_once_not_also_for_its_type():
    assert parameter_problems({"train_args": {"save": "yes", "epochs": "3"}}) == [
        "train_args may not set 'save': leave it out: the train step's output is the saved weights",
        "train_args sets 'epochs', which is a parameter of its own: set epochs instead (else the recorded parameter "
        "would not be what was trained)"]


def test_imgsz_off_the_stride_offers_distinct_multiples():
    for imgsz in (n for n in range(1, 400) if n % 32):
        (problem,) = parameter_problems({"imgsz": imgsz})
        offered = [int(n) for n in re.findall(r"\d+", problem.split("train at ", 1)[1])]
        assert all(n > 0 and n % 32 == 0 for n in offered) and len(set(offered)) == len(offered), problem
        if imgsz < 32:
            assert problem == f"imgsz {imgsz} is not a multiple of 32: Ultralytics would train at 32; use that"


@pytest.mark.parametrize("params, message", [
    ({"classes": []}, "classes must be a non-empty list"),
    ({"classes": ["Car", "Bicycle", "Car"]}, "classes lists ['Car'] more than once"),
    ({"split_ratios": [0.8, 0.1, 0.2]}, "split_ratios must be three non-negative numbers"),
    ({"split_ratios": [1.2, -0.1, -0.1]}, "split_ratios must be three non-negative numbers"),
    ({"max_samples_per_class": 0}, "max_samples_per_class must be 1 or more, not 0"),
    ({"epochs": -3}, "epochs must be from 1 to 10000, not -3"),
    ({"batch": 0}, "batch must be a positive integer or -1"),
    ({"imgsz": 650}, "imgsz 650 is not a multiple of 32: Ultralytics would train at 672; use that or 640"),
    ({"freeze": -1}, "freeze must be 0 or more, not -1"),
    ({"cache": "gpu"}, "cache must be one of '', 'ram', 'disk', not 'gpu'"),
    ({"split": "val"}, "split must be one of 'train', 'validation', 'test', not 'val'"),
    ({"publish_to": "models/yolo"}, "publish_to must be empty or an S3 URL"),
    ({"base_model_sha256": "abc"}, "base_model_sha256 must be empty or 64 hexadecimal digits"),
    ({"min_map50": 1.5}, "min_map50 must be from 0 to 1, not 1.5"),
    ({"imgsz": 100000}, "imgsz 100000 is beyond 4096"),
    ({"freeze": 25}, "freeze 25 is beyond yolov5nu.pt's 25 layers (0-24)"),
    ({"base_model": "yolo11n.pt", "freeze": 24}, "freeze 24 is beyond yolo11n.pt's 24 layers"),
    ({"optimizer": "Foo"}, "optimizer must be one of Ultralytics' auto, SGD"),
    ({"train_args": {"nonsense": 1}}, "train_args has 'nonsense', which is not an Ultralytics training argument"),
    ({"train_args": {"cos_lrr": True}}, "(did you mean 'cos_lr'?)"),
    ({"train_args": {"epochs": 3}}, "train_args sets 'epochs', which is a parameter of its own: set epochs instead"),
    ({"train_args": {"data": "x.yaml"}}, "train_args may not set 'data': the dataset is the convert step's"),
    ({"lr0": float("nan")}, "lr0 must be above 0 and at most 1, not nan"),
    ({"lr0": -1.0}, "lr0 must be above 0 and at most 1, not -1.0"),
    ({"lr0": 0.0}, "lr0 must be above 0 and at most 1, not 0.0"),
    ({"lr0": 1e9}, "lr0 must be above 0 and at most 1, not 1000000000.0"),
    ({"patience": -1}, "patience must be 0 or more, not -1"),
    ({"workers": -1}, "workers must be from 0 to 64, not -1"),
    ({"seed": -1}, "seed must be from 0 to 4294967295, not -1"),
    ({"epochs": True}, "epochs must be an integer, not True"),
    ({"search_space": {"freeze": [10, 10.0]}}, "search_space freeze lists a value more than once"),
    ({"search_space": {"lr0": [i / 1000 + 0.001 for i in range(101)]}}, "lists 101 values, more than 100"),
    ({"search_trials": 5}, "search_trials is 5, but search_space is empty"),
    ({"search_epochs": 5}, "search_epochs is 5, but search_space is empty"),
    ({"search_space": {"lr0": [0.01, 0.02]}, "optimizer": "SGD", "search_epochs": 500, "epochs": 5},
     "search_epochs 500 is more than the run's epochs 5"),
    ({"search_space": {"epochs": [5, 10]}, "search_epochs": 3}, "has no effect when search_space searches epochs"),
    ({"search_space": {"freeze": [0, 10]}, "search_trials": "2"}, "search_trials must be an integer, not '2'"),
])
def test_bad_parameters_are_named(params, message):
    problems = parameter_problems({**parameter_defaults(), **params})
    assert len(problems) == 1 and message in problems[0], problems


def test_defaults_and_kfp_floats_pass():
    assert parameter_problems(parameter_defaults()) == []
    assert parameter_problems({"epochs": 3.0, "imgsz": 640.0, "batch": -1, "optimizer": "adamw",
                               "train_args": {"cos_lr": True, "nbs": 16.0}}) == []


@pytest.mark.parametrize("param, message", [
    ("freeze=99", "freeze 99 is beyond yolov5nu.pt's 25 layers (0-24)"),
    ("optimizer=Foo", "optimizer must be one of Ultralytics' auto, SGD, MuSGD"),
    ('train_args={"nonsense": 1}', "train_args has 'nonsense', which is not an Ultralytics training argument"),
    ('train_args={"epochs": 3}', "train_args sets 'epochs', which is a parameter of its own"),
    ("base_model=models/missing.pt", "base_model 'models/missing.pt' is neither a checkpoint Ultralytics publishes"),
    ("imgsz=100000", "imgsz 100000 is beyond 4096"),
    ("min_map50=x", "min_map50 must be a number, not 'x'"),
    ("lr0=NaN", "lr0 must be above 0 and at most 1, not nan"),
    ("lr0=1e9", "lr0 must be above 0 and at most 1"),
    ("patience=-1", "patience must be 0 or more, not -1"),
    ("workers=-1", "workers must be from 0 to 64, not -1"),
    ("seed=-1", "seed must be from 0 to"),
])
def test_values_only_training_would_catch_are_refused_before_any_step(param, message, tmp_path, capsys):
    """In this process: ``run_local_refused`` shows the command itself refusing the same way."""
    refused_in_one_line(capsys, ["run-local", "--output-dir", str(tmp_path / "out"), "--param", param], message)
    assert not (tmp_path / "out").exists()


def test_a_search_space_of_any_size_is_planned_without_listing_its_grid():
    from yolo_kfp.params.search_space import plan_trials

    keys = ["mosaic", "mixup", "degrees", "translate", "scale", "shear", "perspective", "fliplr", "hsv_h", "hsv_s"]
    space = {key: [i / 100 for i in range(100)] for key in keys}  # 100^10 combinations, beyond sys.maxsize
    assert parameter_problems({**parameter_defaults(), "search_space": space, "search_trials": 5}) == []
    plan = plan_trials(space, 5, 42)
    assert len({str(trial["settings"]) for trial in plan}) == 5 and plan == plan_trials(space, 5, 42)


def test_a_value_of_100_kb_is_checked_within_half_a_second_and_echoed_short():
    """Every parameter, given 100 KB shaped to make a backtracking pattern rescan: CPU time, as the test
    processes share the machine."""
    for parameter in run_parameters.PARAMETERS:
        for text in ("a" * 100_000, "x:=" * 33_000 + "@", "s3://b/" + "a/" * 50_000, "?a=&" * 25_000):
            value = {list: [text], dict: {"cfg": text}}.get(parameter.kind, text)
            started = time.process_time()
            problems = parameter_problems({**parameter_defaults(), parameter.name: value})
            assert time.process_time() - started < 0.5, (parameter.name, text[:6])
            assert all(len(problem) < 1000 for problem in problems), (parameter.name, text[:6])


def test_a_parameter_given_twice_is_refused(tmp_path, capsys):
    refused_in_one_line(capsys, ["run-local", "--output-dir", str(tmp_path / "out"), "--param", "epochs=0",
                                 "--param", "epochs=5"], "--param epochs is given twice: give it once")
    refused_in_one_line(capsys, ["submit", *HOST, "--param", "seed=1", "--param", "seed=1"], "--param seed is given")


def test_the_values_a_run_will_use_are_checked_after_demo_and_search_are_merged(tmp_path, capsys):
    refused_in_one_line(capsys, ["run-local", "--demo", "--search", "--output-dir", str(tmp_path / "out"),
                                 "--param", "optimizer=auto"], "search_space lr0 has no effect with optimizer auto")
    refused_in_one_line(capsys, ["run-local", "--demo", "--output-dir", str(tmp_path / "out"), "--param",
                                 "search_space={\"lr0\": [0.01, 0.02]}", "--param", "search_epochs=30"],
                        "search_epochs 30 is more than the run's epochs 25")
    assert not (tmp_path / "out").exists()
