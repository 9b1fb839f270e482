"""The shape of the code: one installed package whose rooms import each other one way only, no import
circles, and what importing the pipeline or a component costs."""

import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The two folders at the repository's top that pyproject.toml maps into the package (and yolo_kfp/ links to).
MAPPED = {"components": "yolo_kfp.components", "pipeline": "yolo_kfp.pipeline"}
# Each room of the package and the rooms it may import: the library's rooms one way only, lowest first, then
# the KFP components and the wiring over the library, and the client, the local harness and the CLI on top.
LIBRARY = ("infra", "params", "data", "model", "release")
ROOMS = {
    "infra": set(),
    "params": {"infra"},
    "data": {"infra", "params"},
    "model": {"infra", "params"},
    "release": {"infra", "params", "model"},
    "components": {*LIBRARY},
    "pipeline": {*LIBRARY, "components"},
    "cluster": {"infra", "params", "model", "pipeline"},
    "local": {*LIBRARY, "pipeline"},
    "cli": {*LIBRARY, "components", "pipeline", "cluster", "local"},
}
HEAVY = ("torch", "ultralytics", "fiftyone", "cv2", "mlflow")


def project_modules() -> dict[str, str]:
    """Every module of the package and its file: its path under yolo_kfp/, or under a mapped folder."""
    folders = {os.path.join(ROOT, "yolo_kfp"): "yolo_kfp"} | {os.path.join(ROOT, f): p for f, p in MAPPED.items()}
    modules = {}
    for top, package in folders.items():
        for folder, _, files in os.walk(top):  # the links to the mapped folders are not followed
            relative = os.path.relpath(folder, top)
            prefix = ".".join([package, *([] if relative == "." else relative.split(os.sep))])
            modules |= {f"{prefix}.{name[:-3]}".removesuffix(".__init__"): os.path.join(folder, name)
                        for name in files if name.endswith(".py")}
    return modules


def room_of(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "yolo_kfp"


def test_every_module_is_imported_by_its_name_in_the_package():
    """The installed package (editable here) finds each module under its name, and no folder of the
    repository holds a Python package that the installed one leaves out."""
    modules = project_modules()
    for name, path in modules.items():
        assert os.path.realpath(importlib.util.find_spec(name).origin) == os.path.realpath(path), name
    packages = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*__init__.py"],
                              capture_output=True, text=True, check=True, cwd=ROOT).stdout.split()
    assert {os.path.dirname(path).replace("/", ".") for path in packages} == {
        name.replace("yolo_kfp.components", "components").replace("yolo_kfp.pipeline", "pipeline")
        for name, path in modules.items() if path.endswith("__init__.py")}


def test_every_module_of_the_wheel_is_where_its_name_says(tmp_path):
    """Built as pip builds it, from the tracked files alone: each module's file is the path its name says, the
    mapped folders aside."""
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, text=True, check=True, cwd=ROOT).stdout.split()
    source = tmp_path / "source"
    for path in tracked:
        if os.path.lexists(os.path.join(ROOT, path)):
            os.makedirs(source / os.path.dirname(path), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, path), source / path, follow_symlinks=False)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(source)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("*.whl")
    names = [n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".py")]
    expected = {name.replace(".", "/") + ("/__init__.py" if path.endswith("__init__.py") else ".py")
                for name, path in project_modules().items()}
    assert set(names) == expected
    for name in names:
        mapped = next((folder for folder in MAPPED if name.startswith(f"yolo_kfp/{folder}/")), None)
        path = name.removeprefix("yolo_kfp/") if mapped else name
        assert os.path.isfile(os.path.join(ROOT, path)) and not os.path.islink(os.path.join(ROOT, path)), name


def test_each_room_imports_only_the_rooms_below_it():
    """A module imports its own room and the rooms ROOMS allows it, at its top or inside a function alike."""
    modules = project_modules()
    crossings = sorted(f"{name} imports {other}" for name, path in modules.items()
                       for other in imports_of(path, set(modules))
                       if room_of(other) not in ROOMS.get(room_of(name), set()) | {room_of(name), "yolo_kfp"})
    assert crossings == []
    assert {room_of(name) for name in modules} == set(ROOMS) | {"yolo_kfp"}


# An import of a folder by its bare name works from the repository's top (the current directory is on sys.path)
# and nowhere else: not in an installed package, an image or the compiled pipeline's steps.
BARE_IMPORT = re.compile(r"(?:(?:^|[\s;\"'])from|(?:^|[;\"'])[ \t]*import) (?:components|pipeline|cluster|local)\b",
                         flags=re.MULTILINE)


def test_nothing_imports_a_folder_by_its_bare_name():
    checked = subprocess.run(["git", "ls-files", "*.py", "*.ipynb", "*.sh", "*.Containerfile", "*.yaml", "Makefile",
                              ".ci/run"], capture_output=True, text=True, check=True, cwd=ROOT).stdout.split()
    found = []
    for path in checked:
        with open(os.path.join(ROOT, path)) as f:
            text = f.read()
        if path.endswith(".ipynb"):
            text = "\n".join("".join(cell["source"]) for cell in json.loads(text)["cells"])
        found += [f"{path}: {match.group().strip()}" for match in BARE_IMPORT.finditer(text)]
    assert found == []
    bare = ['code = "import sys; from ' + 'pipeline.pipeline import x"', "    import " + "local.runner"]
    assert all(BARE_IMPORT.search(text) for text in bare)  # what it looks for
    assert not any(BARE_IMPORT.search(text) for text in ("from yolo_kfp.pipeline import x", "from kfp import local"))


