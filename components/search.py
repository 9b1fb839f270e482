"""The search's fan-in components: the trials' records gathered into ``search.json`` for the train step, and
the empty answer of a run without a search.

Why two steps rather than ``dsl.Collected`` into the train step: over a ``ParallelFor`` of no items, a
collecting consumer fails both in kfp.local 2.17 ("task 'for-loop-N' not found") and on the KFP backend
(2.14-2.16: the driver collects only when ``iteration_count`` > 0, else looks for the loop's task
unindexed). So the loop runs under ``dsl.If`` (a search was asked for), its records are gathered there,
and the train step takes ``dsl.OneOf`` of the two answers as a parameter (OneOf over artifacts fails on
the backend up to 2.16, kubeflow/pipelines#13436; over parameters it works).
"""

from kfp.dsl import Artifact, Input

from yolo_kfp.components.step_settings import DATA_IMAGE, Resources, component

SMALL = Resources(cpu="100m", cpu_limit="500m", memory="256Mi")


@component(DATA_IMAGE, timeout_hours=1, resources=SMALL)
def choose_trial(records: Input[list[Artifact]], search_space: dict) -> str:
    """Reads the trials' records and picks the winner: the highest validation mAP50-95, a tie to the lowest
    trial index. Returns search.json's content (JSON: space, trials, winner) for the train step.

    Args:
        records: The trial records of the search's train-trial tasks.
    """
    import json

    from yolo_kfp.model.search import search_summary

    trials = []
    for record in records:
        with open(record.path) as f:
            trials.append(json.load(f))
    summary = search_summary(dict(search_space), trials)
    print(f"search: trial {summary['winner']['trial']} of {len(trials)} wins with val mAP50-95 "
          f"{summary['winner']['val']['map50_95']:.4f}: {json.dumps(summary['winner']['settings'])}")
    return json.dumps(summary)


@component(DATA_IMAGE, timeout_hours=1, resources=SMALL)
def no_search() -> str:
    """The answer of a run without a search: no search.json (empty). Its inputs never change: after the first
    run KFP's cache answers it."""
    return ""
