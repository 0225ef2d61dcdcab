"""Distributed data parallel under ``torchrun``: process group set-up, rank facts, small collectives.

A plain ``cgan-train`` is a world of one: every helper here is then a no-op, so the loop reads the
same with or without torchrun. Under torchrun (``WORLD_SIZE`` > 1) the group uses NCCL on CUDA and
gloo on CPU; only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from cgan.runtime.errors import CganError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """Rank facts from the environment torchrun sets (a world of one without it)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise CganError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (are you launching with torchrun?)") from None
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def init(info: DistInfo, device: torch.device) -> None:
    """Join the process group (NCCL on CUDA, gloo on CPU); nothing to do for a world of one."""
    if not info.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def gather_objects(info: DistInfo, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` for a world of one)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(info: DistInfo, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_across(info: DistInfo, values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum of a float64 CPU tensor over the ranks (a copy for a world of one)."""
    values = values.clone()
    if info.enabled:
        if dist.get_backend() == "nccl":
            moved = values.cuda()
            dist.all_reduce(moved)
            values = moved.cpu()
        else:
            dist.all_reduce(values)
    return values
