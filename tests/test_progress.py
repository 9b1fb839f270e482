"""run-local's progress: each task's lines to its own log (ParallelFor iterations run in threads side by side),
events for the terminal, and the lines drawn from them, on kfp.local 2.17's output as recorded, without a run."""

import io
import json
import os
import subprocess
import sys
import threading

from yolo_kfp.local.progress import Progress, read_epochs, step_figure, summary_lines
from yolo_kfp.local.runner import failure_line, step_timings
from yolo_kfp.local.task_logs import TaskLogs

CYAN, GREEN, RED, RESET = "\x1b[96m", "\x1b[92m", "\x1b[91m", "\x1b[0m"
RUN = "/out/pipeline-root/yolo-kfp-2026-12-06-06-16-55-909902"


def recorded(task: str, folder: str, status: str = "SUCCESS", body: tuple = ()) -> list[str]:
    """What kfp.local 2.17 prints for one task (shortened): its marker lines, the executor input that names
    the task's folder, the task's own lines (indented), its outputs and the closing rule."""
    return [f"06:16:56.535 - INFO - Executing task {CYAN}'{task}'{RESET}",
            "06:16:56.536 - INFO - Streamed logs:", "",
            f"    [KFP Executor 2026-12-06 06:16:56,584 INFO]: Looking for component `{task}`",
            '        "outputs": {',
            f'            "outputFile": "{RUN}/{folder}/Output"',
            f'            "outputFile": "{RUN}/{folder}/executor_output.json"',
            "        }",
            *(f"    {line}" for line in body), "    ", "",
            f"06:17:03.061 - INFO - Task {CYAN}'{task}'{RESET} finished with status "
            f"{GREEN if status == 'SUCCESS' else RED}{status}{RESET}",
            f"06:17:03.061 - INFO - Task {CYAN}'{task}'{RESET} outputs:",
            "    Output: ''",
            "-" * 80]


def route_all(logs: TaskLogs, stream_lines: dict[str, list[str]]) -> None:
    """Each list written to one stream by a thread of its own, all of them interleaved line by line."""
    turn = threading.Barrier(len(stream_lines))
    stream = logs.stream(io.StringIO())

    def write(lines):
        for line in lines:
            stream.write(line[:5])  # partial writes, completed by the rest of the line
            stream.write(line[5:] + "\n")
            turn.wait(timeout=10)

    longest = max(len(lines) for lines in stream_lines.values())
    threads = [threading.Thread(target=write, args=(lines + [""] * (longest - len(lines)),))
               for lines in stream_lines.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_parallel_iterations_get_a_log_each_and_events_name_them(tmp_path):
    events = []
    logs = TaskLogs(str(tmp_path / "logs"), events.append)
    route_all(logs, {
        "0": recorded("download-shard", "for-loop-1-iteration-0/download-shard", body=("fetched shard 0",)),
        "1": recorded("download-shard", "for-loop-1-iteration-1/download-shard", status="FAILURE",
                      body=("[KFP Executor 2026-12-06 06:16:58,000 WARNING]: 3 images unreadable: dropped",
                            "Traceback (most recent call last):", "OSError: cut")),
    })
    stream = logs.stream(io.StringIO())
    stream.write("2026-12-06 06:17:04,000 INFO root: Task download-shard failed (attempt 1/3). Retrying in 5.0s...\n")
    logs.close()

    files = sorted(os.listdir(tmp_path / "logs"))
    assert files == ["download-shard-0.log", "download-shard-1.log", "pipeline.log"]
    first, second = ((tmp_path / "logs" / name).read_text() for name in files[:2])
    assert "fetched shard 0" in first and "fetched shard 0" not in second
    assert "OSError: cut" in second and "OSError" not in first
    assert "\x1b[" not in first + second and first.endswith("-" * 80 + "\n")
    assert "Retrying in 5.0s" in (tmp_path / "logs" / "pipeline.log").read_text()

    by_kind = {}
    for event in events:
        by_kind.setdefault(event["event"], []).append(event)
    assert len(by_kind["start"]) == 2 and {e["task"] for e in by_kind["start"]} == {"download-shard"}
    ends = {os.path.basename(e["log"]): e for e in by_kind["end"]}
    assert ends["download-shard-0.log"]["status"] == "SUCCESS" and ends["download-shard-1.log"]["status"] == "FAILURE"
    assert {e["folder"] for e in by_kind["folder"]} == {f"{RUN}/for-loop-1-iteration-{i}/download-shard"
                                                        for i in (0, 1)}
    notes = [e["text"] for e in by_kind["note"]]
    assert notes == ["3 images unreadable: dropped", "failed (attempt 1 of 3), trying again in 5 s"]


def test_a_resumed_training_is_a_note_and_library_warnings_are_not(tmp_path):
    events = []
    logs = TaskLogs(str(tmp_path / "logs"), events.append)
    stream = logs.stream(io.StringIO())
    body = ("[KFP Executor 2026-12-06 06:30:00,000 INFO]: resuming /out/checkpoints/ab/last.pt at epoch 5 of 8",
            "WARNING ⚠️ 'name=model' automatically updated to 'name=base-checkpoint'.")
    warning = ("/venv/kfp/local/orchestrator/task_executor.py:100: UserWarning: Task 'train': settings ['cpu_limit'] "
               "have no effect in the current local runner and will be ignored.")
    stream.write("\n".join([warning, *recorded("train", "train", body=body)]) + "\n")
    logs.close()
    assert [e["text"] for e in events if e["event"] == "note"] == ["resuming at epoch 5 of 8 from its kept checkpoint"]
    assert "have no effect" in (tmp_path / "logs" / "pipeline.log").read_text()
    assert "automatically updated" in (tmp_path / "logs" / "train.log").read_text()


def executor_output(tmp_path, name: str, output: dict) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(output))
    return str(path)


