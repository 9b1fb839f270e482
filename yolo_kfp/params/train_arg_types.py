"""The types and ranges Ultralytics' ``check_cfg`` enforces on training arguments, checked before any step runs.

Ultralytics checks them only when training starts: a ``train_args`` value it refuses would fail the train
step after the download and conversion, and each retry of the step would fail the same way. The rules are
``check_cfg``'s, on the tables in ``yolo_kfp.params.ultralytics_catalog``, with two refusals of our own:
true/false where a number belongs (Python would count them as 1 and 0) and NaN or infinity for any number.
"""

import json
import math

from yolo_kfp.params.ultralytics_catalog import (
    AMP_VALUES,
    BOOL_KEYS,
    FLOAT_KEYS,
    FRACTION_KEYS,
    INT_KEYS,
    INT_MINIMUMS,
    NULLABLE_KEYS,
    QUANTIZE_VALUES,
    STR_KEYS,
)

TYPED_KEYS = FLOAT_KEYS | FRACTION_KEYS | INT_KEYS | BOOL_KEYS | STR_KEYS | {"scale", "compile", "amp", "quantize"}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fraction(value) -> bool:
    return _number(value) and 0 <= value <= 1


def _dataset_fraction(value) -> bool:
    """``fraction``: a share in (0, 1], a count of images above 1, or [train, val(, test)] counts or shares."""
    if isinstance(value, list):
        return len(value) in (2, 3) and all(value[:2]) and all(
            (type(x) is int and x >= 0) or (type(x) is float and 0 <= x <= 1) for x in value)
    return _number(value) and (0 < value <= 1 or (isinstance(value, int) and value > 1))


def _scale(value) -> bool:
    """``scale``: a gain from 0 to 1, or a (min, max) pair of numbers."""
    if isinstance(value, list):
        return len(value) == 2 and all(_number(x) for x in value)
    return _fraction(value)


def _rule(key: str):
    """What ``key`` accepts: a test of a value, and its words for the message."""
    if key == "fraction":
        return _dataset_fraction, "a share in (0, 1], a count of images above 1, or a [train, val, test] list"
    if key == "scale":
        return _scale, "a number from 0 to 1, or a [min, max] pair"
    if key == "compile":
        return lambda v: isinstance(v, (bool, str)), "true, false, or a torch.compile mode"
    if key == "amp":
        return (lambda v: isinstance(v, bool) or (isinstance(v, str) and v.lower() in AMP_VALUES),
                f"true, false, or one of {', '.join(AMP_VALUES)}")
    if key == "quantize":
        return (lambda v: not isinstance(v, bool) and str(v).lower() in QUANTIZE_VALUES,
                f"one of {', '.join(QUANTIZE_VALUES)}")
    if key in FRACTION_KEYS:
        return _fraction, "a number from 0 to 1"
    if key in FLOAT_KEYS:
        return _number, "a number"
    if key in INT_KEYS:
        least = INT_MINIMUMS.get(key)
        return (lambda v: _number(v) and float(v).is_integer() and (least is None or v >= least),
                "a whole number" + ("" if least is None else f", {least} or more"))
    if key in BOOL_KEYS:
        return lambda v: isinstance(v, bool), "true or false"
    return lambda v: isinstance(v, str), "a string"


def train_args_type_problems(train_args: dict) -> list[str]:
    """One line per value of ``train_args`` that Ultralytics (or our stricter number rule) would refuse, naming
    the key, the value and what it takes; arguments without a type rule are not looked at."""
    problems = []
    for key, value in train_args.items():
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # KFP hands numbers in a dict over as floats; the train step makes them ints again
        if key not in TYPED_KEYS or (value is None and key in NULLABLE_KEYS | {"quantize"}):
            continue
        accepts, wanted = _rule(key)
        if value is None or not accepts(value):
            problems.append(f"train_args {key}={json.dumps(value)} is not what Ultralytics takes: give {wanted}")
    return problems
