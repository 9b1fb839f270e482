"""What every command owes its shell: its version, a step's stdout holding its JSON result alone, nothing
left in /tmp, no library warnings on the client commands, an output folder that is a file or empty refused,
and no folder of the user's written into by run-local."""

import json
import os
import subprocess

import pytest
from cli_process import CLI
from kfp_standin import KfpStandIn

from yolo_kfp import __version__
from yolo_kfp.cli import main

OWN_GROUP = 54321  # a group nothing else on this machine creates files with


def test_version_is_the_packages(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"yolo-kfp {__version__}\n"


@pytest.mark.parametrize("command", [
    ["run-local", "--demo"],
    ["step", "convert", "--raw", "RAW"],
    ["step", "train", "--data", "DATA"],
    ["step", "evaluate", "--data", "DATA", "--model", "MODEL"],
    ["step", "export", "--model", "MODEL"],
])
@pytest.mark.parametrize("under", [False, True])
def test_an_output_dir_that_is_a_file_is_refused_in_one_line(command, under, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    output_dir = taken / "run" if under else taken
    assert main([*command, "--output-dir", str(output_dir)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert f"--output-dir {output_dir} " in line and ("is a file" in line or f"under the file {taken}" in line)
    assert taken.read_text() == "not a folder"


@pytest.mark.parametrize("command", [["run-local", "--demo"], ["step", "train", "--data", "DATA"],
                                     ["predict", "IMAGE", "--model", "m.onnx", "--save"]])
def test_an_empty_output_folder_is_refused_as_it_would_be_the_current_one(command, capsys):
    flag = "--save" if "--save" in command else "--output-dir"
    args = [*command, ""] if flag == "--save" else [*command, "--output-dir", ""]
    assert main(args) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert f"{flag} is empty: name a folder" in line


def test_run_local_touches_no_folder_it_did_not_make_and_reuses_its_own(tmp_path, capsys):
    from yolo_kfp.local.output_folder import MARKER, claim

    mine = tmp_path / "mine"
    (mine / "logs").mkdir(parents=True)
    (mine / "logs" / "important.txt").write_text("keep")
    assert main(["run-local", "--demo", "--output-dir", str(mine)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert f"--output-dir {mine} holds files that yolo-kfp did not write" in line
    assert "nothing in it was touched" in line
    assert sorted(p.name for p in mine.rglob("*")) == ["important.txt", "logs"]
    assert claim(str(tmp_path / "new")) == (str(tmp_path / "new"), False)
    assert (tmp_path / "new" / MARKER).is_file()
    (tmp_path / "new" / "metrics.json").write_text("{}")  # what a run leaves
    assert claim(str(tmp_path / "new")) == (str(tmp_path / "new"), True)
    (tmp_path / "empty").mkdir()
    assert claim(str(tmp_path / "empty")) == (str(tmp_path / "empty"), False)


def tmp_entries(group: int | None) -> set[str]:
    """/tmp's entries, or where ``group`` is given only those of that group."""
    entries = set()
    for name in os.listdir("/tmp"):
        try:
            if group is None or os.lstat(os.path.join("/tmp", name)).st_gid == group:
                entries.add(name)
        except FileNotFoundError:  # removed by its owner meanwhile
            pass
    return entries


def run_cli(args: list[str], group: int | None, tmpdir: str = "/tmp"):
    """A command as a user runs it: temporary files in /tmp itself, no Ultralytics config dir, torch cache or
    onnxruntime setting chosen for it (the tests' own keep theirs out of /tmp). Its stdout must parse as JSON."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("TMPDIR", "YOLO_CONFIG_DIR", "TORCHINDUCTOR_CACHE_DIR", "ORT_DISABLE_TELEMETRY")}
    result = subprocess.run([CLI, *args], env=env | {"TMPDIR": tmpdir}, capture_output=True, text=True,
                            timeout=600, group=group)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


@pytest.mark.slow
def test_steps_and_predict_print_only_their_json_and_leave_nothing_in_tmp(yolo_dataset, base_checkpoint, tmp_path):
    # Others on a shared machine write to /tmp meanwhile: where the test may (as root), the commands run under
    # a group of their own and only that group's entries count; elsewhere any new entry does.
    group = OWN_GROUP if os.geteuid() == 0 else None
    before = tmp_entries(group)
    model, exported = tmp_path / "model", tmp_path / "exported"
    trained = run_cli(["step", "train", "--data", yolo_dataset, "--output-dir", str(model), "--base-model",
                       base_checkpoint, "--epochs", "1", "--batch", "8", "--imgsz", "64", "--workers", "0"], group)
    assert trained["epochs"] == 1
    metrics = run_cli(["step", "evaluate", "--data", yolo_dataset, "--model", str(model),
                       "--output-dir", str(tmp_path / "evaluation")], group)
    assert "map50" in metrics
    assert run_cli(["step", "export", "--model", str(model), "--output-dir", str(exported)], group)["imgsz"] == 64
    images = os.path.join(yolo_dataset, "images", "test")
    assert isinstance(run_cli(["predict", "--model", str(exported), "--json", images], group), list)
    assert tmp_entries(group) - before == set()
    # A file a library makes only where none is yet (onnxruntime's telemetry session, .ses) may be in /tmp
    # already: a temporary folder of its own, empty, shows it too.
    own_tmp = tmp_path / "tmp"
    own_tmp.mkdir()
    run_cli(["predict", "--model", str(exported), "--json", images], group, str(own_tmp))
    assert os.listdir(own_tmp) == []


def test_client_commands_warn_nothing_of_kfps_own(recwarn):  # recwarn records every warning, repeats too
    with KfpStandIn() as server:
        host = ["--host", server.url, "--allow-plain-http-token"]
        assert main(["upload", *host]) == 0
        assert main(["submit", *host]) == 0
        assert main(["schedule", "--cron", "@daily", *host]) == 0
    assert [str(w.message) for w in recwarn if issubclass(w.category, FutureWarning)] == []
