"""The parameter table is the one declaration of every run parameter: the pipeline's signature and run form,
the CLI's typing and help, the checks and the table of docs/parameters.md come from it, and the cores agree
with it."""

import importlib
import importlib.util
import inspect
import os
import pkgutil
import subprocess
import sys

import pytest
import yaml

from yolo_kfp.cli import build_parser
from yolo_kfp.components import step_settings
from yolo_kfp.components.preflight import preflight
from yolo_kfp.params import run_parameters
from yolo_kfp.params.run_parameters import BY_NAME, PARAMETERS, RunParameter
from yolo_kfp.params.run_values import parse_params
from yolo_kfp.params.validation import RULES, parameter_problems

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARAMETERS_PAGE = os.path.join(ROOT, "docs", "parameters.md")
TOY = RunParameter("warmup_epochs", float, 3.0, "training", "Epochs of learning-rate warm-up (this test's toy).",
                   minimum=0, maximum=20)
KFP_TYPES = {int: "Integer", float: "Float", bool: "Boolean", str: "String", list: "List", dict: "Dict"}


def help_of(command: str) -> str:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")  # the subcommands
    return action.choices[command].format_help()


def test_the_parameters_page_holds_the_parameter_table():
    with open(PARAMETERS_PAGE) as f:
        assert run_parameters.markdown_table() in f.read()


def test_the_run_form_is_the_table(default_pipeline):
    with open(default_pipeline) as f:
        inputs = next(yaml.safe_load_all(f))["root"]["inputDefinitions"]["parameters"]
    assert list(inputs) == sorted(BY_NAME)  # KFP sorts them
    kinds = {int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE", bool: "BOOLEAN", str: "STRING", list: "LIST",
             dict: "STRUCT"}
    for p in PARAMETERS:
        assert inputs[p.name]["description"] == p.doc and inputs[p.name]["defaultValue"] == p.default, p.name
        assert inputs[p.name]["parameterType"] == kinds[p.kind], p.name


def test_every_rule_and_range_belongs_to_a_parameter():
    assert set(RULES) <= set(BY_NAME)
    for p in PARAMETERS:
        if p.choices is not None:
            assert p.default in p.choices, p.name
        assert parameter_problems({p.name: p.default}) == [], p.name


def test_preflight_checks_the_table_where_its_values_are_known(tmp_path):
    """Preflight's inputs are table parameters, of the table's types; every parameter with a range or a rule
    reaches it (a run from the UI form passes no other check). The pod settings are the cluster's to refuse."""
    inputs = preflight.component_spec.inputs
    assert set(inputs) <= set(BY_NAME)
    kinds = {int: "Integer", float: "Float", bool: "Boolean", str: "String", list: "List", dict: "Dict"}
    for name, spec in inputs.items():
        assert spec.type == kinds[BY_NAME[name].kind], name
    checked = {p.name for p in PARAMETERS if p.allowed or p.name in RULES} | set(run_parameters.TRAINING)
    assert checked <= set(inputs), sorted(checked - set(inputs))


# What the CLI does with --param, and every rule over the values it gives, in a process of its own.
CHECK_WITHOUT_KFP = """
import sys
from yolo_kfp.params import run_parameters
from yolo_kfp.params.run_values import parse_params
from yolo_kfp.params.validation import RULES, parameter_problems
params = parse_params(["epochs=5", 'classes=["Car"]'])
assert params == {"epochs": 5, "classes": ["Car"]}, params
values = {**run_parameters.defaults(), **params}
assert set(RULES) <= set(values) and parameter_problems(values) == []
assert parameter_problems({**values, "epochs": 0}) == ["epochs must be from 1 to 10000, not 0"]
print(sorted(name for name in sys.modules if name == "kfp" or name.startswith("kfp.")))
"""


