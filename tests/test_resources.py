"""Sizing the train step by the pod's limits: fake cgroup files, fake /dev/shm sizes."""

import pytest

from yolo_kfp.infra import resources


def write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return str(root)


@pytest.mark.parametrize("files, cpus", [
    ({"cpu.max": "400000 100000"}, 4.0),
    ({"cpu.max": "150000 100000"}, 1.5),
    ({"cpu.max": "max 100000"}, None),
    ({"cpu/cpu.cfs_quota_us": "800000", "cpu/cpu.cfs_period_us": "100000"}, 8.0),
    ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
    ({}, None),
])
def test_cpu_limit_from_cgroup_v2_and_v1(tmp_path, files, cpus):
    assert resources.cpu_limit(write(tmp_path, files)) == cpus


@pytest.mark.parametrize("files, limit", [
    ({"memory.max": str(24 << 30)}, 24 << 30),
    ({"memory.max": "max"}, None),
    ({"memory/memory.limit_in_bytes": str(16 << 30)}, 16 << 30),
    ({"memory/memory.limit_in_bytes": "9223372036854771712"}, None),
    ({}, None),
])
def test_memory_limit_from_cgroup_v2_and_v1(tmp_path, files, limit):
    assert resources.memory_limit(write(tmp_path, files)) == limit


def test_shm_size_is_read_from_the_mount(tmp_path):
    assert resources.shm_bytes(str(tmp_path)) > 0
    assert resources.shm_bytes(str(tmp_path / "missing")) is None


def test_workers_follow_the_cpu_quota_not_the_node():
    assert resources.plan_workers(8, gpus=1, cpus=4.0, shm=None, batch=16, imgsz=640) == 3
    assert resources.plan_workers(8, gpus=2, cpus=4.0, shm=None, batch=16, imgsz=640) == 1
    assert resources.plan_workers(8, gpus=1, cpus=None, shm=None, batch=16, imgsz=640) == 8
    assert resources.plan_workers(2, gpus=1, cpus=32.0, shm=None, batch=16, imgsz=640) == 2


def test_workers_fit_dev_shm_instead_of_dying_with_a_bus_error(caplog):
    per_worker = resources.shm_per_worker(256, 640)
    assert per_worker > 64 << 20  # the notebook's batch 256 at 640 px: a 64 MB /dev/shm holds no worker
    assert resources.plan_workers(8, gpus=1, cpus=16.0, shm=64 << 20, batch=256, imgsz=640) == 0
    assert "/dev/shm holds 64 MiB" in caplog.text
    assert resources.plan_workers(8, gpus=1, cpus=16.0, shm=3 * per_worker, batch=256, imgsz=640) == 3
    assert resources.plan_workers(8, gpus=1, cpus=16.0, shm=100 * per_worker, batch=256, imgsz=640) == 8


def test_threads_follow_the_cpu_quota_by_ultralytics_rule():
    assert resources.plan_threads(None) is None
    assert [resources.plan_threads(c) for c in (0.5, 2.0, 4.5, 64.0)] == [1, 1, 3, 8]


def test_ultralytics_thread_pools_take_the_planned_count():
    from yolo_kfp.model.ultralytics_env import THREAD_COUNT_USERS, configure_offline, limit_threads

    configure_offline()
    import importlib

    modules = [importlib.import_module(name) for name in THREAD_COUNT_USERS]
    before = [m.NUM_THREADS for m in modules]
    try:
        limit_threads(before[0] + 5)
        assert [m.NUM_THREADS for m in modules] == [before[0] + 5] * len(modules)
    finally:
        for module, value in zip(modules, before, strict=True):
            module.NUM_THREADS = value


def test_ram_cache_only_where_the_images_fit_the_memory_limit():
    images_bytes = 1000 * 640 * 640 * 3
    assert resources.plan_cache("ram", 1000, 640, memory=4 * images_bytes) == "ram"
    assert resources.plan_cache("ram", 1000, 640, memory=images_bytes) == "disk"
    assert resources.plan_cache("ram", 1000, 640, memory=None) == "ram"
    assert resources.plan_cache("", 1000, 640, memory=1) == ""
