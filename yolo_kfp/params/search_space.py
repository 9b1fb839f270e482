"""A search space and its trials' plan: which training settings a search may set, how many combinations a
space holds, and which settings each trial trains with. Pure Python, so that the CLI, preflight and the
checks read it without torch or KFP; ``yolo_kfp.model.search`` runs the trials.

A search space maps a training setting to a list of values or a range ``{"min": a, "max": b}`` (``"log":
true`` for a log-uniform one; integer bounds sample integers). ``search_trials`` 0 takes every
combination of the lists (a grid); more samples that many trials with the run's ``seed``.
"""

import itertools
import math
import os
import random
import sys

# The training parameters a search may set besides train_args keys (each checked by its own rule).
SEARCHABLE = ("lr0", "epochs", "freeze", "imgsz", "optimizer", "batch")
INTEGER_PARAMETERS = ("epochs", "freeze", "imgsz", "batch")
RANGE_KEYS = ("min", "max", "log")
# A grid beyond this is more GPU time than a search should take by accident: sample it with search_trials.
MAX_TRIALS = 64
MAX_LISTED = 100  # values a list may hold: more is a range to sample from
# Set on the preflight task of a pipeline compiled without the search (a server without dsl.Collected,
# yolo_kfp.pipeline.servers): why a run that asks for one is refused there, before any work.
SEARCH_REFUSAL_ENV = "YOLO_KFP_SEARCH_REFUSAL"


def is_range(values) -> bool:
    return isinstance(values, dict)


def grid_size(search_space: dict) -> int:
    """Combinations of the lists (ranges count as one: they are only sampled)."""
    return math.prod(len(values) for values in search_space.values() if not is_range(values))


def whole(value):
    """KFP hands integers inside lists and dicts over as floats: 3.0 is 3 again."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _sample_range(bounds: dict, rng: random.Random):
    low, high = bounds["min"], bounds["max"]
    integers = all(isinstance(whole(v), int) and not isinstance(v, bool) for v in (low, high))
    if bounds.get("log"):
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    if integers:
        return min(int(high), max(int(low), round(value)))
    return min(high, max(low, float(f"{value:.4g}")))  # four digits: what a table shows and a person retypes


def _combination(search_space: dict, names: list[str], index: int) -> dict:
    """The grid's ``index``-th combination (mixed radix over the lists, the last name fastest)."""
    settings = {}
    for name in reversed(names):
        values = search_space[name]
        index, position = divmod(index, len(values))
        settings[name] = values[position]
    return {name: settings[name] for name in names}


def refused_search(search_space: dict) -> list[str]:
    """The problem of a search asked of a pipeline compiled without one (``SEARCH_REFUSAL_ENV``), if it is."""
    refusal = os.environ.get(SEARCH_REFUSAL_ENV, "")
    return [refusal] if search_space and refusal else []


def plan_trials(search_space: dict, search_trials: int, seed: int) -> list[dict]:
    """The trials, ``{"trial": i, "settings": {name: value}}`` each: every combination of a grid
    (``search_trials`` 0), else ``search_trials`` of them drawn with ``seed`` (distinct where the space
    is a grid). The same arguments give the same plan; an empty space gives none."""
    if not search_space:
        return []
    names = sorted(search_space)
    lists_only = not any(is_range(v) for v in search_space.values())
    if search_trials == 0:
        chosen = [_combination(search_space, names, i) for i in range(grid_size(search_space))]
    elif lists_only:
        chosen = [_combination(search_space, names, i)
                  for i in _distinct_indexes(grid_size(search_space), search_trials, random.Random(seed))]
    else:
        rng = random.Random(seed)
        chosen = [{name: _sample_range(search_space[name], rng) if is_range(search_space[name])
                   else rng.choice(search_space[name]) for name in names} for _ in range(search_trials)]
    return [{"trial": i, "settings": {k: whole(v) for k, v in settings.items()}} for i, settings in enumerate(chosen)]


def _distinct_indexes(size: int, count: int, rng: random.Random) -> list[int]:
    """``count`` distinct combinations of a grid of ``size`` (all where it has fewer), sorted, without listing the
    grid: ``random.sample`` takes a range of at most ``sys.maxsize``, drawing one by one takes any size."""
    if size <= sys.maxsize:
        return sorted(rng.sample(range(size), min(count, size)))
    chosen: set[int] = set()
    while len(chosen) < count:
        chosen.add(rng.randrange(size))
    return sorted(chosen)


def trial_settings(run_settings: dict, values: dict, search_epochs: int = 0) -> dict:
    """The full training settings of a trial: the run's, with the trial's ``values`` over them (train_args keys
    merged into ``train_args``), trained for ``search_epochs`` (0: the run's epochs) unless epochs is searched."""
    settings = {**run_settings, "train_args": dict(run_settings.get("train_args") or {})}
    for name, value in values.items():
        value = whole(value)
        if name in INTEGER_PARAMETERS:
            settings[name] = int(value)
        elif name == "lr0":
            settings[name] = float(value)
        elif name in SEARCHABLE:
            settings[name] = value
        else:
            settings["train_args"][name] = value
    if "epochs" not in values and search_epochs:
        settings["epochs"] = int(search_epochs)
    return settings


def searched_values(search_space: dict) -> list[tuple]:
    """Every (name, value) a search may train with, for checks: each list value and each range's bounds."""
    return list(itertools.chain.from_iterable(
        ((name, values["min"]), (name, values["max"])) if is_range(values) else ((name, v) for v in values)
        for name, values in search_space.items()))
