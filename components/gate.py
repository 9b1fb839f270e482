"""The gate step's KFP component: a thin wrapper around ``yolo_kfp.release.gate``."""

from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from yolo_kfp.components.step_settings import TRAIN_IMAGE, Resources, component


# Evaluates the published model on the same split, as evaluate does.
# Never from the cache: the published model it compares with can change between runs.
@component(TRAIN_IMAGE, timeout_hours=4, data_connection=True, cache=False,
           resources=Resources(cpu="2", cpu_limit="4", memory="8Gi"))
def gate(metrics_json: Input[Artifact], dataset: Input[Dataset], publish_to: str, min_map50: float,
         max_map50_drop: float, imgsz: int, batch: int, run_id: str, report: Output[Markdown]) -> str:
    """Decides whether to publish: the candidate needs mAP50 >= min_map50 and, against the model that
    publish_to/latest names evaluated on the same test split, no drop beyond max_map50_drop.

    Returns "promote" or "not promoted"; a refusal is not a failure. The report says why, and the
    decision is kept as publish_to/decisions/<run_id>.json for whoever started the run.

    Args:
        metrics_json: The evaluate step's metrics.json.
        dataset: The YOLO dataset: the published model is evaluated on its test split.
        run_id: The run's id: its decision is kept under it.
        report: Why the model was or was not promoted, in Markdown.
    """
    import logging

    from yolo_kfp.infra.packing import materialized
    from yolo_kfp.release.gate import markdown, promotion_gate, record_decision

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with materialized(dataset.path) as data_dir:
        result = promotion_gate(metrics_path=metrics_json.path, data_dir=data_dir, publish_to=publish_to,
                                min_map50=min_map50, max_map50_drop=max_map50_drop, imgsz=imgsz, batch=batch)
    record_decision(publish_to=publish_to, run_id=run_id, result=result)
    with open(report.path, "w") as f:
        f.write(markdown(result))
    report.metadata.update({k: v for k, v in result.items() if v is not None})
    return result["decision"]
