"""A run's parameter values, from ``--param KEY=VALUE`` text or a notebook's dict: converted to the types of the
parameter table and checked, for ``run-local``, ``submit`` and ``schedule`` alike.

It reads the table, not the compiled pipeline, so that reading or checking a value loads no kfp (a test holds it).
"""

from yolo_kfp.params import run_parameters
from yolo_kfp.params.validation import check_parameters, convert_parameter


def parse_param(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` as its two parts."""
    key, sep, raw = text.partition("=")
    if not sep:
        raise ValueError(f"--param wants KEY=VALUE, not {text!r}")
    return key, raw


def convert_params(params: dict, preset: dict | None = None) -> dict:
    """``params`` converted to the types the table declares over ``preset`` (what ``--demo`` and ``--search``
    set), checked together with the defaults they join: the values the run will use. An unknown key is refused
    with the known ones."""
    types = run_parameters.types()
    unknown = [key for key in params if key not in types]
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r}; known: {', '.join(types)} (the pods' settings and "
                         "Secrets are fixed when compiling: yolo-kfp compile --help)")
    converted = {**(preset or {}), **{key: convert_parameter(key, value, types[key]) for key, value in params.items()}}
    check_parameters({**run_parameters.defaults(), **converted})
    return converted


def param_texts(items: list[str]) -> dict[str, str]:
    """``--param KEY=VALUE`` items as they were written: for a command whose client converts and checks them
    (``submit``, ``schedule``: the same door as a notebook's dict). A key given twice is refused."""
    texts: dict[str, str] = {}
    for key, raw in map(parse_param, items or []):
        if key in texts:
            raise ValueError(f"--param {key} is given twice: give it once")
        texts[key] = raw
    return texts


def parse_params(items: list[str], preset: dict | None = None) -> dict:
    """``--param KEY=VALUE`` items as typed, checked parameters over ``preset``."""
    return convert_params(param_texts(items), preset)
