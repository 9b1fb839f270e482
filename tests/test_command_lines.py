"""Command lines a user or a red-teamer gets wrong, each refused the same way: its exit code, one
``yolo-kfp: error:`` line on stderr naming the option or parameter, no traceback, no secret repeated, within
seconds, before anything reaches a server (nothing listens where they point) or any step runs."""

import time

import pytest
from test_predict_inputs import bomb_png

from yolo_kfp.cli import main

SECRET = "s3cr3t-never-shown"
NOWHERE = ["--host", "http://127.0.0.1:9", "--token", "t", "--allow-plain-http-token"]  # nothing listens on 9
NO_MODEL_SERVER = "http://127.0.0.1:9/v2/models/yolo-kfp"
RUN = ["run-local", "--output-dir", "{tmp}/out"]
SEARCH_SPACE = 'search_space={"lr0": [0.01, 0.02]}'

# (command line, exit code, what the error line says); {tmp} is the test's folder (see ``files``).
COMMAND_LINES = [
    # run-local: its values and its folder
    ([*RUN, "--param", "nonsense"], 2, "--param wants KEY=VALUE, not 'nonsense'"),
    ([*RUN, "--param", "epochs=0", "--param", "epochs=5"], 2, "--param epochs is given twice"),
    ([*RUN, "--param", "epoch=3"], 2, "unknown parameter 'epoch'"),
    ([*RUN, "--param", "data_connection=someone-elses"], 2, "unknown parameter 'data_connection'"),
    ([*RUN, "--param", "gpu_tolerations=[]"], 2, "fixed when compiling"),
    (["run-local", "--output-dir", ""], 2, "--output-dir is empty"),
    (["run-local", "--demo", "--output-dir", "{tmp}/taken"], 2, "--output-dir {tmp}/taken is a file"),
    (["run-local", "--demo", "--output-dir", "{tmp}/taken/run"], 2, "lies under the file {tmp}/taken"),
    (["run-local", "--demo", "--output-dir", "{tmp}/users"], 2, "--output-dir {tmp}/users holds files that yolo"),
    (["run-local", "--search", "--output-dir", "{tmp}/out"], 2, "--search is the demo's small search"),
    (["run-local", "--demo", "--search", "--output-dir", "{tmp}/out", "--param", "optimizer=auto"], 2,
     "search_space lr0 has no effect with optimizer auto"),
    (["run-local", "--demo", "--output-dir", "{tmp}/out", "--param", SEARCH_SPACE, "--param", "optimizer=SGD",
      "--param", "search_epochs=30"], 2, "search_epochs 30 is more than the run's epochs 25"),
    (["run-local", "--demo", "--mlflow", "--output-dir", "{tmp}/out", "--param",
      "mlflow_tracking_uri=http://127.0.0.1:5000"], 2, "--mlflow starts a tracking server for the run"),
    ([*RUN, "--param", "search_trials=5"], 2, "search_trials is 5, but search_space is empty"),
    ([*RUN, "--param", "search_epochs=5"], 2, "search_epochs is 5, but search_space is empty"),
    ([*RUN, "--param", 'search_space={"freeze": [10, 10.0]}'], 2, "search_space freeze lists a value more than once"),
    ([*RUN, "--param", 'search_space={"epochs": [5, 10]}', "--param", "search_epochs=3"], 2,
     "search_epochs 3 has no effect when search_space searches epochs"),
    ([*RUN, "--param", 'search_space={"lr0": {"min": 0.001, "max": 0.1}}', "--param", "optimizer=SGD"], 2,
     "search_space lr0 is a range, which is sampled: set search_trials"),
    ([*RUN, "--param", 'search_space={"lr0": [0.01, 0.02]}', "--param", "optimizer=SGD", "--param",
      "search_trials=3"], 2, "search_trials 3 is more than the 2 combinations"),
    ([*RUN, "--param", 'search_space={"nothing": [1, 2]}'], 2, "search_space has 'nothing', which is not searched"),
    ([*RUN, "--param", "search_trials=65"], 2, "search_trials must be from 0 to 64, not 65"),
    ([*RUN, "--param", f"mlflow_tracking_uri=http://u:{SECRET}@mlflow.example.com"], 2,
     "mlflow_tracking_uri 'http://***@mlflow.example.com' has credentials in it"),
    ([*RUN, "--param", f"base_model=s3://key:{SECRET}@models/m.pt"], 2, "base_model 's3://***@models/m.pt' has"),
    ([*RUN, "--param", f"publish_to=s3://models/p?X-Amz-Signature={SECRET}"], 2, "publish_to 's3://models/p?"),
    ([*RUN, "--param", f"extra_data=key:{SECRET}@bucket/mine"], 2, "extra_data '***@bucket/mine' has credentials"),
    ([*RUN, "--param", f'train_args={{"cfg": "http://u:{SECRET}@h/c.yaml"}}'], 2, "train_args '{\"cfg\": \"http"),
    ([*RUN, "--param", "mlflow_tracking_uri=ftp://mlflow.example.com"], 2, "mlflow_tracking_uri must be empty or"),
    ([*RUN, "--param", "model_registry_url=registry:8080"], 2, "model_registry_url must be empty or a Kubeflow"),
    ([*RUN, "--param", "imgsz=650"], 2, "imgsz 650 is not a multiple of 32"),
    ([*RUN, "--param", "imgsz=100000"], 2, "imgsz 100000 is beyond 4096"),
    ([*RUN, "--param", "lr0=NaN"], 2, "lr0 must be above 0 and at most 1, not nan"),
    ([*RUN, "--param", "lr0=1e9"], 2, "lr0 must be above 0 and at most 1"),
    ([*RUN, "--param", "epochs=true"], 2, "epochs must be an integer, not 'true'"),
    ([*RUN, "--param", "epochs=0"], 2, "epochs must be from 1 to 10000, not 0"),
    ([*RUN, "--param", "classes=[]"], 2, "classes must be a non-empty list"),
    ([*RUN, "--param", 'classes=["Car", "Car"]'], 2, "classes lists ['Car'] more than once"),
    ([*RUN, "--param", "split=val"], 2, "split must be one of 'train', 'validation', 'test', not 'val'"),
    ([*RUN, "--param", "split_ratios=[0.8, 0.1, 0.2]"], 2, "split_ratios must be three non-negative numbers"),
    ([*RUN, "--param", "freeze=99"], 2, "freeze 99 is beyond yolov5nu.pt's 25 layers"),
    ([*RUN, "--param", "optimizer=Foo"], 2, "optimizer must be one of Ultralytics' auto, SGD"),
    ([*RUN, "--param", 'train_args={"nonsense": 1}'], 2, "train_args has 'nonsense', which is not an Ultralytics"),
    ([*RUN, "--param", "train_args={bad"], 2, "train_args must be a JSON object, not '{bad'"),
    ([*RUN, "--param", "train_args=[]"], 2, "train_args must be a JSON object, not '[]'"),
    ([*RUN, "--param", 'train_args={"epochs": 3}'], 2, "train_args sets 'epochs', which is a parameter of its own"),
    ([*RUN, "--param", 'train_args={"data": "x.yaml"}'], 2, "train_args may not set 'data'"),
    ([*RUN, "--param", "seed=-1"], 2, "seed must be from 0 to 4294967295, not -1"),
    ([*RUN, "--param", "min_map50=x"], 2, "min_map50 must be a number, not 'x'"),
    ([*RUN, "--param", "patience=-1"], 2, "patience must be 0 or more, not -1"),
    ([*RUN, "--param", "workers=-1"], 2, "workers must be from 0 to 64, not -1"),
    ([*RUN, "--param", "cache=gpu"], 2, "cache must be one of '', 'ram', 'disk', not 'gpu'"),
    ([*RUN, "--param", "max_samples_per_class=0"], 2, "max_samples_per_class must be 1 or more, not 0"),
    ([*RUN, "--param", "base_model_sha256=abc"], 2, "base_model_sha256 must be empty or 64 hexadecimal digits"),
    ([*RUN, "--param", "base_model=models/missing.pt"], 2, "base_model 'models/missing.pt' is neither"),
    ([*RUN, "--param", "publish_to=models/yolo"], 2, "publish_to must be empty or an S3 URL"),
    ([*RUN, "--param", "mlflow_experiment= "], 2, "mlflow_experiment must be a name of 1 to 250 printable"),
    ([*RUN, "--param", "mlflow_experiment=" + "\x1b[31mred" * 30_000], 2, "\\x1b[31mred"),
    # submit: credentials' hosts, options, tokens, the server's address
    (["submit", *NOWHERE, "--param", "mlflow_tracking_uri=https://mlflow.example.com"], 2,
     "names 'mlflow.example.com', not a host this pipeline was compiled for (none)"),
    (["submit", *NOWHERE, "--param", "model_registry_url=https://registry.example.com"], 2,
     "--service-hosts registry.example.com"),
    (["submit", *NOWHERE, "--service-hosts", '["mlflow.example.com"]', "--param",
      "mlflow_tracking_uri=http://mlflow.example.com"], 2, "is plain http:// to 'mlflow.example.com'"),
    (["submit", *NOWHERE, "--service-hosts", '["https://mlflow.example.com"]'], 2, "--service-hosts: 'https://"),
    (["submit", *NOWHERE, "--service-hosts", "mlflow.example.com"], 2, "argument --service-hosts: not JSON"),
    (["submit", *NOWHERE, "--wait", "--poll-seconds", "-1"], 2, "argument --poll-seconds: '-1' is not from 1"),
    (["submit", *NOWHERE, "--wait", "--poll-seconds", "nan"], 2, "argument --poll-seconds: 'nan' is not from 1"),
    (["submit", *NOWHERE, "--wait", "--poll-seconds", "0"], 2, "argument --poll-seconds: '0' is not from 1"),
    (["submit", "--host", "http://127.0.0.1:9", "--token-file", "{tmp}/two-lines"], 2,
     "--token-file {tmp}/two-lines holds 2 lines"),
    (["submit", "--host", "http://127.0.0.1:9", "--token-file", "{tmp}/binary"], 2,
     "--token-file {tmp}/binary is not text"),
    (["submit", "--host", "http://127.0.0.1:9", "--token-file", "{tmp}/missing"], 2,
     "--token-file {tmp}/missing cannot be read"),
    (["submit", "--host", "http://127.0.0.1:9", "--token", f"{SECRET} x"], 2, "--token holds a space"),
    (["submit", "--host", "http://127.0.0.1:9", "--token", "t", "--token-file", "{tmp}/two-lines"], 2,
     "argument --token-file: not allowed with argument --token"),
    (["submit", "--token", "t"], 2, "the following arguments are required: --host"),
    (["submit", "--host", "127.0.0.1:8888", "--token", "t"], 2, "'127.0.0.1:8888'"),
    (["submit", *NOWHERE, "--ca-bundle", "{tmp}/missing.pem"], 2, "--ca-bundle {tmp}/missing.pem is not there"),
    (["submit", *NOWHERE, "--param", "seed=1", "--param", "seed=1"], 2, "--param seed is given twice"),
    (["submit", *NOWHERE, "--server", "kfp-1.8"], 2, "needs KFP 2.2"),
    (["submit", *NOWHERE, "--gpus", "0"], 2, "--gpus must be 1 or more, not 0"),
    (["submit", *NOWHERE, "--gpus", "99"], 2, "--gpus 99 is more than a node has"),
    (["submit", *NOWHERE, "--kueue-queue", "bad queue!"], 2, "--kueue-queue 'bad queue!' is not a Kubernetes label"),
    (["submit", *NOWHERE, "--data-connection", "Not_A_Secret"], 2, "--data-connection 'Not_A_Secret' is not a"),
    (["submit", *NOWHERE, "--gpu-tolerations", '[{"taint": "x"}]'], 2, "each of --gpu-tolerations must be"),
    (["submit", *NOWHERE, "--step-resources", '{"train": {"cpu": "4"}}'], 2, "step_resources: 'train' is not"),
    (["submit", *NOWHERE, "--server", "rhoai-2.22", "--param", 'search_space={"epochs": [5, 10]}'], 2,
     "but the pipeline compiled for rhoai-2.22 has no search"),
    (["submit", *NOWHERE, "--run-name", "\x1b]0;owned\x07"], 2, "argument --run-name: wants 1 to 250 printable"),
    (["submit", *NOWHERE, "--experiment", ""], 2, "argument --experiment: wants 1 to 250 printable characters"),
    (["upload", *NOWHERE, "--version", "v1\x1b[2J"], 2, "argument --version: wants 1 to 250 printable characters"),
    # compile and schedule
    (["compile"], 2, "the following arguments are required: --output"),
    (["compile", "--output", "{tmp}/p.txt"], 2, 'should end with ".yaml"'),
    (["compile", "--output", "{tmp}/users"], 2, "--output {tmp}/users is a folder"),
    (["compile", "--output", "{tmp}/notes.yaml"], 2, "--output {tmp}/notes.yaml exists and is not a pipeline"),
    (["compile", "--output", "{tmp}/p.yaml", "--shm-size", "1"], 2, "--shm-size 1 is below"),
    (["compile", "--output", "{tmp}/p.yaml", "--data-image", "data:latest"], 2, "--data-image"),
    (["schedule", *NOWHERE, "--cron", "61 * * * * *"], 2, "61"),
    (["schedule", *NOWHERE, "--list", "--param", "epochs=3"], 2, "--param and --catch-up go with --cron"),
    (["schedule", *NOWHERE, "--cron", "@daily", "--name=-nightly"], 2, "would name a Kubernetes ScheduledWorkflow"),
    (["schedule", *NOWHERE], 2, "one of the arguments --cron --list --enable --disable --delete is required"),
    (["schedule", *NOWHERE, "--cron", "@daily", "--param", "optimizer=auto", "--param",
      'search_space={"lr0": [0.1, 0.2]}'], 2, "search_space lr0 has no effect with optimizer auto"),
    # predict
    (["predict", "{tmp}/street.jpg", "--model", "{tmp}/best.pt"], 2, "export it first with 'yolo-kfp step export"),
    (["predict", "{tmp}/street.jpg", "--url", NO_MODEL_SERVER, "--timeout", "1e308"], 2,
     "argument --timeout: '1e308' is not from 0.1 to 3600 seconds"),
    (["predict", "{tmp}/street.jpg", "--model", "{tmp}/best.pt", "--conf", "1.5"], 2, "--conf 1.5 is not between"),
    (["predict", "{tmp}/bomb.png", "--url", NO_MODEL_SERVER], 2, "{tmp}/bomb.png is 20000 x 20000 pixels"),
    (["predict", "{tmp}/bomb.png", "--url", NO_MODEL_SERVER, "--save", "{tmp}/drawn"], 2, "20000 x 20000 pixels"),
    (["predict", "{tmp}/missing.jpg", "--url", NO_MODEL_SERVER], 2, "no such image: {tmp}/missing.jpg"),
    (["predict", "{tmp}/street.jpg", "--url", NO_MODEL_SERVER, "--ca-bundle", "{tmp}/missing.pem"], 2,
     "--ca-bundle {tmp}/missing.pem is not there"),
    (["predict", "{tmp}/street.jpg", "--url", f"http://u:{SECRET}@127.0.0.1:9/v2/models/m"], 2, "***@127.0.0.1"),
    (["predict", "{tmp}/street.jpg", "--url", NO_MODEL_SERVER, "--token-file", "{tmp}/two-lines"], 2,
     "holds 2 lines"),
    (["predict", "{tmp}/street.jpg", "--model", "{tmp}/best.pt", "--save", ""], 2, "--save is empty"),
    # step
    (["step", "train", "--data", "{tmp}/missing", "--output-dir", "{tmp}/o"], 2, "--data {tmp}/missing is not there"),
    (["step", "train", "--data", "{tmp}", "--output-dir", ""], 2, "--output-dir is empty"),
    (["step", "train", "--data", "{tmp}/broken-data", "--output-dir", "{tmp}/o"], 2,
     "{tmp}/broken-data/dataset.yaml is not YAML"),
    (["step", "train", "--data", "{tmp}/users", "--output-dir", "{tmp}/o"], 2, "{tmp}/users holds no dataset.yaml"),
    (["step", "train", "--data", "{tmp}", "--output-dir", "{tmp}/o", "--train-args", "{bad"], 2,
     "argument --train-args: train_args must be a JSON object"),
    (["step", "train", "--data", "{tmp}", "--output-dir", "{tmp}/o", "--epochs", "0"], 2, "argument --epochs"),
    (["step", "convert", "--raw", "{tmp}/missing", "--output-dir", "{tmp}/o"], 2, "--raw {tmp}/missing is not there"),
    (["step", "convert", "--raw", "{tmp}", "--output-dir", "{tmp}/o", "--classes", "[1"], 2, "argument --classes"),
    (["step", "export", "--model", "{tmp}/model.onnx", "--output-dir", "{tmp}/o"], 2, "no such model"),
    (["step", "evaluate", "--data", "{tmp}/missing", "--model", "m.pt", "--output-dir", "{tmp}/o"], 2,
     "--data {tmp}/missing is not there"),
    (["step", "convert", "--raw", "{tmp}", "--output-dir", "{tmp}/users"], 2,
     "--output-dir {tmp}/users holds files that yolo-kfp did not write"),
    (["step", "download"], 2, "the following arguments are required: --output-dir"),
    (["bogus"], 2, "invalid choice: 'bogus'"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """What the command lines point at: a file where a folder goes, a user's folder, token files, images."""
    from PIL import Image

    tmp = tmp_path_factory.mktemp("command-lines")
    (tmp / "taken").write_text("not a folder")
    (tmp / "users" / "logs").mkdir(parents=True)
    (tmp / "users" / "logs" / "important.txt").write_text("keep")
    (tmp / "two-lines").write_text(f"{SECRET}\nsecond\n")
    (tmp / "binary").write_bytes(b"\xff\xfe" + SECRET.encode())
    Image.new("RGB", (64, 48), (90, 120, 200)).save(tmp / "street.jpg")
    bomb_png(tmp / "bomb.png")
    (tmp / "best.pt").write_bytes(b"PK\x03\x04 a checkpoint")
    (tmp / "notes.yaml").write_text("mine: true\n")
    (tmp / "broken-data").mkdir()
    (tmp / "broken-data" / "dataset.yaml").write_text("train: [unclosed\n")
    return tmp


def test_there_are_at_least_80_command_lines():
    assert len(COMMAND_LINES) >= 80


@pytest.mark.parametrize("argv, code, says", COMMAND_LINES, ids=range(len(COMMAND_LINES)))
def test_a_command_line_is_refused_in_one_line(files, argv, code, says, capsys, monkeypatch):
    monkeypatch.delenv("YOLO_KFP_DEBUG", raising=False)
    argv = [arg.replace("{tmp}", str(files)) for arg in argv]
    started = time.monotonic()
    assert main(argv) == code
    assert time.monotonic() - started < 15
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("yolo-kfp: error: "), err[-2000:]
    assert says.replace("{tmp}", str(files)) in lines[0], lines[0]
    assert len(lines[0]) < 2100 and "\x1b" not in lines[0]
    assert "Traceback" not in out + err and SECRET not in out + err
    assert (files / "users" / "logs" / "important.txt").read_text() == "keep"
    assert (files / "notes.yaml").read_text() == "mine: true\n"
    assert not (files / "out").exists() and not (files / "drawn").exists() and not (files / "o").exists()
