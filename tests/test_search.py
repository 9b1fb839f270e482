"""The search mode: the trial plan, the checks of a search space, the trials' view of the dataset (no test
split), the compiled fan-out, run-local's --search, and a local search of four trials through kfp.local with
MLflow and publication."""

import glob
import json
import os
import shutil

import pytest
import yaml
from conftest import CLASSES

from yolo_kfp.infra.packing import pack_in_place
from yolo_kfp.model.search import select_trial, trial_view
from yolo_kfp.params.search_space import plan_trials, trial_settings
from yolo_kfp.params.validation import deepest_freeze, parameter_problems
from yolo_kfp.pipeline.compile_options import CompileOptions
from yolo_kfp.pipeline.pipeline import compile_pipeline
from yolo_kfp.release.publish import read_latest

RUN = {"base_model": "yolov5nu.pt", "base_model_sha256": "", "epochs": 50, "batch": 16, "imgsz": 640, "freeze": 10,
       "workers": 8, "cache": "", "patience": 100, "optimizer": "auto", "lr0": 0.01, "seed": 42,
       "train_args": {"cos_lr": True}, "gpus": 1}


def record(trial: int, map50_95: float) -> dict:
    return {"trial": trial, "settings": {"lr0": 0.01 * (trial + 1)}, "epochs": 1, "mlflow_run_id": "", "seconds": 1.0,
            "val": {"map50": 0.5, "map50_95": map50_95, "precision": 0.5, "recall": 0.5}}


def test_a_grid_plan_is_every_combination_and_a_sample_is_deterministic_for_a_seed():
    space = {"lr0": [0.001, 0.01], "freeze": [0, 5, 10]}
    grid = plan_trials(space, 0, 1)
    assert [t["trial"] for t in grid] == list(range(6))
    assert sorted((t["settings"]["lr0"], t["settings"]["freeze"]) for t in grid) == sorted(
        (lr0, freeze) for lr0 in space["lr0"] for freeze in space["freeze"])
    assert plan_trials(space, 4, 7) == plan_trials(space, 4, 7)
    assert len({json.dumps(t["settings"]) for t in plan_trials(space, 4, 7)}) == 4  # distinct draws of the grid
    assert {json.dumps(plan_trials(space, 4, seed)) for seed in range(5)} != {json.dumps(plan_trials(space, 4, 7))}
    sampled = plan_trials({"lr0": {"min": 1e-4, "max": 1e-1, "log": True}, "freeze": {"min": 0, "max": 10}}, 5, 3)
    assert sampled == plan_trials({"lr0": {"min": 1e-4, "max": 1e-1, "log": True}, "freeze": {"min": 0, "max": 10}},
                                  5, 3)
    assert all(1e-4 <= t["settings"]["lr0"] <= 1e-1 and isinstance(t["settings"]["freeze"], int) and
               0 <= t["settings"]["freeze"] <= 10 for t in sampled)
    assert plan_trials({}, 0, 1) == [] and plan_trials({}, 5, 1) == []


def test_a_trial_trains_the_runs_settings_with_its_values_over_them():
    # KFP hands numbers inside a dict over as floats: 5.0 freezes 5 layers
    settings = trial_settings(RUN, {"freeze": 5.0, "lr0": 0.001, "mosaic": 0.5}, search_epochs=3)
    assert (settings["freeze"], settings["lr0"], settings["epochs"]) == (5, 0.001, 3)
    assert settings["train_args"] == {"cos_lr": True, "mosaic": 0.5}
    assert RUN["train_args"] == {"cos_lr": True}
    assert trial_settings(RUN, {"epochs": 7}, search_epochs=3)["epochs"] == 7  # a searched epochs wins
    assert trial_settings(RUN, {"lr0": 0.1})["epochs"] == 50  # the final training: full epochs


def test_the_winner_has_the_best_validation_score_and_a_tie_goes_to_the_first_trial():
    records = [record(0, 0.2), record(3, 0.4), record(1, 0.4), record(2, 0.1)]
    assert select_trial(records)["trial"] == 1
    with pytest.raises(ValueError, match="no trial records"):
        select_trial([])


@pytest.mark.parametrize(("p", "expected"), [
    ({"search_space": {"freeze": [0, 30]}}, "search_space freeze: freeze 30 is beyond yolov5nu.pt's 25 layers"),
    ({"search_space": {"imgsz": [160, 100]}}, "search_space imgsz: imgsz 100 is not a multiple of 32"),
    ({"search_space": {"lr0": {"min": 0.001, "max": 0.1}}, "optimizer": "SGD"},
     "search_space lr0 is a range, which is sampled: set search_trials"),
    ({"search_space": {"workers": [0, 4]}}, "search_space has 'workers', which is not searched"),
    ({"search_space": {"data": ["x.yaml"]}}, "search_space has 'data', which is not searched"),
    ({"search_space": {"mosaic": [0.5, 2]}}, "search_space mosaic: train_args mosaic=2 is not what Ultralytics takes"),
    ({"search_space": {"lr0": [0.01, 0.01]}, "optimizer": "SGD"}, "search_space lr0 lists a value more than once"),
    ({"search_space": {"lr0": [0.1, 0.01, 0.001, 0.0001], "freeze": list(range(20))}, "optimizer": "SGD"},
     "search_space is a grid of 80 combinations, more than 64 trials"),
    ({"search_space": {"lr0": [0.1, 0.01]}, "search_trials": 3, "optimizer": "AdamW"},
     "search_trials 3 is more than the 2 combinations"),
    ({"search_trials": 65}, "search_trials must be from 0 to 64, not 65"),
    ({"search_space": {"lr0": [0.01, 0.001]}}, "search_space lr0 has no effect with optimizer auto"),
])
def test_a_search_space_is_refused_in_one_line_naming_the_value(p, expected):
    (problem,) = parameter_problems(p)
    assert problem.startswith(expected), problem


