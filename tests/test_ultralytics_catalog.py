"""What the parameter checks know of Ultralytics equals what the installed Ultralytics does."""

import importlib.util
import inspect
import os
import re

import yaml

from components.core.ultralytics_catalog import ARGUMENTS, MODEL_LAYERS, OPTIMIZERS


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
