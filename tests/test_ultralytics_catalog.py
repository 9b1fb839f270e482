"""What the parameter checks know of Ultralytics equals what the installed Ultralytics does."""

import importlib.util
import inspect
import os
import re

import pytest
import yaml

from yolo_kfp.params import ultralytics_catalog as catalog
from yolo_kfp.params.train_arg_types import TYPED_KEYS, train_args_type_problems
from yolo_kfp.params.ultralytics_catalog import ARGUMENTS, MODEL_LAYERS, OPTIMIZERS


def test_arguments_are_ultralytics_default_configuration():
    package = importlib.util.find_spec("ultralytics").submodule_search_locations[0]
    with open(os.path.join(package, "cfg", "default.yaml")) as f:
        assert ARGUMENTS == set(yaml.safe_load(f))


def test_optimizers_are_the_trainers():
    from ultralytics.engine.trainer import BaseTrainer

    source = inspect.getsource(BaseTrainer.build_optimizer)
    (listed,) = re.findall(r"optimizers = \{([^}]*)\}", source)
    assert set(OPTIMIZERS) == set(re.findall(r'"([^"]+)"', listed))


def test_model_layers_are_those_of_the_model_definitions():
    from ultralytics.nn.tasks import yaml_model_load
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES

    assert set(MODEL_LAYERS) <= GITHUB_ASSETS_NAMES
    for name, layers in MODEL_LAYERS.items():
        stem = name[:-len(".pt")].replace("-oiv7", "")
        definition = yaml_model_load(re.sub(r"^(yolov[35].*)u$", r"\1", stem) + ".yaml")
        assert len(definition["backbone"]) + len(definition["head"]) == layers, name


def test_argument_type_tables_are_check_cfgs():
    from ultralytics import cfg

    assert (catalog.FLOAT_KEYS, catalog.FRACTION_KEYS, catalog.INT_KEYS, catalog.BOOL_KEYS, catalog.STR_KEYS) == (
        cfg.CFG_FLOAT_KEYS, cfg.CFG_FRACTION_KEYS, cfg.CFG_INT_KEYS, cfg.CFG_BOOL_KEYS, cfg.CFG_STR_KEYS)
    assert catalog.INT_MINIMUMS == cfg.CFG_INT_MIN
    assert set(catalog.QUANTIZE_VALUES) == set(cfg.QUANTIZE_ALIASES)
    typed = TYPED_KEYS - {"amp", "quantize"}
    assert catalog.NULLABLE_KEYS == {k for k in typed if cfg.DEFAULT_CFG_DICT[k] is None} | {"auto_augment"}
    assert TYPED_KEYS <= ARGUMENTS


SAMPLES = [True, False, "yes", "", "fp16", "BF16", "int8", "w8a8", 8, 0, 1, 2, -1, 0.5, 1.5, -0.5, 1.0, 100,
           None, [0.5, 2.0], [0.8, 0.1, 0.1], [100, 20], [0, 1], [1], "max-autotune"]


@pytest.mark.parametrize("key", sorted(TYPED_KEYS))
def test_train_args_types_are_refused_where_check_cfg_refuses_them(key):
    """Ultralytics' own check decides each sample; ours agrees, but for true/false where a number belongs."""
    from ultralytics.cfg import check_cfg

    for value in SAMPLES:
        try:
            check_cfg({key: value})
            ultralytics_takes = True
        except (TypeError, ValueError):
            ultralytics_takes = False
        ours = train_args_type_problems({key: value})
        number_key = key in catalog.FLOAT_KEYS | catalog.FRACTION_KEYS | catalog.INT_KEYS | {"scale"}
        if isinstance(value, bool) and number_key:
            assert ours, (key, value)  # stricter: Python would count true as 1
        else:
            assert (ours == []) == ultralytics_takes, (key, value, ours)
        assert len(ours) <= 1 and all(f"train_args {key}=" in line for line in ours)


@pytest.mark.parametrize("key", sorted(catalog.FLOAT_KEYS | catalog.FRACTION_KEYS | catalog.INT_KEYS))
def test_nan_and_infinity_are_refused_for_every_number(key):
    for value in (float("nan"), float("inf"), float("-inf")):
        (line,) = train_args_type_problems({key: value})
        assert f"train_args {key}=" in line and "give a" in line
