"""Training across nodes: Ultralytics' trainer in the process group that ``torchrun`` formed.

Ultralytics trains on one node only: its launcher starts ``torch.distributed.run --nproc_per_node <local
devices>`` and its trainer takes the local device count as the world size (ultralytics #7282, #12969).
Started by ``torchrun --nnodes N --nproc-per-node G`` instead, each process here joins the group torchrun
formed (world size, global rank and local rank from torchrun's environment) and trains as one of N×G DDP
workers: Ultralytics' distributed sampler splits the training images over the whole world, DDP reduces
the gradients across nodes, and global rank 0 alone writes checkpoints and results (Ultralytics' own
rule, on the global rank). ``batch`` keeps its meaning, the global batch: each process loads batch / (N×G).
NCCL on GPUs, gloo on CPU.
"""

import contextlib
import datetime
import json
import os
from dataclasses import dataclass

GROUP_TIMEOUT = datetime.timedelta(hours=3)  # Ultralytics' own: a validation on one rank may take that long


@dataclass(frozen=True)
class World:
    """Where this process stands in the group torchrun started."""

    size: int  # processes on every node
    rank: int  # this one's, among all of them
    local_rank: int  # this one's, on its node

    @property
    def is_first(self) -> bool:
        return self.rank == 0


def torchrun_world() -> World | None:
    """The group torchrun started this process in; None outside torchrun, or in a world of one process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size < 2 or "TORCHELASTIC_RUN_ID" not in os.environ:
        return None
    return World(size=size, rank=int(os.environ["RANK"]), local_rank=int(os.environ["LOCAL_RANK"]))


def join(world: World) -> str:
    """Joins the group (once per process; torchrun's MASTER_ADDR and MASTER_PORT say where) and returns
    the device this process trains on: its local GPU, else the CPU."""
    import torch
    import torch.distributed as dist

    device = f"cuda:{world.local_rank}" if torch.cuda.is_available() else "cpu"
    if device != "cpu":
        torch.cuda.set_device(world.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device != "cpu" else "gloo", timeout=GROUP_TIMEOUT, rank=world.rank,
                                world_size=world.size)
    return device


def from_first(world: World, value):
    """``value`` (JSON) as global rank 0 has it, on every rank: a decision all must take alike."""
    return json.loads(_from_first_bytes(world, json.dumps(value).encode() if world.is_first else b""))


def shared_file(world: World, path: str, folder: str) -> str:
    """Rank 0's file ``path`` on every rank: rank 0 sends its bytes, the others write them into ``folder``
    (their own, not the outputs), check it holds only a checkpoint's data, and get that copy's path."""
    from yolo_kfp.model import safe_checkpoint

    if world.is_first:
        with open(path, "rb") as f:
            _from_first_bytes(world, f.read())
        return path
    copy = os.path.join(folder, os.path.basename(path))
    with open(copy, "wb") as f:
        f.write(_from_first_bytes(world, b""))
    safe_checkpoint.load(copy, "rank 0's checkpoint")
    return copy


def _from_first_bytes(world: World, data: bytes) -> bytes:
    """Rank 0's ``data`` on every rank, as tensors (the group's object collectives would unpickle)."""
    import torch
    import torch.distributed as dist

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    size = torch.tensor([len(data)], dtype=torch.int64, device=device)
    dist.broadcast(size, src=0)
    buffer = (torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device) if world.is_first and data
              else torch.empty(int(size.item()), dtype=torch.uint8, device=device))
    dist.broadcast(buffer, src=0)
    return buffer.cpu().numpy().tobytes()


def across_nodes_trainer(world: World):
    """Ultralytics' detection trainer as one of ``world.size`` DDP workers that torchrun started."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    class AcrossNodesTrainer(DetectionTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.world_size = world.size  # every node's processes, not this node's devices
            self.ddp = False  # torchrun started this process: it trains, and starts none

        def _setup_ddp(self) -> None:
            import torch
            from ultralytics.utils.torch_utils import get_torch_device_backend

            self.device = torch.device(join(world))
            self.accelerator = get_torch_device_backend(self.device) if self.device.type != "cpu" else None

        def _setup_train(self) -> None:
            with _ddp_on_cpu() if self.device.type == "cpu" else contextlib.nullcontext():
                super()._setup_train()

        def final_eval(self) -> None:
            """Rank 0 strips the optimizer from its checkpoints, as Ultralytics does; the validation of
            ``best.pt`` that Ultralytics adds (on every rank, from a file only rank 0's node has) is left to
            the pipeline's evaluate step."""
            from ultralytics.utils.torch_utils import strip_optimizer

            if world.is_first:
                train_results = strip_optimizer(self.last).get("train_results") if self.last.exists() else None
                if self.best.exists():
                    strip_optimizer(self.best, updates={"train_results": train_results})

    return AcrossNodesTrainer


@contextlib.contextmanager
def _ddp_on_cpu():
    """Ultralytics wraps the model with ``device_ids=[device.index]``, ``[None]`` on the CPU, which PyTorch's
    DDP refuses; a CPU module takes no device ids."""
    from torch.nn import parallel

    original = parallel.DistributedDataParallel

    class CpuDistributedDataParallel(original):
        def __init__(self, module, device_ids=None, **kwargs):
            super().__init__(module, device_ids=None, **kwargs)

    parallel.DistributedDataParallel = CpuDistributedDataParallel
    try:
        yield
    finally:
        parallel.DistributedDataParallel = original