def test_a_searched_freeze_is_checked_against_the_base_models_depth_like_freeze():
    assert parameter_problems({"search_space": {"lr0": [0.001, 0.01], "cos_lr": [True, False]},
                               "optimizer": "SGD"}) == []
    assert deepest_freeze({"freeze": 3, "search_space": {"freeze": {"min": 2, "max": 12}}}) == 12
    assert deepest_freeze({"freeze": 3}) == 3


@pytest.mark.parametrize("packed", [True, False])
def test_a_trial_sees_no_test_split(yolo_dataset, tmp_path, packed):
    """The view a trial trains on holds the train and val splits and a dataset.yaml naming no test split."""
    artifact = tmp_path / "dataset"
    shutil.copytree(yolo_dataset, artifact)
    assert os.listdir(artifact / "images" / "test")
    if packed:
        pack_in_place(str(artifact), ("images", "labels"))
    with trial_view(str(artifact)) as view:
        files = {os.path.relpath(p, view) for p in glob.glob(os.path.join(view, "**", "*"), recursive=True)
                 if os.path.isfile(p)}
        with open(os.path.join(view, "dataset.yaml")) as f:
            described = yaml.safe_load(f)
    assert not [name for name in files if "test" in name.split(os.sep)]
    assert {name.split(os.sep)[1] for name in files if os.sep in name} == {"train", "val"}
    assert "test" not in described and described["names"] == CLASSES
    assert not os.path.exists(view)


