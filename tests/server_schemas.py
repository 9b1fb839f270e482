"""The protobuf schemas older pipeline servers parse, to read a compiled YAML as each of them does.

A KFP driver and API server parse each executor's Kubernetes config with ``protojson`` and unknown fields
refused, and the pipeline spec likewise. The same parse here: ``json_format.ParseDict(...,
ignore_unknown_fields=False)`` with the ``kubernetes_executor_config_pb2`` of the kfp-kubernetes release
whose fields match a server, beside the ``pipeline_spec_pb2`` of the same era, under a protobuf runtime
that loads them. The 1.x releases on PyPI are sdists; only their ``_pb2`` module is taken (their package
``__init__`` imports ``kfp.dsl``). Each schema runs in its own ``python -S`` with nothing else on its
path, so it cannot pick up this project's newer protobuf or kfp.

The releases come from PyPI once (``pip download``) and are kept under ``$YOLO_KFP_SCHEMA_CACHE``
(default ``~/.cache/yolo-kfp/server-schemas``); later runs are offline.
"""

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass

CACHE = os.environ.get("YOLO_KFP_SCHEMA_CACHE", os.path.expanduser("~/.cache/yolo-kfp/server-schemas"))
RUNTIMES = {  # protobuf runtime -> what the schemas of its era import beside it
    "protobuf-3": ("protobuf==3.20.3", "googleapis-common-protos==1.56.4"),
    "protobuf-6": ("protobuf==6.33.6", "googleapis-common-protos==1.76.0"),
}
CHECK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema_check.py")


@dataclass(frozen=True)
class Schema:
    kubernetes: str  # kfp-kubernetes release
    pipeline_spec: str  # kfp-pipeline-spec release of the same era
    runtime: str  # a key of RUNTIMES

    @property
    def name(self) -> str:
        return f"kfp-kubernetes-{self.kubernetes}"


# The schema each server parses: by its KFP backend (field notes: kfp-kubernetes 1.2.0 ≈ KFP 2.2.0,
# 1.3.0 ≈ 2.3, 1.4.0 ≈ 2.4, 1.5.0 ≈ 2.5.0, 2.14.0 ≈ 2.14.0, 2.15.0 ≈ 2.15 and OpenShift AI 3.0, 2.16.0 ≈ 2.16).
# The targets named in --help, and the backend whose schema each one parses with.
TARGET_SCHEMAS = {"kfp-2.2": "2.2", "rhoai-2.16": "2.2", "kfp-2.3": "2.3", "kfp-2.4": "2.4", "rhoai-2.19": "2.4",
                  "kfp-2.5": "2.5", "rhoai-2.22": "2.5", "kfp-2.14": "2.14", "kfp-2.15": "2.15", "rhoai-3.0": "2.15",
                  "kfp-2.16": "2.16", "rhoai-3.4": "2.16"}
SCHEMAS = {
    "2.2": Schema("1.2.0", "0.3.0", "protobuf-3"),
    "2.3": Schema("1.3.0", "0.4.0", "protobuf-3"),
    "2.4": Schema("1.4.0", "0.5.0", "protobuf-3"),
    "2.5": Schema("1.5.0", "0.6.0", "protobuf-3"),
    "2.14": Schema("2.14.0", "2.14.0", "protobuf-6"),
    "2.15": Schema("2.15.0", "2.15.0", "protobuf-6"),
    "2.16": Schema("2.16.0", "2.16.0", "protobuf-6"),
}


def _pip(*args: str) -> None:
    """pip in a plain environment: the tests' network guard (on PYTHONPATH) is for the code under test,
    and fetching these releases from PyPI is the one download the tests make, once."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-m", "pip", *args, "--no-deps", "--quiet",
                             "--disable-pip-version-check"], env=env, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"pip {' '.join(args)} failed (the first run needs PyPI): {result.stderr.strip()[-800:]}")


def _member(archive: str, suffix: str) -> bytes:
    if archive.endswith(".whl"):
        with zipfile.ZipFile(archive) as z:
            return z.read(next(n for n in z.namelist() if n.endswith(suffix)))
    with tarfile.open(archive) as t:
        return t.extractfile(next(m for m in t.getmembers() if m.name.endswith(suffix))).read()


def _release(directory: str, project: str, version: str) -> str:
    """The downloaded wheel or sdist of ``project==version``."""
    stem = project.replace("-", "_").lower()
    found = [f for f in os.listdir(directory)
             if f.replace("-", "_").lower().startswith(f"{stem}_{version}") and f.endswith((".whl", ".tar.gz"))]
    if not found:
        _pip("download", "--dest", directory, f"{project}=={version}")
        return _release(directory, project, version)
    return os.path.join(directory, found[0])


def _runtime(name: str) -> str:
    path = os.path.join(CACHE, name)
    if not os.path.exists(os.path.join(path, ".complete")):
        _pip("install", "--target", path, "--upgrade", *RUNTIMES[name])
        open(os.path.join(path, ".complete"), "w").close()
    return path


def schema_path(schema: Schema) -> str:
    """A folder holding just ``kfp/kubernetes/kubernetes_executor_config_pb2.py`` and
    ``kfp/pipeline_spec/pipeline_spec_pb2.py`` of ``schema``'s releases."""
    root = os.path.join(CACHE, schema.name)
    if os.path.exists(os.path.join(root, ".complete")):
        return root
    downloads = os.path.join(CACHE, "downloads")
    os.makedirs(downloads, exist_ok=True)
    modules = {("kubernetes", "kubernetes_executor_config_pb2.py"): _release(downloads, "kfp-kubernetes",
                                                                             schema.kubernetes),
               ("pipeline_spec", "pipeline_spec_pb2.py"): _release(downloads, "kfp-pipeline-spec",
                                                                   schema.pipeline_spec)}
    for (package, module), archive in modules.items():
        folder = os.path.join(root, "kfp", package)
        os.makedirs(folder, exist_ok=True)
        for init in (os.path.join(root, "kfp", "__init__.py"), os.path.join(folder, "__init__.py")):
            open(init, "w").close()
        with open(os.path.join(folder, module), "wb") as f:
            f.write(_member(archive, f"kfp/{package}/{module}"))
    open(os.path.join(root, ".complete"), "w").close()
    return root


def parse_errors(schema: Schema, pipeline_spec: dict, platform_spec: dict) -> dict[str, str]:
    """What ``schema`` refuses, strictly parsed: {"pipeline spec" or an executor's name: the error}."""
    env = {"PYTHONPATH": os.pathsep.join([schema_path(schema), _runtime(schema.runtime)]),
           "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python", "PATH": os.environ.get("PATH", "")}
    result = subprocess.run([sys.executable, "-S", CHECK], input=json.dumps([pipeline_spec, platform_spec]),
                            env=env, capture_output=True, text=True, timeout=120)
    if result.returncode:
        raise RuntimeError(f"the {schema.name} check failed: {result.stderr.strip()[-800:]}")
    return json.loads(result.stdout)