def test_reading_and_checking_a_parameter_loads_no_kfp():
    """A value is read and checked by the table alone: a client that checks one needs no kfp (slow to import)."""
    result = subprocess.run([sys.executable, "-c", CHECK_WITHOUT_KFP], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_no_core_keeps_a_default_of_its_own():
    """A core function's keyword that is a run parameter defaults to the table's value ("" or None for a value
    that may be absent: no location, the model's own image size)."""
    differing = []
    rooms = [importlib.import_module(f"yolo_kfp.{room}") for room in ("infra", "params", "data", "model", "release")]
    for module_info in (info for room in rooms for info in pkgutil.iter_modules(room.__path__, f"{room.__name__}.")):
        module = importlib.import_module(module_info.name)
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ != module.__name__:
                continue
            for key, parameter in inspect.signature(function).parameters.items():
                default = parameter.default
                if key not in BY_NAME or default in (inspect.Parameter.empty, "", None):
                    continue
                if (list(default) if isinstance(default, tuple) else default) != BY_NAME[key].default:
                    differing.append(f"{module_info.name}.{name}({key}={default!r})")
    assert differing == []


def load_module(name: str, path) -> object:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def with_toy_in_preflight(tmp_path, monkeypatch):
    """CONTRIBUTING.md's step 2 of a training parameter: the toy in the preflight component's signature (what KFP
    needs literally); returns that component and the wiring that uses it."""
    monkeypatch.setattr(step_settings, "SETTINGS", dict(step_settings.SETTINGS))
    with open(os.path.join(ROOT, "components", "preflight.py")) as f:
        component = f.read()
    assert component.count("def preflight(") == 1
    component = component.replace("def preflight(", f"def preflight({TOY.name}: float, ")
    (tmp_path / "toy_preflight.py").write_text(component)
    with open(os.path.join(ROOT, "pipeline", "pipeline.py")) as f:
        wiring = f.read()
    imported = "from yolo_kfp.components.preflight import preflight\n"
    assert wiring.count(imported) == 1
    (tmp_path / "toy_wiring.py").write_text(wiring.replace(imported, "from toy_preflight import preflight\n"))
    monkeypatch.syspath_prepend(str(tmp_path))
    toy_preflight = load_module("toy_preflight", tmp_path / "toy_preflight.py")
    return toy_preflight.preflight, load_module("toy_wiring", tmp_path / "toy_wiring.py")


def test_a_training_parameter_is_its_table_entry_and_a_preflight_input(tmp_path, monkeypatch, yolo_dataset,
                                                                       ultralytics_arguments):
    """CONTRIBUTING.md's 'adding a parameter', for an Ultralytics argument: the table's entry and preflight's
    signature put it into the run form, the CLI (--param and the train step's option), the checks and the
    arguments the train step hands Ultralytics; nothing else is edited."""
    monkeypatch.setattr(run_parameters, "PARAMETERS", PARAMETERS + (TOY,))
    monkeypatch.setitem(BY_NAME, TOY.name, TOY)
    monkeypatch.setattr(run_parameters, "TRAINING", run_parameters.TRAINING + (TOY.name,))
    toy_preflight, wiring = with_toy_in_preflight(tmp_path, monkeypatch)

    spec = next(yaml.safe_load_all(open(wiring.compile_pipeline(str(tmp_path / "p.yaml")))))
    toy = spec["root"]["inputDefinitions"]["parameters"][TOY.name]
    assert toy == {"defaultValue": 3.0, "description": f"[training] {TOY.description}",
                   "isOptional": True, "parameterType": "NUMBER_DOUBLE"}
    preflight_input = spec["components"]["comp-preflight"]["inputDefinitions"]["parameters"][TOY.name]
    assert preflight_input["description"] == TOY.description
    assert parse_params([f"{TOY.name}=1.5"]) == {TOY.name: 1.5}
    with pytest.raises(ValueError, match=f"{TOY.name} must be a number, not 'long'"):
        parse_params([f"{TOY.name}=long"])
    assert parameter_problems({TOY.name: -1.0}) == [f"{TOY.name} must be from 0 to 20, not -1.0"]
    assert f"{TOY.name} (float, default 3.0; from 0 to 20): [training] Epochs" in help_of("submit")
    step = build_parser().parse_args(["step", "train", "--data", "d", "--output-dir", "o", "--warmup-epochs", "2"])
    assert step.warmup_epochs == 2.0
    assert f"| `{TOY.name}` | float | `3.0` | from 0 to 20 | [training] Epochs" in run_parameters.markdown_table()

    values = {**run_parameters.defaults(), TOY.name: 1.5}
    *_, training = toy_preflight.python_func(**{name: values[name] for name in toy_preflight.component_spec.inputs})
    assert training[TOY.name] == 1.5
    tiny = {"base_model": "yolov5n.yaml", "freeze": 0, "epochs": 1, "batch": 8, "imgsz": 64, "workers": 0,
            "train_args": {"plots": False}}
    handed = ultralytics_arguments(data_dir=yolo_dataset, output_dir=str(tmp_path / "model"), **{**training, **tiny})
    assert handed[TOY.name] == 1.5


def component_copy_problems(component) -> list[str]:
    """Where a component's input named after a run parameter is declared otherwise than the table says."""
    problems = []
    for name, spec in (component.component_spec.inputs or {}).items():
        if name in BY_NAME:
            if spec.type != KFP_TYPES[BY_NAME[name].kind]:
                kind = BY_NAME[name].kind.__name__
                problems.append(f"{component.name}: {name} is {spec.type}, the table's is {kind}")
            if spec.description != BY_NAME[name].description:
                problems.append(f"{component.name}: {name} says {spec.description!r}")
    return problems


def test_no_component_declares_a_parameter_otherwise_than_the_table():
    """A component's input named after a run parameter has the table's type and description (the description is
    filled in from the table: a line a component writes itself must say the same)."""
    components = {value.name: value for module in pkgutil.iter_modules([os.path.join(ROOT, "components")])
                  for value in vars(importlib.import_module(f"yolo_kfp.components.{module.name}")).values()
                  if hasattr(value, "component_spec")}
    assert set(components) == set(step_settings.SETTINGS)
    assert [problem for component in components.values() for problem in component_copy_problems(component)] == []

    @step_settings.component(step_settings.DATA_IMAGE, timeout_hours=1)
    def drifting(epochs: str, seed: int) -> str:
        """A component whose copy of a parameter drifts.

        Args:
            epochs: Training epochs.
        """
        return epochs

    step_settings.SETTINGS.pop("drifting")
    assert component_copy_problems(drifting) == ["drifting: epochs is String, the table's is int",
                                                 "drifting: epochs says 'Training epochs.'"]


def test_compile_options_are_declared_once():
    """Each compile option's field gives the CLI flag (with its help and default) and its row in
    docs/parameters.md."""
    from yolo_kfp.pipeline.compile_options import compile_options, compile_options_table, option_default

    with open(PARAMETERS_PAGE) as f:
        assert compile_options_table() in f.read()
    text = "".join(help_of("compile").split())  # argparse wraps lines, at hyphens too
    for option in compile_options():
        flag = f"--{option.name.replace('_', '-')}"
        assert flag in text and "".join(option.metadata["help"].split()) in text, flag
    args = build_parser().parse_args(["compile", "--output", "x.yaml"])
    assert {o.name: getattr(args, o.name) for o in compile_options()} == {o.name: option_default(o)
                                                                          for o in compile_options()}
