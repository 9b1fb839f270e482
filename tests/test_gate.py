"""The quality gate: publish when better, refuse when worse or below the threshold; compiled as conditions."""

import json

import pytest
import yaml

from yolo_kfp.infra.storage import S3Url
from yolo_kfp.release.gate import (
    NOT_PROMOTED,
    PROMOTE,
    decide,
    markdown,
    promotion_gate,
    read_decision,
    record_decision,
)
from yolo_kfp.release.publish import publish_files


def test_decide():
    assert decide(0.6, 0.5, None, 0.01) == []
    assert decide(0.6, 0.5, 0.605, 0.01) == []
    assert decide(0.4, 0.5, None, 0.0)[0].startswith("mAP50 0.400 is below the threshold min_map50=0.500")
    assert "worse than the published model's 0.700" in decide(0.6, 0.5, 0.7, 0.05)[0]
    assert len(decide(0.1, 0.5, 0.7, 0.0)) == 2


@pytest.fixture
def published(storage, bucket, trained_weights, tmp_path):
    """A model in use: the trained weights published under a fresh prefix."""
    publish_files(publish_to=f"s3://{bucket}/yolo", files={"weights/best.pt": trained_weights[0]}, record={},
                  run_id="current", storage=storage)
    return f"s3://{bucket}/yolo", storage


def candidate(tmp_path, map50):
    path = tmp_path / f"metrics-{map50}.json"
    path.write_text(json.dumps({"map50": map50}))
    return str(path)


@pytest.mark.slow
def test_gate_against_the_published_model_on_the_same_split(published, trained_weights, tmp_path):
    """The candidates' figures are set relative to what the published model scores here, whatever that is:
    how well a tiny model trains differs from one machine to the next."""
    target, storage = published
    _, data = trained_weights
    best = promotion_gate(metrics_path=candidate(tmp_path, 1.0), data_dir=data, publish_to=target, min_map50=0.0,
                          max_map50_drop=0.0, imgsz=128, batch=8, storage=storage)
    assert best["decision"] == PROMOTE and best["current_version"].endswith("-current")
    current = best["current_map50"]
    assert 0.0 <= current <= 1.0
    equal = promotion_gate(metrics_path=candidate(tmp_path, current), data_dir=data, publish_to=target, min_map50=0.0,
                           max_map50_drop=0.0, imgsz=128, batch=8, storage=storage)
    assert equal["decision"] == PROMOTE and equal["current_map50"] == current, "evaluated the same way each time"
    worse = promotion_gate(metrics_path=candidate(tmp_path, current - 0.2), data_dir=data, publish_to=target,
                           min_map50=0.0, max_map50_drop=0.01, imgsz=128, batch=8, storage=storage)
    assert worse["decision"] == NOT_PROMOTED and "worse than the published model" in worse["reasons"][0]
    assert "# Model not promoted" in markdown(worse) and "Reasons:" in markdown(worse)
    low = promotion_gate(metrics_path=candidate(tmp_path, 0.5), data_dir=data, publish_to=target, min_map50=0.6,
                         max_map50_drop=1.0, imgsz=128, batch=8, storage=storage)
    assert low["decision"] == NOT_PROMOTED and low["reasons"] == ["mAP50 0.500 is below the threshold min_map50=0.600"]


def test_first_model_only_needs_the_threshold(storage, bucket, tmp_path):
    first = promotion_gate(metrics_path=candidate(tmp_path, 0.3), data_dir="unused", publish_to=f"s3://{bucket}/yolo",
                           min_map50=0.25, max_map50_drop=0.01, imgsz=128, batch=8, storage=storage)
    assert first["decision"] == PROMOTE and first["current_version"] is None
    assert "none published yet" in markdown(first)


def test_each_runs_decision_is_kept_for_whoever_started_it(storage, bucket):
    refused = {"decision": NOT_PROMOTED, "reasons": ["mAP50 0.100 is below the threshold min_map50=0.250"]}
    assert read_decision(f"s3://{bucket}/yolo", "run-1", storage) is None
    record_decision(publish_to=f"s3://{bucket}/yolo", run_id="run-1", result=refused, storage=storage)
    assert read_decision(f"s3://{bucket}/yolo", "run-1", storage) == refused
    assert storage.exists(S3Url.parse(f"s3://{bucket}/yolo/decisions/run-1.json"))


def test_the_gate_is_never_served_from_the_cache(default_pipeline):
    """The published model it compares with changes between runs; a cached decision would be stale."""
    with open(default_pipeline) as f:
        spec = next(yaml.safe_load_all(f))
    tasks = {name: task for component in spec["components"].values() for name, task in
             component.get("dag", {}).get("tasks", {}).items()}
    assert tasks["gate"]["cachingOptions"] == {}  # KFP writes enableCache: false as nothing
    assert tasks["gate"]["inputs"]["parameters"]["run_id"] == {"runtimeValue": {"constant": "{{$.pipeline_job_uuid}}"}}


def test_pipeline_compiles_the_gate_as_a_condition_on_publish(default_pipeline):
    with open(default_pipeline) as f:
        spec = next(yaml.safe_load_all(f))
    (outer_name, outer), = [(n, t) for n, t in spec["root"]["dag"]["tasks"].items()
                            if "publish_to" in t.get("triggerPolicy", {}).get("condition", "")]
    assert outer["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--publish_to'] != ''"
    inner_dag = spec["components"][f"comp-{outer_name}"]["dag"]["tasks"]
    (inner_name,) = set(inner_dag) - {"gate"}
    promoted = inner_dag[inner_name]
    assert promoted["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--gate-Output'] == " \
                                                     "'promote'"
    assert "publish" in spec["components"][f"comp-{inner_name}"]["dag"]["tasks"]
