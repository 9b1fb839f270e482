"""The convert step inside the data image, run as KFP runs it: the compiled executor's own command,
with an executor input that names a mounted raw dataset and output folder.

    python .ci/image_smoke.py prepare WORKDIR   # WORKDIR/raw and WORKDIR/argv.json (the container's argv)
    python .ci/image_smoke.py check WORKDIR     # what the step wrote under WORKDIR/out
"""

import json
import os
import sys

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from components.core.packing import materialized, pack_in_place  # noqa: E402
from pipeline import synthetic  # noqa: E402
from pipeline.pipeline import compile_pipeline, parameter_defaults  # noqa: E402

MOUNT = "/work"
CLASSES = ["Bicycle", "Car", "Traffic sign"]


def artifact(name: str, schema: str, uri: str) -> dict:
    return {"artifacts": [{"name": name, "type": {"schemaTitle": schema, "schemaVersion": "0.0.1"}, "uri": uri,
                           "metadata": {}}]}


def prepare(workdir: str) -> None:
    raw = os.path.join(workdir, "raw")
    synthetic.write_split(raw, "validation", 8, seed=3)
    pack_in_place(raw, ("data",))  # as the download step leaves it
    os.makedirs(os.path.join(workdir, "out"))
    with open(compile_pipeline(os.path.join(workdir, "pipeline.yaml"))) as f:
        spec = next(yaml.safe_load_all(f))
    container = spec["deploymentSpec"]["executors"]["exec-convert"]["container"]
    # every parameter the component declares, from the pipeline's defaults (preflight's output: none)
    defaults = {**parameter_defaults(), "classes": CLASSES, "extra_data_fingerprint": ""}
    parameters = {name: defaults[name] for name in spec["components"]["comp-convert"]["inputDefinitions"]["parameters"]}
    executor_input = {
        "inputs": {"parameterValues": parameters,
                   "artifacts": {"raw_dataset": artifact("raw_dataset", "system.Dataset", f"{MOUNT}/raw")}},
        "outputs": {"artifacts": {"dataset": artifact("dataset", "system.Dataset", f"{MOUNT}/out/dataset"),
                                  "dataset_stats": artifact("dataset_stats", "system.Artifact",
                                                            f"{MOUNT}/out/dataset_stats"),
                                  "dataset_report": artifact("dataset_report", "system.Markdown",
                                                             f"{MOUNT}/out/dataset_report")},
                    "outputFile": f"{MOUNT}/out/executor_output.json"},
    }
    argv = [a.replace("{{$}}", json.dumps(executor_input)) for a in container["command"] + container["args"]]
    with open(os.path.join(workdir, "argv.json"), "w") as f:
        json.dump(argv, f)
    print(f"image {container['image']}: {' '.join(argv[:2])} ... {' '.join(argv[-2:])}")


def check(workdir: str) -> None:
    out = os.path.join(workdir, "out")
    with materialized(os.path.join(out, "dataset")) as dataset:
        labels = sum(len(files) for _, _, files in os.walk(os.path.join(dataset, "labels")))
        with open(os.path.join(dataset, "dataset.yaml")) as f:
            assert yaml.safe_load(f)["names"] == CLASSES
    stats = json.load(open(os.path.join(out, "dataset_stats")))
    assert labels == stats["images"] > 0, (labels, stats["images"])
    assert "# Dataset:" in open(os.path.join(out, "dataset_report")).read()
    owner = os.stat(os.path.join(out, "dataset_stats")).st_uid
    assert owner != 0, "the step ran as root"
    print(f"convert ran in the image as uid {owner}: {labels} labelled images, report and stats written")


if __name__ == "__main__":
    {"prepare": prepare, "check": check}[sys.argv[1]](sys.argv[2])
