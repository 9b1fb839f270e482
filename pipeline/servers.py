"""The pipeline servers a compiled YAML is written for, and what each of them parses and applies.

kfp-kubernetes 2.17 writes the newest form of every pod setting: ``secretAsEnv[].optional`` (even
false) and the Secret's name as ``secretNameParameter`` (even a constant). Drivers up to KFP 2.4.1 fail a
step on a field they do not know; KFP 2.5 and OpenShift AI 2.19–2.25 drop it silently (the Secret then
becomes required). So for an older server the compiled platform spec is rewritten to what that server
parses *and applies* (``adapt``). Pod settings are compile options on every server
(``yolo_kfp.pipeline.compile_options``), never run parameters.

The pipeline's graph depends on the backend too: a ``dsl.Collected`` fan-in runs from KFP 2.14 only, so
for an older one the download is one task and the search is not compiled in (``Features.fan_in``).

Backends by OpenShift AI release: 2.15–2.18 → KFP 2.2.0; 2.19–2.21 → 2.4.0; 2.22–2.25 → 2.5.0;
3.0–3.3 → 2.14.3 with the ``optional`` change of 2.15; 3.4 → 2.16.0.
"""

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Features:
    """What a KFP backend applies of the platform spec, by the backend version that first did."""

    kfp: str  # the oldest backend with exactly these features
    empty_dir: bool  # emptyDirMounts: a memory-backed /dev/shm (2.3)
    secret_name_parameter: bool  # secretAsEnv[].secretNameParameter, which kfp-kubernetes writes (2.5)
    optional_secret: bool  # secretAsEnv.optional: runs without a data connection Secret (2.15)
    # securityContext.runAsNonRoot per task (2.16): with what the 2.16 compiler adds to every step (no
    # privilege escalation, capabilities dropped, RuntimeDefault seccomp) the pods pass Pod Security
    # "restricted". Older servers have no such field; OpenShift's restricted-v2 SCC sets the same at admission.
    security_context: bool = False
    # dsl.Collected, the fan-in of a ParallelFor's outputs: drivers before KFP 2.14.0 do not resolve it
    # (kubeflow/pipelines#11725, CHANGELOG 2.14.0 "enable dsl.Collected for parameters & artifacts"). The
    # download's shards and the search's trials are collected; the search's dsl.OneOf over parameters is
    # resolved from KFP 2.4.0 (#11196), so it adds no condition of its own.
    fan_in: bool = False


KFP_FEATURES = (
    Features("2.2", empty_dir=False, secret_name_parameter=False, optional_secret=False),
    Features("2.3", empty_dir=True, secret_name_parameter=False, optional_secret=False),
    Features("2.5", empty_dir=True, secret_name_parameter=True, optional_secret=False),
    Features("2.14", empty_dir=True, secret_name_parameter=True, optional_secret=False, fan_in=True),
    Features("2.15", empty_dir=True, secret_name_parameter=True, optional_secret=True, fan_in=True),
    Features("2.16", empty_dir=True, secret_name_parameter=True, optional_secret=True, security_context=True,
             fan_in=True),
)
# OpenShift AI release -> the KFP backend whose features its Data Science Pipelines have.
RHOAI_BACKENDS = (("2.15", "2.2"), ("2.19", "2.4"), ("2.22", "2.5"), ("3.0", "2.15"), ("3.4", "2.16"))
FLOOR = {"kfp": "2.2", "rhoai": "2.15"}
WHY_FLOOR = ("older servers cannot give the train pod a larger /dev/shm (generic ephemeral volumes came in KFP 2.2), "
             "and PyTorch's DataLoader workers crash in the default 64 MB")
# Named in --help and in docs/cluster.md; any version from the floor up is taken.
TARGETS = ("kfp-2.2", "kfp-2.3", "kfp-2.4", "kfp-2.5", "kfp-2.14", "kfp-2.15", "kfp-2.16",
           "rhoai-2.16", "rhoai-2.19", "rhoai-2.22", "rhoai-3.0", "rhoai-3.4")
