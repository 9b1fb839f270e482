"""The train pod's own limits, not the node's: CPUs from the cgroup quota, memory from the cgroup limit,
shared memory from /dev/shm. Ultralytics sizes DataLoader workers by the node's core count; a pod
with a 4-CPU limit on a 64-core node would start 8 workers per GPU and, with Docker's 64 MB /dev/shm,
die with a bus error. Here workers and threads are capped by the CPU quota, workers also by what
/dev/shm can hold, and ``cache="ram"`` falls back to disk when the images would not fit the memory limit.
"""

import logging
import math
import os

log = logging.getLogger(__name__)

CGROUP = "/sys/fs/cgroup"
PREFETCH = 2  # batches a DataLoader worker keeps ready (PyTorch's prefetch_factor)
SHM_HEADROOM = 2.0  # mosaic and collation copies: twice the raw batch, measured loosely
RAM_CACHE_SHARE = 0.5  # at most this share of the memory limit for Ultralytics' RAM cache


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def cpu_limit(root: str = CGROUP) -> float | None:
    """CPUs the pod may use (cgroup v2 ``cpu.max`` or v1 CFS quota); None without a limit."""
    v2 = _read(os.path.join(root, "cpu.max"))
    if v2:
        quota, _, period = v2.partition(" ")
        return None if quota == "max" else int(quota) / int(period or 100000)
    quota, period = _read(os.path.join(root, "cpu", "cpu.cfs_quota_us")), _read(os.path.join(root, "cpu",
                                                                                              "cpu.cfs_period_us"))
    if quota and period and int(quota) > 0:
        return int(quota) / int(period)
    return None


def memory_limit(root: str = CGROUP) -> int | None:
    """Bytes the pod may use (cgroup v2 ``memory.max`` or v1 limit); None without a limit."""
    v2 = _read(os.path.join(root, "memory.max"))
    if v2:
        return None if v2 == "max" else int(v2)
    v1 = _read(os.path.join(root, "memory", "memory.limit_in_bytes"))
    if v1 and int(v1) < 1 << 60:  # v1 reports "no limit" as a huge number
        return int(v1)
    return None


def shm_bytes(path: str = "/dev/shm") -> int | None:
    try:
        stats = os.statvfs(path)
    except OSError:
        return None
    return stats.f_frsize * stats.f_blocks


def shm_per_worker(batch: int, imgsz: int) -> int:
    """Shared memory one DataLoader worker needs: its prefetched batches of uint8 images, with headroom."""
    return int(PREFETCH * max(batch, 1) * 3 * imgsz * imgsz * SHM_HEADROOM)


def plan_workers(requested: int, gpus: int, cpus: float | None, shm: int | None, batch: int, imgsz: int) -> int:
    """DataLoader workers per GPU that the pod's CPUs and /dev/shm can carry (never more than asked)."""
    workers = requested
    if cpus is not None:
        by_cpu = max(0, math.floor(cpus / max(gpus, 1)) - 1)  # one core per GPU for the training loop
        if by_cpu < workers:
            log.info("workers %d -> %d: the pod has %.1f CPUs for %d GPU(s)", workers, by_cpu, cpus, max(gpus, 1))
            workers = by_cpu
    if shm is not None and workers:
        by_shm = shm // (shm_per_worker(batch, imgsz) * max(gpus, 1))
        if by_shm < workers:
            log.warning("workers %d -> %d: /dev/shm holds %d MiB, each worker needs about %d MiB at batch %d, "
                        "imgsz %d (raise the shm size limit for more)", workers, by_shm, shm >> 20,
                        shm_per_worker(batch, imgsz) >> 20, batch, imgsz)
            workers = int(by_shm)
    return workers


def plan_threads(cpus: float | None) -> int | None:
    """Threads for the training process: Ultralytics' own rule, min(8, CPUs - 1), applied to the pod's
    CPU quota instead of the node's core count; None without a quota (Ultralytics' choice stands)."""
    if cpus is None:
        return None
    return min(8, max(1, math.floor(cpus) - 1))


def plan_cache(requested: str, images: int, imgsz: int, memory: int | None) -> str:
    """Ultralytics' image cache: ``ram`` only where the decoded images fit the pod's memory limit."""
    if requested != "ram" or memory is None:
        return requested
    needed = images * imgsz * imgsz * 3
    if needed > memory * RAM_CACHE_SHARE:
        log.warning("cache ram -> disk: %d images at %d px need %d MiB, over half the pod's %d MiB limit",
                    images, imgsz, needed >> 20, memory >> 20)
        return "disk"
    return requested
