"""The README's first command: the whole pipeline through kfp.local on the offline mirror. It trains,
publishes to an S3 named by the data-connection variables, a wrong secret stops it in its first step, and a model
the gate refuses (trained across two nodes, run here as torchrun processes) is neither published nor registered."""

import glob
import json
import os
import subprocess
import tempfile
import time

import onnx
import pytest
import torch
from cli_process import CLI, commands_naming
from export_files import CLASS_MAP, EXPECTED, all_formats
from headless_browser import check_report
from mlflow import MlflowClient
from model_registry_standin import ModelRegistryStandIn
from test_modelcar import pulled_files

from yolo_kfp.infra.packing import materialized
from yolo_kfp.infra.storage import S3Url, Storage
from yolo_kfp.local.mlflow_server import MlflowServer, reopen_command
from yolo_kfp.model.figures import COCO_FIGURES
from yolo_kfp.release import registry
from yolo_kfp.release.publish import read_latest

pytestmark = pytest.mark.slow
REGISTRY_TOKEN = "sa-token-of-the-pipeline-runner"


STEP_LOGS = {"preflight", "plan-download", "download-shard-0", "merge-download", "convert", "no-search", "train",
             "evaluate", "export", "track", "gate", "publish"}


def run_demo(out, env, *params, mlflow=False, verbose=False, nodes=1, modelcar_base=""):
    args = [CLI, "run-local", "--demo", "--output-dir", str(out), "--nodes", str(nodes),
            *(a for p in params for a in ("--param", p)), *(["--modelcar-base", modelcar_base] * bool(modelcar_base))]
    return subprocess.run(args + ["--mlflow"] * mlflow + ["--verbose"] * verbose, capture_output=True, text=True,
                          timeout=900, env=env)


def check_quiet(result, out) -> None:
    """Progress, not logs: few lines, no colour codes, no library warning; each step's log in out/logs."""
    shown = result.stdout + result.stderr
    assert len(shown.splitlines()) <= 60, shown
    assert "\x1b[" not in shown
    for warning in ("have no effect in the current local runner", "non-Python base image", "Warning"):
        assert warning not in shown
    logs = out / "logs"
    assert {name for name in os.listdir(logs)} == {f"{step}.log" for step in STEP_LOGS | {"demo", "pipeline"}}
    for step in STEP_LOGS:
        assert f"Executing task '{step.removesuffix('-0')}'" in (logs / f"{step}.log").read_text()
    assert "Epoch" in (logs / "train.log").read_text() and "train             epoch  25/25  box " in result.stdout


