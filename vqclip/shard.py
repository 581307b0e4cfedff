"""Ranks of a batch under torchrun: which share of the jobs this process runs, and on which GPU.

Jobs are split round-robin by torch.distributed rank (see vqclip.batch); the ranks move no tensors, they only
wait for each other at the end, so one process group over gloo serves CPUs and GPUs alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch


@dataclass
class Shard:
    """This process's share of a batch: rank `rank` of `world` (torchrun), 0 of 1 otherwise."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def all_true(self, flag: bool) -> bool:
        """Whether flag holds on every rank (a collective: every rank must call it); flag itself off torchrun."""
        if self.world == 1:
            return flag
        import torch.distributed as dist

        t = torch.tensor([int(flag)])
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())


def init_shard() -> Shard:
    """Join the torchrun group when WORLD_SIZE > 1 (env:// rendezvous); a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Shard()
    import torch.distributed as dist

    if not dist.is_initialized():
        # the ranks move no tensors, they only wait for each other: gloo serves on GPUs too, and unlike
        # NCCL's watchdog it lets a rank that finished early wait hours for the slowest one
        dist.init_process_group("gloo", timeout=timedelta(days=7))
    return Shard(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def close_shard(shard: Shard) -> None:
    if shard.world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def rank_device(device: torch.device, shard: Shard) -> torch.device:
    """Under torchrun each rank takes the GPU of its local rank."""
    if device.type == "cuda" and device.index is None and shard.world > 1:
        return torch.device("cuda", shard.local_rank % torch.cuda.device_count())
    return device