RESULTS_HEADER = ("epoch,time,train/box_loss,train/cls_loss,train/dfl_loss,metrics/precision(B),metrics/recall(B),"
                  "metrics/mAP50(B),metrics/mAP50-95(B),val/box_loss,val/cls_loss,val/dfl_loss,lr/pg0,lr/pg1,lr/pg2\n")


def results_row(epoch: int) -> str:
    return f"{epoch},{4.4 * epoch},2.1,2.4,2.1,0.27,0.2,{0.03 * epoch:.2f},0.09,1.8,1.7,1.4,0.0006,0.0006,0.0006\n"


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_piped_progress_is_plain_lines_with_figures_epochs_and_the_failed_log(tmp_path):
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, epochs=8, clock=clock)
    folder = tmp_path / "train"
    (folder / "model").mkdir(parents=True)
    results = folder / "model" / "results.csv"
    convert = executor_output(tmp_path, "convert", {"artifacts": {"dataset": {"artifacts": [{"metadata": {
        "images": 263, "boxes": 351.0, "split_images": {"train": 197, "val": 33, "test": 33}}}]}}})

    progress.handle({"event": "start", "id": 1, "task": "convert"})
    clock.now += 3.25
    progress.handle({"event": "end", "id": 1, "task": "convert", "status": "SUCCESS", "log": "/o/logs/convert.log",
                     "outputs": convert})
    progress.handle({"event": "start", "id": 2, "task": "train"})
    progress.handle({"event": "folder", "id": 2, "task": "train", "folder": str(folder)})
    progress.tick()  # no results.csv yet
    results.write_text(RESULTS_HEADER + "".join(results_row(e) for e in range(1, 4)) + "4,17.6,2.1")  # 4: half written
    progress.tick()
    with open(results, "a") as f:
        f.write(",2.4,2.1,0.27,0.2,0.12,0.09,1.8,1.7,1.4,0.0006,0.0006,0.0006\n" +
                "".join(results_row(e) for e in range(5, 7)))
    progress.tick()
    progress.handle({"event": "note", "task": "train", "text": "checkpoint not kept: disk full"})
    progress.handle({"event": "end", "id": 2, "task": "train", "status": "FAILURE", "log": "/o/logs/train.log",
                     "outputs": None})

    lines = out.getvalue().splitlines()
    assert lines == [
        "convert           started",
        "convert           done      3.2 s  263 images, 351 boxes -> train/val/test 197/33/33",
        "train             started (8 epochs)",
        "train             epoch   3/8  box 2.100  cls 2.400  dfl 2.100  val mAP50 0.090",
        "train             epoch   6/8  box 2.100  cls 2.400  dfl 2.100  val mAP50 0.180",
        "train             checkpoint not kept: disk full",
        "train             FAILED    0.0 s  log: /o/logs/train.log"]
    assert progress.failed_logs == {"train": "/o/logs/train.log"}