DEFAULT = "kfp-2.15"  # the oldest server of OpenShift AI 3.x: the committed YAML runs on all of them


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _newest_at_or_below(version: str, table):
    return [entry for entry in table if _version(entry[0]) <= _version(version)][-1]


@dataclass(frozen=True)
class ServerTarget:
    name: str  # as asked: kfp-2.4, rhoai-2.24, ...
    kfp: str  # the KFP backend it runs (major.minor)
    features: Features

    def describe(self) -> str:
        return f"server={self.name} (written for KFP backend {self.features.kfp}+)"


def server_target(name: str = DEFAULT) -> ServerTarget:
    """``kfp-X.Y`` (a KFP backend) or ``rhoai-X.Y`` (an OpenShift AI release), from the supported floor up."""
    match = re.fullmatch(r"(kfp|rhoai)-(\d+\.\d+)(?:\.\d+)?", name.strip().lower())
    if not match:
        raise ValueError(f"--server {name!r} is not a server: use kfp-X.Y (a KFP backend) or rhoai-X.Y "
                         f"(an OpenShift AI release), e.g. {', '.join(TARGETS)}")
    family, version = match.groups()
    if _version(version) < _version(FLOOR[family]):
        raise ValueError(f"--server {name}: yolo-kfp needs KFP 2.2 (OpenShift AI 2.15) or newer: {WHY_FLOOR}")
    kfp = _newest_at_or_below(version, RHOAI_BACKENDS)[1] if family == "rhoai" else version
    features = [f for f in KFP_FEATURES if _version(f.kfp) <= _version(kfp)][-1]
    return ServerTarget(f"{family}-{version}", kfp, features)


def adapt(pipeline_spec: dict, platform_spec: dict, target: ServerTarget) -> None:
    """Rewrites the compiled specs in place to what ``target`` parses and applies."""
    executors = platform_spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for config in executors.values():
        for secret in config.get("secretAsEnv", []):
            if not target.features.optional_secret:
                secret.pop("optional", None)
            if not target.features.secret_name_parameter:
                secret["secretName"] = secret.pop("secretNameParameter")["runtimeValue"]["constant"]


def search_refusal(target: ServerTarget) -> str:
    """Why a run with a ``search_space`` is refused on ``target`` (the CLI and the preflight step say the same)."""
    return (f"search_space is set, but the pipeline compiled for {target.name} has no search: servers before KFP "
            "2.14 cannot gather the results of tasks run side by side: leave search_space empty, or compile for "
            "kfp-2.14, rhoai-3.0 or newer")


def check_run_parameters(params: dict, target: ServerTarget) -> None:
    """Refuses a search where the pipeline compiled for ``target`` has none."""
    if params.get("search_space") and not target.features.fan_in:
        raise ValueError(search_refusal(target))


def follows_latest_version(target: ServerTarget) -> bool:
    """Whether a recurring run without a version runs the pipeline's latest one (kubeflow/pipelines#11560,
    KFP 2.5)."""
    return _version(target.features.kfp) >= _version("2.5")


TRAINER_SINCE = "3.2"  # OpenShift AI's first release with Kubeflow Trainer v2 (TrainJob)


def training_engine(target: ServerTarget) -> str:
    """The cluster's own engine for a training across nodes (``yolo_kfp.model.job_launcher.ENGINES``): Kubeflow
    Trainer's TrainJob on OpenShift AI 3.2 and later, else the Training Operator's PyTorchJob (OpenShift AI 2.16
    to 3.1; removed in 3.6). A plain Kubeflow gets the PyTorchJob: its Trainer releases from 2.2 on renamed the
    TrainJob field that changes the nodes' pods (``runtimePatches`` for ``podTemplateOverrides``)."""
    family, version = target.name.split("-", 1)
    return "trainer" if family == "rhoai" and _version(version) >= _version(TRAINER_SINCE) else "pytorchjob"