def test_the_trials_are_one_parallel_for_of_gpu_trial_tasks_without_a_run_unique_input(tmp_path):
    options = CompileOptions(kueue_queue="gpu-team", gpu_node_selector={"nvidia.com/gpu.product": "NVIDIA-A100"},
                             gpu_tolerations=[{"key": "team", "operator": "Exists"}])
    with open(compile_pipeline(str(tmp_path / "p.yaml"), options)) as f:
        spec, platform = yaml.safe_load_all(f)
    loops = {name: c for name, c in spec["components"].items()
             if "dag" in c and any(t["componentRef"]["name"] == "comp-train-trial" for t in c["dag"]["tasks"].values())}
    (loop_name, loop), = loops.items()
    assert list(loop["dag"]["tasks"]) == ["train-trial"]
    condition = next(c for c in spec["components"].values()
                     if "dag" in c and any(t["componentRef"]["name"] == loop_name for t in c["dag"]["tasks"].values()))
    (loop_task,) = [t for t in condition["dag"]["tasks"].values() if t["componentRef"]["name"] == loop_name]
    assert loop_task["parameterIterator"]["items"]["inputParameter"].endswith("preflight-trials")
    assert loop_task["iteratorPolicy"] == {"parallelismLimit": 4}
    container = spec["deploymentSpec"]["executors"]["exec-train-trial"]["container"]
    train = spec["deploymentSpec"]["executors"]["exec-train"]["container"]
    assert container["resources"] == train["resources"]
    assert container["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    trial, final = executors["exec-train-trial"], executors["exec-train"]
    for key in ("emptyDirMounts", "tolerations", "nodeSelector", "podMetadata", "secretAsEnv", "activeDeadlineSeconds"):
        # inside the loop a run parameter arrives through the loop's own input, pipelinechannel--<name>
        assert json.dumps(trial[key]).replace("pipelinechannel--", "") == json.dumps(final[key]), key
    assert trial["emptyDirMounts"][0]["mountPath"] == "/dev/shm"
    for name, value in loop["dag"]["tasks"]["train-trial"]["inputs"]["parameters"].items():
        assert "pipeline_job" not in json.dumps(value), name
    assert spec["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]["search"]["taskOutputParameter"][
        "producerTask"].startswith("condition-branches")


def run_folders(root, task: str) -> list[str]:
    return glob.glob(os.path.join(root, "*", "**", task, "executor_output.json"), recursive=True)


@pytest.mark.slow
def test_a_local_search_of_four_trials_trains_the_best_on_validation(mirror, base_checkpoint, s3, mlflow_server,
                                                                      tmp_path, monkeypatch):
    """Four trials, the winner trained, evaluated and published; with MLflow one parent run (the final
    training's), one nested run per trial, and the winner's settings on the registered version."""
    from mlflow import MlflowClient

    from yolo_kfp.infra.storage import Storage
    from yolo_kfp.local.runner import execute

    for name, value in {**s3.data_connection(), "YOLO_KFP_CHECKPOINTS": str(tmp_path / "checkpoints")}.items():
        monkeypatch.setenv(name, value)
    Storage.from_env().client.create_bucket(Bucket="searched")
    space = {"lr0": [0.001, 0.02], "freeze": [0, 10]}
    params = {"classes": CLASSES, "max_samples_per_class": 8, "split": "validation", "base_model": base_checkpoint,
              "epochs": 1, "batch": 8, "imgsz": 64, "workers": 0, "train_args": {"nbs": 8, "plots": False},
              "optimizer": "SGD", "search_space": space, "search_epochs": 1, "publish_to": "s3://searched/yolo-kfp",
              "min_map50": 0.0,
              "mlflow_tracking_uri": mlflow_server.url, "mlflow_experiment": "search-test",
              "registered_model_name": "searched"}
    result = execute(str(tmp_path), params)
    root = tmp_path / "pipeline-root"
    trials = run_folders(root, "train-trial")
    assert len(trials) == 4
    (search_file,) = glob.glob(str(root / "*" / "train" / "model" / "search.json"))
    with open(search_file) as f:
        search = json.load(f)
    assert [t["trial"] for t in search["trials"]] == [0, 1, 2, 3]
    assert [t["settings"] for t in search["trials"]] == [t["settings"] for t in plan_trials(space, 0, 42)]
    best = max(t["val"]["map50_95"] for t in search["trials"])
    assert search["winner"]["val"]["map50_95"] == best
    assert search["winner"] == min((t for t in search["trials"] if t["val"]["map50_95"] == best),
                                   key=lambda t: t["trial"])
    assert all(set(t["val"]) == {"map50", "map50_95", "precision", "recall"} for t in search["trials"])
    with open(glob.glob(str(root / "*" / "train" / "executor_output.json"))[0]) as f:
        trained = json.load(f)["artifacts"]["model"]["artifacts"][0]["metadata"]
    assert trained["search_winner"] == search["winner"]["trial"]
    table = glob.glob(str(root / "*" / "train" / "search_table"))[0]
    assert "Search: 4 trials" in open(table).read()
    assert result["metrics"]["images"] > 0  # the final evaluation reads the test split
    assert "search" in result["timings"]["steps"]

    assert result["publication"].startswith("published: s3://searched/yolo-kfp/")
    client = MlflowClient(mlflow_server.url)
    parent = trained["mlflow_run_id"]
    trial_runs = [t["mlflow_run_id"] for t in search["trials"]]
    assert len(set(trial_runs)) == 4 and parent not in trial_runs
    assert all(client.get_run(run).data.tags["mlflow.parentRunId"] == parent for run in trial_runs)
    assert client.get_run(parent).data.params["search.winner_trial"] == str(search["winner"]["trial"])
    (version,) = client.search_model_versions("name = 'searched'")
    assert {k: v for k, v in version.tags.items() if k.startswith("search.")} == {
        f"search.{name}": json.dumps(value) for name, value in search["winner"]["settings"].items()}

    manifest = read_latest("s3://searched/yolo-kfp", Storage.from_env())
    assert manifest["search"]["winner"] == {key: search["winner"][key] for key in ("trial", "settings", "val")}
    assert manifest["search"]["trials"] == 4 and "search.json" in manifest["files"]
    assert json.loads((tmp_path / "search.json").read_text()) == search  # gathered into the output dir
    assert (tmp_path / "search.html").stat().st_size > 0


def test_run_local_search_is_the_demos_search_under_the_users_values(tmp_path, monkeypatch):
    """``run-local --demo --search``: the demo's small search (``SEARCH_PARAMS``), the user's --param over it;
    without --demo it is refused, since it is the demo's search."""
    from yolo_kfp.cli import main
    from yolo_kfp.local import runner
    from yolo_kfp.local.demo import PARAMS, SEARCH_PARAMS

    class Started(BaseException):  # not an Exception: main tells those in one line
        pass

    def run_local(output_dir, params, **settings):
        raise Started(params, settings)

    monkeypatch.setattr(runner, "run_local", run_local)
    with pytest.raises(Started) as started:
        main(["run-local", "--demo", "--search", "--output-dir", str(tmp_path / "out"), "--param", "search_epochs=2"])
    params, settings = started.value.args
    assert params == {**PARAMS, **SEARCH_PARAMS, "search_epochs": 2} and settings["demo"] is True
    with pytest.raises(Started) as started:
        main(["run-local", "--demo", "--search", "--output-dir", str(tmp_path / "out"), "--param", "search_trials=2"])
    assert started.value.args[0]["search_trials"] == 2, "checked against the merged space: 4 combinations"
    assert main(["run-local", "--search", "--output-dir", str(tmp_path / "mine")]) == 2