def test_a_retried_or_looped_task_is_announced_once_and_each_iteration_ends_on_its_own_line(tmp_path):
    out = io.StringIO()
    progress = Progress(out, epochs=3)
    shard = executor_output(tmp_path, "shard", {"artifacts": {"raw_shard": {"artifacts": [{"metadata": {
        "images": 1000, "reused_images": 12}}]}}})
    for number in (1, 2):
        progress.handle({"event": "start", "id": number, "task": "download-shard"})
    for number in (2, 1):
        progress.handle({"event": "end", "id": number, "task": "download-shard", "status": "SUCCESS",
                         "log": f"/o/logs/download-shard-{number - 1}.log", "outputs": shard})
    lines = [line.split() for line in out.getvalue().splitlines()]
    assert [line[0] for line in lines] == ["download-shard", "download-shard-1", "download-shard-0"]
    assert lines[1][-5:] == ["1,000", "images", "fetched", "(12", "reused)"]


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_training_is_a_bar(tmp_path):
    out = Terminal()
    progress = Progress(out, epochs=4)
    (tmp_path / "train" / "model").mkdir(parents=True)
    (tmp_path / "train" / "model" / "results.csv").write_text(RESULTS_HEADER + results_row(1) + results_row(2))
    progress.handle({"event": "start", "id": 1, "task": "train"})
    progress.handle({"event": "folder", "id": 1, "task": "train", "folder": str(tmp_path / "train")})
    progress.tick()
    progress.close()
    assert "\r" in out.getvalue()
    drawn = out.getvalue().rsplit("\r", 1)[-1]
    assert "2/4 [" in drawn and "box 2.10 cls 2.40 dfl 2.10 val mAP50 0.060" in drawn, drawn


def test_figures_of_the_steps_from_their_recorded_outputs():
    def artifact(**metadata):
        return {"artifacts": {"x": {"artifacts": [{"metadata": metadata}]}}}

    assert step_figure("plan-download", {"parameterValues": {"Output": ["shard 0", "shard 1"]},
                                         **artifact(images=1500.0)}) == "1,500 images to fetch in 2 shard(s)"
    assert step_figure("evaluate", artifact(map50=0.358279, map50_95=0.222217)) == "test mAP50 0.358, mAP50-95 0.222"
    assert step_figure("evaluate", artifact(map50=0.36, map50_95=0.22, coco_AP50=0.3512, coco_AP=0.2)) == \
        "test mAP50 0.360, mAP50-95 0.220; COCO AP50 0.351, AP 0.200"
    assert step_figure("export", artifact(opset=17, imgsz=160, checked_images=16)) == \
        "ONNX opset 17, 160 px, checked on 16 images"
    assert step_figure("gate", {"parameterValues": {"Output": "keep"}, **artifact(reasons=["mAP50 0.3 < 0.99"])}) == \
        "decision: keep (mAP50 0.3 < 0.99)"
    trial = artifact(val_map50_95=0.41234, settings={"lr0": 0.002, "freeze": 10}, epochs=5)
    assert step_figure("train-trial", trial) == "val mAP50-95 0.412 (lr0 0.002, freeze 10, 5 epochs)"
    search = {"winner": {"trial": 2, "settings": {"lr0": 0.02}, "val": {"map50_95": 0.5}}}
    assert step_figure("choose-trial", {"parameterValues": {"Output": json.dumps(search)}}) == \
        "winner: trial 2 (lr0 0.02, val mAP50-95 0.500)"
    assert step_figure("evaluate", artifact()) == ""  # a figure missing: no line broken
    assert step_figure("a-new-step", {}) == ""


