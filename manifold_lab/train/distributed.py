"""Distributed training through ``torchrun``: process group, device, reductions.

``torchrun --nproc_per_node=N [--nnodes ...] -m manifold_lab train spec.yaml``
sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; ``init()`` then joins the
process group with ``nccl`` on GPUs and ``gloo`` on CPU. Without those
variables training is a single process. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but CUDA is not available here; use auto or cpu")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ValueError(f"train.device={name!r} is not one of auto, cpu, cuda, cuda:N")
    return torch.device(name)


def init(device: str = "auto") -> Dist:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend)
    return Dist(rank, world_size, local_rank, dev)


def all_reduce_sum(values: list[float], d: Dist) -> list[float]:
    """Sum a list of numbers over ranks (float64 on the training device)."""
    t = torch.tensor(values, dtype=torch.float64, device=d.device if d.device.type == "cuda" else "cpu")
    if d.enabled:
        dist.all_reduce(t)
    return t.tolist()


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