def test_run_local_demo_trains_and_publishes(mongod, s3, oci_registry, tmp_path):
    storage = Storage.from_env(s3.data_connection())
    storage.client.create_bucket(Bucket="models")
    image_registry, modelcar_base = oci_registry  # docs/tracking.md: the demo pushing the model's image
    env = dict(os.environ, **s3.data_connection(), **image_registry.environment())
    out = tmp_path / "demo"
    repository = f"{image_registry.host}/team/yolo-kfp-model"
    storage.upload_dir(str(all_formats(tmp_path / "labelled")), S3Url("models", "labelled"))  # a team's exports
    result = run_demo(out, env, "publish_to=s3://models/yolo-kfp", f"publish_oci={repository}",
                      "extra_data=s3://models/labelled", f"class_map={json.dumps(CLASS_MAP)}", mlflow=True,
                      modelcar_base=modelcar_base)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "synthetic" in result.stdout
    assert f"MLflow's UI on this run: {' '.join(reopen_command(str(out / 'mlflow')))}" in result.stdout
    assert "model published: s3://models/yolo-kfp/" in result.stdout
    check_quiet(result, out)

    metrics = json.loads((out / "metrics.json").read_text())  # how well it trained is for bench/, not a test
    assert set(metrics["per_class"]) == {"Bicycle", "Car", "Traffic sign"}
    for name in ("map50", "map50_95", "precision", "recall"):
        assert 0.0 <= metrics[name] <= 1.0
    assert metrics["map50_95"] <= metrics["map50"]
    weights = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
    assert list(weights["model"].names.values()) == ["Bicycle", "Car", "Traffic sign"]
    report = (out / "report.html").read_text()
    assert "Precision-recall curve" in report and "Confusion matrix" in report and 'id="per-class"' in report
    assert report.count("data:image/png;base64,") == 3 and 'id="coco"' in report
    check_report(str(out / "report.html"), figures=3, classes=3, coco=len(COCO_FIGURES))  # headless Chromium, offline
    check_coco_files(out, metrics)
    (run,) = (out / "pipeline-root").iterdir()  # it trained on the union of the mirror's images and the exports'
    stats = json.loads((run / "convert" / "dataset_stats").read_text())
    assert {name: (s["boxes"], s["dropped"].get("other_classes")) for name, s in stats["sources"].items()
            if name != "open_images"} == {f"s3://models/labelled/{kind}": want for kind, want in EXPECTED.items()}
    assert sum(s["images"] for s in stats["sources"].values()) == stats["images"] > stats["sources"]["open_images"][
        "images"]
    onnx_model = onnx.load(str(out / "model.onnx"))
    assert {p.key: p.value for p in onnx_model.metadata_props}["names"] == \
        "{0: 'Bicycle', 1: 'Car', 2: 'Traffic sign'}"
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings["steps"]) == {"download", "convert", "train", "evaluate", "export"}
    # without a search_space: no trial task, and the train step is told there was no search
    tasks = [os.path.basename(os.path.dirname(p)) for p in glob.glob(
        str(out / "pipeline-root" / "*" / "**" / "executor_output.json"), recursive=True)]
    assert "train-trial" not in tasks and "choose-trial" not in tasks and "no-search" in tasks
    assert all(seconds > 0 for seconds in timings["steps"].values())
    assert timings["total"] >= sum(timings["steps"].values())

    manifest = read_latest("s3://models/yolo-kfp", storage)
    assert manifest["metrics"]["map50"] == metrics["map50"]
    assert {"weights/best.pt", "metrics.json", "dataset_stats.json", "parameters.json", "args.yaml",
            "serving/yolo-kfp/1/model.onnx", "serving/export.json"} <= set(manifest["files"])
    published = storage.get_bytes(S3Url("models", f"yolo-kfp/{manifest['version']}/weights/best.pt"))
    assert published == (out / "best.pt").read_bytes()
    assert f"/{manifest['version']}, image {repository}@{manifest['oci']['digest']}" in result.stdout
    files, _ = pulled_files(image_registry, repository, manifest["oci"]["digest"], tmp_path)
    assert files["models/1/model.onnx"][0] == (out / "model.onnx").read_bytes()
    check_predict(out / "model.onnx", tmp_path / "images")

    wrong = dict(env, AWS_SECRET_ACCESS_KEY="a-wrong-secret-for-the-test")
    started = time.monotonic()
    failed = run_demo(out, wrong, "publish_to=s3://models/yolo-kfp")  # the base checkpoint is reused
    assert failed.returncode != 0 and time.monotonic() - started < 60
    output = failed.stdout + failed.stderr
    last = failed.stderr.strip().splitlines()[-1]  # the cause, on one line, last, without colour codes
    assert last.startswith("yolo-kfp: error: step 'preflight' failed: yolo_kfp.infra.storage.StorageError: "
                           "preflight: publish_to=s3://models/yolo-kfp is not usable")
    assert "SignatureDoesNotMatch" in last
    assert last.endswith("-- check the data connection (AWS_* variables: endpoint, keys, bucket) and run again "
                         f"(log: {out / 'logs' / 'preflight.log'})")
    assert "SignatureDoesNotMatch" in (out / "logs" / "preflight.log").read_text()
    assert "\x1b[" not in failed.stderr
    assert "a-wrong-secret-for-the-test" not in output
    assert read_latest("s3://models/yolo-kfp", storage)["version"] == manifest["version"]

    # a retrained model that does not clear the gate, trained across two nodes (torchrun processes here, staging
    # in the data connection's bucket): the run ends green with the one-node run's outputs, nothing is published
    # or registered, nothing is left in the bucket or running
    token = tmp_path / "registry-token"
    token.write_text(REGISTRY_TOKEN + "\n")
    storage.client.create_bucket(Bucket="team")
    on_nodes = {**env, registry.TOKEN_PATH_VARIABLE: str(token), "AWS_S3_BUCKET": "team"}
    torchrun_logs = os.path.join(tempfile.gettempdir(), "torchelastic_*")
    before = set(glob.glob(torchrun_logs))
    one_node = set(os.listdir(out))
    with ModelRegistryStandIn(token=REGISTRY_TOKEN) as standin:
        refused = run_demo(out, on_nodes, "publish_to=s3://models/yolo-kfp", "min_map50=0.99", "epochs=2",
                           f"model_registry_url={standin.url}", mlflow=True, verbose=True, nodes=2)
    assert refused.returncode == 0, refused.stderr[-3000:]
    assert [r.path for r in standin.requests] == [standin.api + "/registered_models"]  # preflight's check only
    assert standin.registered_models == {} and standin.model_versions == {} and standin.artifacts == {}
    assert standin.problems() == []
    assert "Executing task 'train-on-nodes'" in refused.stdout  # --verbose: all, node 0 as it trains
    assert [line for line in refused.stdout.splitlines() if "node 0 | " in line and "Epoch" in line]
    assert "publish.log" not in os.listdir(out / "logs")  # this run's logs only
    assert {"node-0.log", "node-1.log", "train-on-nodes.log"} <= set(os.listdir(out / "logs"))
    assert "model not promoted: mAP50 " in refused.stdout
    assert "is below the threshold min_map50=0.990" in refused.stdout
    assert read_latest("s3://models/yolo-kfp", storage)["version"] == manifest["version"]
    assert set(os.listdir(out)) == one_node
    assert json.loads((out / "metrics.json").read_text()).keys() == metrics.keys()
    assert storage.list_objects(S3Url("team", "")) == [], "the nodes' staging and checkpoint are gone"
    assert commands_naming(str(out)) == [], "a process is left"
    assert set(glob.glob(torchrun_logs)) == before, "torchrun's log folders are left"
    assert (out / "best.pt").read_bytes() != published, "the two nodes' model is the run's"
    with MlflowServer(str(out / "mlflow")) as reopened:  # the runs' servers have stopped; their store stays
        check_tracking(reopened.url, metrics, manifest)