def test_summary_names_every_output(tmp_path):
    metrics = {"map50": 0.9, "map50_95": 0.6, "precision": 0.8, "recall": 0.7, "images": 33,
               "per_class": {"Car": {"ap50": 0.9, "instances": 12}, "Bicycle": {"ap50": None, "instances": 0}},
               "coco": {"AP": 0.55, "AP50": 0.88, "AP75": None, "APsmall": 0.1, "AR100": 0.71}}
    result = {"metrics": metrics, "publication": "published: s3://models/yolo-kfp/v1",
              "timings": {"steps": {"download": 5.69, "train": 15.62}, "total": 47.36, "outside_steps": 26.05}}
    text = "\n".join(summary_lines(result, "/o"))
    for output in ("metrics.json", "report.html", "best.pt", "model.onnx", "timings.json", "logs/"):
        assert f"  {output} " in text
    assert "Bicycle              AP50 -" in text and "download 5.7, train 15.6; total 47.4" in text
    assert "\nCOCO (pycocotools): AP 0.550  AP50 0.880  AP75 -  AR100 0.710\n" in text
    assert text.endswith("model published: s3://models/yolo-kfp/v1")
    assert "search" not in text
    trials = [{"trial": 0, "settings": {"freeze": 0}, "val": {"map50_95": 0.3}},
              {"trial": 1, "settings": {"freeze": 10}, "val": {"map50_95": 0.25}}]
    text = "\n".join(summary_lines({**result, "search": {"trials": trials, "winner": trials[0]}}, "/o"))
    assert "search.html    the search's 2 trials, table and picture; won by trial 0 (freeze 0, val mAP50-95 0.300)" \
        in text and "  search.json " in text


def test_timings_count_parallel_tasks_once_in_the_wall_time(tmp_path):
    """Work seconds add up per step; the time outside any step is the wall time no task was working in, so
    trials or shards side by side do not make it negative."""
    def task(folder, seconds, ended):
        os.makedirs(tmp_path / folder)
        path = tmp_path / folder / "executor_output.json"
        path.write_text(json.dumps({"artifacts": {"out": {"artifacts": [{"metadata": {"seconds": seconds}}]}}}))
        os.utime(path, (ended, ended))

    task("convert", 10, 1010)  # works 1000-1010
    for i in range(4):  # four trials side by side, 1010-1030
        task(f"for-loop-2-iteration-{i}/train-trial", 20, 1030)
    task("train", 30, 1070)  # 1040-1070
    timings = step_timings(str(tmp_path), total=100)
    assert timings["steps"] == {"convert": 10, "search": 80, "train": 30}
    assert timings["outside_steps"] == 40


def test_a_failure_line_names_the_steps_log():
    message = "Pipeline failed. Inner task failed: 'train'"
    line = failure_line(message, ["Traceback (most recent call last):", "  File x", "ValueError: bad"],
                        "/o/logs/train.log")
    assert line == ("step 'train' failed: ValueError: bad -- fix the value it names and run again "
                    "(log: /o/logs/train.log)")


def test_output_to_takes_the_descriptors_subprocesses_included(tmp_path):
    log = tmp_path / "setup.log"
    script = ("import subprocess, sys\n"
              "from yolo_kfp.local.progress import output_to\n"
              f"with output_to({str(log)!r}):\n"
              "    print('from python')\n"
              "    subprocess.run([sys.executable, '-c', 'import sys; print(1); print(2, file=sys.stderr)'])\n"
              "print('after')\n")
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert log.read_text().split() == ["from", "python", "1", "2"]
    assert (shown.stdout, shown.stderr) == ("after\n", "")


def test_read_epochs_skips_what_is_not_an_epoch_yet(tmp_path):
    path = tmp_path / "results.csv"
    assert read_epochs(str(path)) == []
    path.write_text(RESULTS_HEADER.replace(",", ",  ") + results_row(1) + "2,8.5\n")
    assert read_epochs(str(path)) == [{"epoch": 1, "mAP50": 0.03, "box": 2.1, "cls": 2.4, "dfl": 2.1}]
