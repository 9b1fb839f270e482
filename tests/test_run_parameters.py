"""The parameter table is the one declaration of every run parameter: the pipeline's signature and run form,
the CLI's typing and help, the checks and the table of docs/parameters.md come from it, and the cores agree
with it."""

import importlib
import inspect
import os
import pkgutil
import subprocess
import sys

import pytest
import yaml

from yolo_kfp.cli import build_parser
from yolo_kfp.components.preflight import preflight
from yolo_kfp.params import run_parameters
from yolo_kfp.params.run_parameters import BY_NAME, PARAMETERS, RunParameter
from yolo_kfp.params.run_values import parse_params
from yolo_kfp.params.validation import RULES, parameter_problems
from yolo_kfp.pipeline.pipeline import compile_pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARAMETERS_PAGE = os.path.join(ROOT, "docs", "parameters.md")
TOY = RunParameter("toy_rate", float, 0.5, "training", "A toy rate that only this test knows.", above=0, maximum=1)


def compiled_inputs(tmp_path) -> dict:
    with open(compile_pipeline(str(tmp_path / "p.yaml"))) as f:
        return next(yaml.safe_load_all(f))["root"]["inputDefinitions"]["parameters"]


def help_of(command: str) -> str:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")  # the subcommands
    return action.choices[command].format_help()


def test_the_parameters_page_holds_the_parameter_table():
    with open(PARAMETERS_PAGE) as f:
        assert run_parameters.markdown_table() in f.read()


def test_the_run_form_is_the_table(tmp_path):
    inputs = compiled_inputs(tmp_path)
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
    checked = {p.name for p in PARAMETERS if p.allowed or p.name in RULES}
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


def test_a_table_entry_alone_makes_a_parameter(tmp_path, monkeypatch):
    """CONTRIBUTING.md's 'adding a parameter': the entry puts it into the run form with its description, the
    CLI's typing and help, the checks and the table of docs/parameters.md."""
    monkeypatch.setattr(run_parameters, "PARAMETERS", PARAMETERS + (TOY,))
    monkeypatch.setitem(BY_NAME, TOY.name, TOY)

    toy = compiled_inputs(tmp_path)["toy_rate"]
    assert toy["description"] == "[training] A toy rate that only this test knows."
    assert toy["defaultValue"] == 0.5 and toy["parameterType"] == "NUMBER_DOUBLE"
    assert parse_params(["toy_rate=0.25"]) == {"toy_rate": 0.25}
    with pytest.raises(ValueError, match="toy_rate must be a number, not 'high'"):
        parse_params(["toy_rate=high"])
    with pytest.raises(ValueError, match="toy_rate must be above 0 and at most 1, not 2.0"):
        parse_params(["toy_rate=2"])
    assert parameter_problems({"toy_rate": 0.0}) == ["toy_rate must be above 0 and at most 1, not 0.0"]
    assert "toy_rate (float, default 0.5; above 0 and at most 1): [training] A toy rate" in help_of("submit")
    assert "| `toy_rate` | float | `0.5` | above 0 and at most 1 | [training] A toy rate" in (
        run_parameters.markdown_table())


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
