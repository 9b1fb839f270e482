"""Pods' sizes as Kubernetes quantities: reading them ("8", "500m", "24Gi"), writing memory back in binary units,
the train pod's CPU, memory and /dev/shm for its GPU count, and the bounds of each per-GPU size.

The compile options give the train pod's size per GPU (``yolo_kfp.pipeline.compile_options``); this is the
arithmetic under them, kept apart from KFP. What the pod then reads of its own limits at run time is
``resources``.
"""

from kubernetes.utils.quantity import parse_quantity

BINARY_UNITS = {"Ti": 2 ** 40, "Gi": 2 ** 30, "Mi": 2 ** 20, "Ki": 2 ** 10}
GPUS_PER_NODE = 16  # the largest GPU nodes have 8-16; a pod runs on one node
# The train pod's size per GPU, by option: floor, ceiling, and why the floor. Below it the step cannot do its
# work; above the ceiling no node could hold the pod, which would wait Pending forever.
TRAIN_POD_LIMITS = {
    # yolo_kfp.infra.resources keeps one core per GPU for the training loop before any DataLoader worker;
    # the largest GPU nodes have 24-48 cores per GPU.
    "cpu_per_gpu": (1, 128, "one core per GPU runs the training loop"),
    # Importing PyTorch and Ultralytics and building YOLOv5n takes 0.7 GiB resident on CPU (measured), CUDA's
    # libraries about as much again; the largest nodes have 2 TiB for 8 GPUs.
    "memory_per_gpu": (2 * 2 ** 30, 2 ** 40, "PyTorch with CUDA and Ultralytics take about 1.5 GiB before the "
                                             "first batch"),
    # Docker's default /dev/shm, which this volume replaces: less gains nothing and leaves NCCL (which keeps
    # its DDP buffers there) short. It counts against the pod's memory: the same ceiling.
    "shm_size": (64 * 2 ** 20, 2 ** 40, "64Mi is Docker's default /dev/shm, which this volume replaces"),
}


def quantity(text: str) -> float:
    """A Kubernetes quantity ("8", "500m", "24Gi") as a number, by the Kubernetes client's own parser."""
    try:
        return float(parse_quantity(text))
    except ValueError:
        raise ValueError(f"{text!r} is not a Kubernetes quantity like 8, 500m or 24Gi") from None


def memory_quantity(size: float) -> str:
    """Bytes in the largest binary unit that divides them."""
    for suffix, unit in BINARY_UNITS.items():
        if size % unit == 0:
            return f"{int(size // unit)}{suffix}"
    return str(int(size))


def per_gpu_text(name: str, size: float) -> str:
    """A size of ``TRAIN_POD_LIMITS[name]`` as the option is written: cores as a number, memory in binary units."""
    return f"{size:g}" if name == "cpu_per_gpu" else memory_quantity(size)


def train_pod_range(name: str) -> str:
    """``TRAIN_POD_LIMITS[name]`` in words, as the option is written."""
    floor, ceiling, _ = TRAIN_POD_LIMITS[name]
    return f"{per_gpu_text(name, floor)} to {per_gpu_text(name, ceiling)}"


def train_cpu(cpu_per_gpu: str, gpus: int) -> str:
    """The train pod's CPU request and limit."""
    return f"{round(quantity(cpu_per_gpu) * gpus, 3):g}"


def shm_limit(shm_size: str, gpus: int) -> str:
    """The size of the train pod's /dev/shm."""
    return memory_quantity(quantity(shm_size) * gpus)


def train_memory(memory_per_gpu: str, shm_size: str, gpus: int) -> str:
    """The train pod's memory request and limit: a memory-backed /dev/shm counts against the pod's memory."""
    return memory_quantity((quantity(memory_per_gpu) + quantity(shm_size)) * gpus)