def imports_of(path: str, modules: set[str]) -> set[str]:
    """The project modules a module imports, at its top or inside a function alike."""
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_module_imports_itself_around_a_circle():
    modules = project_modules()
    graph = {name: imports_of(path, set(modules)) - {name} for name, path in modules.items()}
    assert cycles(graph) == []


def test_the_library_imports_no_kfp_and_the_components_only_define_components():
    for name, path in project_modules().items():
        tree = ast.parse(open(path).read())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names} | {node.module.split(".")[0] for node in ast.walk(tree)
                                                if isinstance(node, ast.ImportFrom) and node.module}
        if room_of(name) in LIBRARY:
            assert "kfp" not in imported, name
        elif room_of(name) == "components" and name not in ("yolo_kfp.components", "yolo_kfp.components.step_settings"):
            functions = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
            assert functions and all(any(isinstance(d, ast.Call) and getattr(d.func, "id", "") == "component"
                                         for d in f.decorator_list) for f in functions), name


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]


def test_the_pipeline_and_every_component_load_without_the_heavy_libraries():
    components = [name for name, path in project_modules().items()
                  if room_of(name) == "components" and "@component(" in open(path).read()]
    code = (f"import sys, yolo_kfp.pipeline.pipeline, {', '.join(components)}; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]"
    assert len(components) == 12


def test_compiling_and_submitting_load_nothing_of_the_local_harness(tmp_path):
    """A workbench or a CI job that compiles and submits needs no S3 server, mirror or MLflow server of ours:
    nothing of yolo_kfp.local, the local runner and its demo harness (what run-local and the tests start here)."""
    local_harness = sorted(name for name in project_modules() if name.startswith("yolo_kfp.local."))
    assert {"yolo_kfp.local.runner", "yolo_kfp.local.s3_server", "yolo_kfp.local.mirror", "yolo_kfp.local.synthetic",
            "yolo_kfp.local.mlflow_server"} <= set(local_harness)
    code = ("import sys; from yolo_kfp import cli; from yolo_kfp.cluster import client, schedules, workbench; "
            "from yolo_kfp.params import run_values; from yolo_kfp.pipeline.pipeline import compile_pipeline; "
            f"compile_pipeline({str(tmp_path / 'p.yaml')!r}); cli.build_parser(); "
            f"cli.main(['compile', '--output', {str(tmp_path / 'q.yaml')!r}]); "
            f"print(sorted(m for m in {local_harness!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip().splitlines()[-1] == "[]"


TOY_STEP = '''
from kfp.dsl import Input, Model

from yolo_kfp.components.step_settings import DATA_IMAGE, component


@component(DATA_IMAGE, timeout_hours=3, data_connection=True, retries=2)
def toy(onnx_model: Input[Model], note: str) -> str:
    """A step added the way CONTRIBUTING.md says.

    Args:
        onnx_model: The export step's ONNX model.
        note: Anything.
    """
    return note
'''


def test_a_new_step_needs_its_module_and_one_call(tmp_path, monkeypatch):
    """CONTRIBUTING.md's count of places: the step's module, one import and one call in the wiring, the YAML."""
    import importlib.util

    import yaml

    from yolo_kfp.components import step_settings

    monkeypatch.setattr(step_settings, "SETTINGS", dict(step_settings.SETTINGS))  # the toy's settings go with the test
    (tmp_path / "toy_step.py").write_text(TOY_STEP)
    monkeypatch.syspath_prepend(str(tmp_path))
    wiring = open(os.path.join(ROOT, "pipeline", "pipeline.py")).read()
    anchor = '        with dsl.If(p["mlflow_tracking_uri"] != "", name="tracking-requested"):\n'  # after export's call
    assert wiring.count(anchor) == 1
    at = wiring.index(anchor)
    wiring = ("from toy_step import toy\n" + wiring[:at]
              + '        toy(onnx_model=export_task.outputs["onnx_model"], note="hello")\n' + wiring[at:])
    (tmp_path / "wiring.py").write_text(wiring)
    spec_ = importlib.util.spec_from_file_location("wiring_with_toy", tmp_path / "wiring.py")
    module = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(module)
    spec, platform = yaml.safe_load_all(open(module.compile_pipeline(str(tmp_path / "p.yaml"))))

    assert spec["root"]["dag"]["tasks"]["toy"]["dependentTasks"] == ["export"]
    assert spec["root"]["dag"]["tasks"]["toy"]["retryPolicy"]["maxRetryCount"] == 2
    assert spec["deploymentSpec"]["executors"]["exec-toy"]["container"]["image"] == "quay.io/yolo-kfp/data:0.1.0"
    toy = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-toy"]
    assert int(toy["activeDeadlineSeconds"]) == 3 * 3600
    assert {e["envVar"] for e in toy["secretAsEnv"][0]["keyToEnv"]} >= {"AWS_ACCESS_KEY_ID", "AWS_S3_ENDPOINT"}
    assert spec["components"]["comp-toy"]["inputDefinitions"]["parameters"]["note"]["description"] == "Anything."
