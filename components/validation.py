"""Pipeline parameters checked before any work: every problem named, with what to use instead.

The CLI checks a run's parameters before it starts or submits it, and the preflight step checks them
again on the cluster (a run started from the UI form never passed through the CLI).
"""

import math
import re

CACHE_MODES = ("", "ram", "disk")
STRIDE = 32  # YOLOv5/v8 heads downsample by 32: image sizes must be multiples of it


def _positive_int(name: str, value, problems: list[str]) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        problems.append(f"{name} must be a positive integer, not {value!r}")


def _s3_or_empty(name: str, value: str, problems: list[str]) -> None:
    if value and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?", value):
        problems.append(f"{name} must be empty or an S3 URL like s3://bucket/prefix, not {value!r}")


def plain_numbers(args: dict) -> dict:
    """KFP hands integers over as floats in some places (3.0, numbers inside dicts): make them ints again."""
    return {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in args.items()}


def parameter_problems(p: dict) -> list[str]:
    """What is wrong with the parameters ``p`` (any subset of the pipeline's); empty when nothing is."""
    from components.convert import DEFAULT_SPLIT_RATIOS
    from components.openimages import SPLITS

    p = plain_numbers(p)
    problems: list[str] = []
    if "classes" in p:
        classes = p["classes"]
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c.strip() for c in classes):
            problems.append(f"classes must be a non-empty list of Open Images class names, not {classes!r}")
        elif len(set(classes)) != len(classes):
            problems.append(f"classes lists {sorted({c for c in classes if classes.count(c) > 1})} more than once")
    for name in ("max_samples_per_class", "download_shard_size", "epochs"):
        if name in p:
            _positive_int(name, p[name], problems)
    if "split" in p and p["split"] not in SPLITS:
        problems.append(f"split must be one of {', '.join(SPLITS)}, not {p['split']!r}")
    if "split_ratios" in p:
        ratios = p["split_ratios"]
        if (not isinstance(ratios, list) or len(ratios) != 3 or not all(isinstance(r, (int, float)) for r in ratios)
                or any(r < 0 for r in ratios) or not math.isclose(sum(ratios), 1.0, abs_tol=1e-6)
                or ratios[1] == 0 or ratios[2] == 0):
            problems.append(f"split_ratios must be three non-negative numbers (train, val, test) summing to 1 with "
                            f"val and test above 0, e.g. {list(DEFAULT_SPLIT_RATIOS)}, not {ratios!r}")
    if "batch" in p and (not isinstance(p["batch"], int) or isinstance(p["batch"], bool)
                         or not (p["batch"] > 0 or p["batch"] == -1)):
        problems.append(f"batch must be a positive integer or -1 (Ultralytics fits it to the GPU's memory), "
                        f"not {p['batch']!r}")
    if "imgsz" in p:
        imgsz = p["imgsz"]
        if not isinstance(imgsz, int) or isinstance(imgsz, bool) or imgsz <= 0:
            problems.append(f"imgsz must be a positive integer, not {imgsz!r}")
        elif imgsz % STRIDE:
            problems.append(f"imgsz {imgsz} is not a multiple of {STRIDE}: Ultralytics would train at "
                            f"{math.ceil(imgsz / STRIDE) * STRIDE}; use that or {imgsz // STRIDE * STRIDE or STRIDE}")
    if "freeze" in p and (not isinstance(p["freeze"], int) or isinstance(p["freeze"], bool) or p["freeze"] < 0):
        problems.append(f"freeze must be a number of layers, 0 or more, not {p['freeze']!r}")
    if "cache" in p and p["cache"] not in CACHE_MODES:
        problems.append(f"cache must be '', 'ram' or 'disk', not {p['cache']!r}")
    if "min_map50" in p and not (isinstance(p["min_map50"], (int, float)) and 0 <= p["min_map50"] <= 1):
        problems.append(f"min_map50 must be between 0 and 1, not {p['min_map50']!r}")
    if "max_map50_drop" in p and not (isinstance(p["max_map50_drop"], (int, float)) and p["max_map50_drop"] >= 0):
        problems.append(f"max_map50_drop must be 0 or more, not {p['max_map50_drop']!r}")
    for name in ("publish_to", "extra_data", "open_images_cache"):
        if name in p:
            _s3_or_empty(name, p[name], problems)
    if p.get("base_model_sha256") and not re.fullmatch(r"[0-9a-fA-F]{64}", p["base_model_sha256"]):
        problems.append("base_model_sha256 must be empty or 64 hexadecimal digits")
    return problems


def check_parameters(p: dict) -> None:
    problems = parameter_problems(p)
    if problems:
        raise ValueError("bad parameters:\n  - " + "\n  - ".join(problems))


def check_freeze(freeze: int, layers: int, model_name: str) -> None:
    """Freezing every layer leaves nothing to learn: refuse ``freeze`` at or beyond the model's depth."""
    if freeze >= layers:
        raise ValueError(f"freeze {freeze} is beyond {model_name}'s {layers} layers (0-{layers - 1}); freezing "
                         f"them all leaves nothing to train. The YOLOv5 backbone is freeze=10")
