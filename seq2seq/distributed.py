"""Data-parallel training under `torchrun`: the process group, and the few collectives the trainer needs.

Outside torchrun (no RANK / WORLD_SIZE in the environment, or a world of one) nothing here starts a
process group and every helper is a no-op, so a single process trains exactly as it always has.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Optional

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, validates and writes checkpoints and metrics."""
        return self.rank == 0


SINGLE = World()


def world_from_env() -> World:
    """The world torchrun describes in the environment; a single process when it describes none."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return SINGLE
    size = int(os.environ["WORLD_SIZE"])
    if size <= 1:
        return SINGLE
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", size))
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", 0)), local_size)


def start(world: World, device: torch.device) -> torch.device:
    """Join the process group (NCCL on CUDA, gloo on CPU); return this rank's device."""
    if not world.distributed:
        return device
    if device.type == "cuda":
        torch.cuda.set_device(world.local_rank)
        device = torch.device("cuda", world.local_rank)
    if not dist.is_initialized():
        # A long timeout: the other ranks wait while rank 0 trains the tokenizers or validates.
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://",
                                timeout=timedelta(minutes=60), device_id=device if device.type == "cuda" else None)
    return device


def stop(world: World, finished: bool = False) -> None:
    """Tear down the process group. After a finished run all ranks meet first: a rank that tore down and
    exited while another was still in its teardown made that one's gloo threads abort the process."""
    if world.distributed and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def broadcast_from_main(world: World, value: Any, device: torch.device) -> Any:
    """Rank 0's `value` (any picklable object) on every rank."""
    if not world.distributed:
        return value
    box = [value if world.is_main else None]
    dist.broadcast_object_list(box, src=0, device=device if device.type == "cuda" else None)
    return box[0]


def gather_objects(world: World, value: Any) -> list:
    """Every rank's `value`, in rank order, on every rank."""
    if not world.distributed:
        return [value]
    out: list = [None] * world.size
    dist.all_gather_object(out, value)
    return out


def sum_over_ranks(world: World, values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum of `values` over all ranks (float64, so token counts stay exact)."""
    if not world.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def default_threads(world: World, configured: Optional[int]) -> int:
    """CPU threads per process: as configured, else the machine's cores shared among this node's ranks."""
    return configured or max(1, (os.cpu_count() or 1) // world.local_size)
