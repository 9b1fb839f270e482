"""The steps inside their images, run as KFP runs them: each compiled executor's own command, with an
executor input that names mounted artifacts. convert (data image) turns a small synthetic raw dataset
into a YOLO dataset; train, evaluate and export (train image) work on it, with small settings and an
untrained YOLOv5n made here as the base model (nothing is downloaded).

    python .ci/image_smoke.py prepare WORKDIR          # WORKDIR/{raw,base.pt}, WORKDIR/<step>.json (its argv)
    python .ci/image_smoke.py check WORKDIR STEP SECS  # what STEP wrote under WORKDIR/out/STEP
"""

import json
import os
import sys

import yaml

from yolo_kfp.infra.packing import materialized, pack_in_place
from yolo_kfp.local import synthetic
from yolo_kfp.params.run_parameters import TRAINING, training_settings
from yolo_kfp.params.run_parameters import defaults as parameter_defaults
from yolo_kfp.pipeline.pipeline import compile_pipeline

MOUNT = "/work"
STEPS = ("convert", "train", "evaluate", "export")
CLASSES = ["Bicycle", "Car", "Traffic sign"]
# Fast on a CPU: one epoch of tiny images. gpus is the compile option's 1: without a GPU it trains on the CPU.
SETTINGS = {"classes": CLASSES, "extra_data_fingerprint": "", "base_model": f"{MOUNT}/base.pt", "epochs": 1,
            "imgsz": 64, "batch": 4, "workers": 0, "freeze": 0, "gpus": 1, "search": ""}  # search: none ran
# Where each input artifact lies: (the step that wrote it, its name), or (None, folder) for what prepare writes.
INPUTS = {"raw_dataset": (None, "raw"), "dataset": ("convert", "dataset"), "model": ("train", "model")}


def artifact(name: str, schema: str, uri: str) -> dict:
    return {"artifacts": [{"name": name, "type": {"schemaTitle": schema, "schemaVersion": "0.0.1"}, "uri": uri,
                           "metadata": {}}]}


def uri(step: str | None, name: str) -> str:
    return f"{MOUNT}/{name}" if step is None else f"{MOUNT}/out/{step}/{name}"


def argv(spec: dict, step: str) -> list[str]:
    """The executor's command with an executor input: every parameter the component declares, from the
    pipeline's defaults and SETTINGS; its input artifacts where earlier steps wrote them, its outputs
    under out/<step>."""
    component = spec["components"][f"comp-{step}"]
    inputs = component["inputDefinitions"]
    values = {**parameter_defaults(), **SETTINGS}
    values["training"] = training_settings({name: values[name] for name in TRAINING})  # what preflight hands on
    artifacts = {name: artifact(name, definition["artifactType"]["schemaTitle"], uri(*INPUTS[name]))
                 for name, definition in inputs["artifacts"].items()}
    outputs = {name: artifact(name, definition["artifactType"]["schemaTitle"], uri(step, name))
               for name, definition in component["outputDefinitions"]["artifacts"].items()}
    executor_input = {
        "inputs": {"parameterValues": {name: values[name] for name in inputs["parameters"]}, "artifacts": artifacts},
        "outputs": {"artifacts": outputs, "outputFile": uri(step, "executor_output.json")},
    }
    container = spec["deploymentSpec"]["executors"][f"exec-{step}"]["container"]
    return [a.replace("{{$}}", json.dumps(executor_input)) for a in container["command"] + container["args"]]


def base_model(path: str) -> None:
    """An untrained YOLOv5n (80 classes), as the tests make it: the offline stand-in for yolov5nu.pt."""
    from yolo_kfp.model.ultralytics_env import configure_offline

    os.environ.setdefault("YOLO_CONFIG_DIR", os.path.join(os.path.dirname(path), "ultralytics"))  # else one in /tmp
    configure_offline()
    from ultralytics import YOLO

    YOLO("yolov5n.yaml").save(path)


def prepare(workdir: str) -> None:
    raw = os.path.join(workdir, "raw")
    synthetic.write_split(raw, "validation", 8, seed=3)
    pack_in_place(raw, ("data",))  # as the download step leaves it
    base_model(os.path.join(workdir, "base.pt"))
    with open(compile_pipeline(os.path.join(workdir, "pipeline.yaml"))) as f:
        spec = next(yaml.safe_load_all(f))
    for step in STEPS:
        os.makedirs(os.path.join(workdir, "out", step))
        with open(os.path.join(workdir, f"{step}.json"), "w") as f:
            json.dump(argv(spec, step), f)
        print(f"{step}: {spec['deploymentSpec']['executors'][f'exec-{step}']['container']['image']}")


def check_convert(out: str) -> str:
    with materialized(os.path.join(out, "dataset")) as dataset:
        labels = sum(len(files) for _, _, files in os.walk(os.path.join(dataset, "labels")))
        with open(os.path.join(dataset, "dataset.yaml")) as f:
            assert yaml.safe_load(f)["names"] == CLASSES
    stats = json.load(open(os.path.join(out, "dataset_stats")))
    assert labels == stats["images"] > 0, (labels, stats["images"])
    assert "# Dataset:" in open(os.path.join(out, "dataset_report")).read()
    return "dataset_stats"


def check_train(out: str) -> str:
    assert os.path.getsize(os.path.join(out, "model", "weights", "best.pt")) > 0
    summary = json.load(open(os.path.join(out, "model", "train_summary.json")))
    assert summary["names"] == CLASSES and summary["epochs"] == 1, summary
    assert 0 < summary["trainable_params"] <= summary["total_params"], summary
    return "model/train_summary.json"


def check_evaluate(out: str) -> str:
    metrics = json.load(open(os.path.join(out, "metrics_json")))
    assert 0 <= metrics["map50"] <= 1 and set(metrics["per_class"]) == set(CLASSES), metrics
    assert "<html" in open(os.path.join(out, "report")).read().lower()
    logged = json.load(open(os.path.join(out, "executor_output.json")))["artifacts"]["metrics"]["artifacts"][0]
    assert logged["metadata"]["map50"] == metrics["map50"], logged  # the KFP metrics the UI shows
    assert len(metrics["coco"]) == 12, metrics  # COCO's figures, by the image's pycocotools
    return "metrics_json"


def check_export(out: str) -> str:
    assert os.path.getsize(os.path.join(out, "onnx_model", "yolo-kfp", "1", "model.onnx")) > 0
    info = json.load(open(os.path.join(out, "onnx_model", "export.json")))
    assert info["imgsz"] == SETTINGS["imgsz"] and info["checked_images"] > 0, info
    return "onnx_model/export.json"


def check(workdir: str, step: str, seconds: str) -> None:
    out = os.path.join(workdir, "out", step)
    written = {"convert": check_convert, "train": check_train, "evaluate": check_evaluate,
               "export": check_export}[step](out)
    owner = os.stat(os.path.join(out, written)).st_uid
    assert owner != 0, f"{step} ran as root"
    print(f"{step} ran in its image as uid {owner} in {seconds} s; its outputs check out")


if __name__ == "__main__":
    {"prepare": prepare, "check": check}[sys.argv[1]](*sys.argv[2:])
