"""Gate: publish a retrained model only when it is good enough and not worse than the one in use.

The candidate must reach ``min_map50`` on its test split, and the model ``latest`` points at under
``publish_to`` is evaluated on the *same* test split: the candidate may not fall more than
``max_map50_drop`` below it. A refused model is not an error: the run ends green, "not promoted",
with the reasons in the gate's report.
"""

import json
import logging
import os
import tempfile

from yolo_kfp.infra.markdown_text import inert
from yolo_kfp.infra.storage import S3Url, Storage
from yolo_kfp.release.publish import read_latest

log = logging.getLogger(__name__)

PROMOTE = "promote"
NOT_PROMOTED = "not promoted"
DECISIONS = "decisions"  # <publish_to>/decisions/<run id>.json


def decide(candidate: float, min_map50: float, current: float | None, max_drop: float) -> list[str]:
    """The reasons not to promote (none: promote)."""
    reasons = []
    if candidate < min_map50:
        reasons.append(f"mAP50 {candidate:.3f} is below the threshold min_map50={min_map50:.3f}")
    if current is not None and candidate < current - max_drop:
        reasons.append(f"mAP50 {candidate:.3f} is worse than the published model's {current:.3f} on the same test "
                       f"split by more than max_map50_drop={max_drop:.3f}")
    return reasons


def promotion_gate(*, metrics_path: str, data_dir: str, publish_to: str, min_map50: float, max_map50_drop: float,
                   imgsz: int, batch: int, storage: Storage | None = None) -> dict:
    """Evaluates the published model on this test split and decides; returns the decision and its figures."""
    from yolo_kfp.model import safe_checkpoint
    from yolo_kfp.model.evaluate import evaluate_model

    with open(metrics_path) as f:
        candidate = json.load(f)["map50"]
    storage = storage or Storage.from_env()
    current = read_latest(publish_to, storage) if publish_to else None
    current_map50 = None
    if current:
        with tempfile.TemporaryDirectory() as work:
            weights = os.path.join(work, "best.pt")
            storage.download_file(S3Url.parse(publish_to).join(current["version"], "weights", "best.pt"), weights)
            safe_checkpoint.load(weights, "the published model")  # anyone who can write the bucket could plant it
            current_map50 = evaluate_model(data_dir=data_dir, weights=weights, imgsz=imgsz, batch=batch)["map50"]
    reasons = decide(candidate, min_map50, current_map50, max_map50_drop)
    result = {"decision": NOT_PROMOTED if reasons else PROMOTE, "reasons": reasons, "candidate_map50": candidate,
              "current_version": current["version"] if current else None, "current_map50": current_map50,
              "min_map50": min_map50, "max_map50_drop": max_map50_drop}
    log.info("gate: %s %s", result["decision"], reasons)
    return result


def decision_url(publish_to: str, run_id: str) -> S3Url:
    """Where a run's gate decision is kept: beside the published versions, one JSON per run."""
    return S3Url.parse(publish_to).join(DECISIONS, f"{run_id}.json")


def record_decision(*, publish_to: str, run_id: str, result: dict, storage: Storage | None = None) -> None:
    """Keeps the decision where whoever started the run can read why its model was (not) promoted."""
    (storage or Storage.from_env()).put_bytes(decision_url(publish_to, run_id), json.dumps(result).encode())


def read_decision(publish_to: str, run_id: str, storage: Storage | None = None) -> dict | None:
    """The gate's decision for ``run_id``, or None if its gate has not decided (yet)."""
    storage, url = storage or Storage.from_env(), decision_url(publish_to, run_id)
    return json.loads(storage.get_bytes(url)) if storage.exists(url) else None


def markdown(result: dict) -> str:
    current = ("none published yet" if result["current_version"] is None
               else f"{inert(result['current_version'])}: mAP50 {result['current_map50']:.3f} on this test split")
    lines = [f"# Model {'promoted' if result['decision'] == PROMOTE else 'not promoted'}", "",
             f"- candidate: mAP50 {result['candidate_map50']:.3f}",
             f"- published model: {current}",
             f"- rules: mAP50 >= {result['min_map50']:.3f}, at most {result['max_map50_drop']:.3f} below the "
             "published model"]
    if result["reasons"]:
        lines += ["", "Reasons:", *(f"- {inert(reason)}" for reason in result["reasons"])]
    return "\n".join(lines) + "\n"