def check_coco_files(out, metrics: dict) -> None:
    """The evaluate step's COCO files hold what the mAP was computed from: pycocotools, COCO's reference, finds
    exactly metrics.json's COCO figures in them and agrees with Ultralytics' mAP50 within 0.02 and mAP50-95
    within 0.04 (their methods differ, docs/tracking.md); docs/tracking.md's FiftyOne recipe, run as written on
    the same files and the test images, gets pycocotools' AP50 within 0.01."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    (run,) = (out / "pipeline-root").iterdir()
    predictions = run / "evaluate" / "predictions"
    truth = COCO(str(predictions / "ground_truth.json"))
    found = json.loads((predictions / "predictions.json").read_text())
    assert len(found) == metrics["detections"]["evaluated"] and metrics["detections"]["confidence"] == 0.001
    evaluation = COCOeval(truth, truth.loadRes(str(predictions / "predictions.json")), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert metrics["coco"] == {name: None if value < 0 else float(value)
                               for name, value in zip(COCO_FIGURES, evaluation.stats, strict=True)}
    ap, ap50 = evaluation.stats[:2]
    assert abs(ap50 - metrics["map50"]) <= 0.02 and abs(ap - metrics["map50_95"]) <= 0.04, (ap50, ap, metrics)
    with materialized(str(run / "convert" / "dataset")) as data:
        recipe = fiftyone_recipe(data, str(predictions))
        exec(recipe, namespace := {})
        namespace["ds"].delete()
    assert abs(namespace["ap50"] - ap50) <= 0.01, (namespace["ap50"], ap50)


def fiftyone_recipe(data: str, predictions: str) -> str:
    """docs/tracking.md's FiftyOne code, on ``data`` (the dataset) and ``predictions`` (the evaluate step's
    COCO files), without the line that opens FiftyOne's app."""
    with open(os.path.join(os.path.dirname(__file__), "..", "docs", "tracking.md")) as f:
        section = f.read().split("## Error analysis in FiftyOne", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "launch_app" in code.splitlines()[-1]
    return "\n".join(code.splitlines()[:-1]).replace("DATA/", f"{data}/").replace("PRED/", f"{predictions}/")


def check_predict(model, folder) -> None:
    """The README's ``yolo-kfp predict --model out/demo/model.onnx IMAGE``, on images like the demo's."""
    from yolo_kfp.local import synthetic

    synthetic.write_split(str(folder), "test", 2, seed=3)
    images = sorted(str(p) for p in (folder / "data").glob("*.jpg"))
    # a low threshold: the boxes' names and form are checked here, not how sure a small model is of them
    result = subprocess.run([CLI, "predict", "--model", str(model), "--conf", "0.01", *images], capture_output=True,
                            text=True, timeout=300, check=True)
    assert [line.rsplit(": ", 1)[0] for line in result.stdout.splitlines() if line.endswith(" boxes")] == images
    boxes = [line.split() for line in result.stdout.splitlines() if line.startswith("  ")]
    assert boxes and all(b[0] in ("Bicycle", "Car", "Traffic") for b in boxes), result.stdout


def check_tracking(url: str, metrics: dict, manifest: dict) -> None:
    """The published training's MLflow run: its settings, one step per epoch, the test metrics, the KFP run; the
    published model as the one registered model version, whose source is the published ONNX; and the refused
    training's run (2 epochs, on two nodes), which registered nothing."""
    client = MlflowClient(url)
    runs = client.search_runs([client.get_experiment_by_name("yolo-kfp").experiment_id])
    assert sorted(r.data.params["epochs"] for r in runs) == ["2", "25"]
    (run,) = [r for r in runs if r.data.params["epochs"] == "25"]
    assert run.data.params["imgsz"] == "160"
    epochs = client.get_metric_history(run.info.run_id, "metrics/mAP50B")
    assert [m.step for m in epochs] == list(range(1, 26))
    assert run.data.metrics["test_map50"] == metrics["map50"]
    assert run.data.metrics["test_coco_AP50"] == metrics["coco"]["AP50"]  # COCO's figures beside Ultralytics'
    assert run.data.tags["kfp.run_id"] == manifest["run_id"] and run.data.tags["yolo-kfp.dataset"]
    assert run.info.status == "FINISHED"
    assert "weights/best.pt" in {a.path for a in client.list_artifacts(run.info.run_id, "weights")}
    (version,) = client.search_model_versions("name = 'yolo-kfp'")  # the refused model registered nothing
    assert version.run_id == run.info.run_id and version.tags["kfp.run_id"] == manifest["run_id"]
    assert version.source == f"s3://models/yolo-kfp/{manifest['version']}/serving/yolo-kfp"
    assert version.tags["oci_image"] == manifest["oci"]["uri"]  # the pushed image, by digest
