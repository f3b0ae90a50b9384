"""Data-parallel training under torchrun: process group, sharding, reductions, rank-0 duties.

`torchrun --nproc_per_node N -m train ...` sets RANK/WORLD_SIZE/LOCAL_RANK; without them this is
a world of one and every function here is a cheap no-op, so the same code path serves both.
--batch-size stays the GLOBAL batch: each of the N processes takes batch/N samples a step, and
the DistributedSampler deals one shuffled permutation out rank by rank, so a step of N processes
sees the same images as a step of one process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """Where this process stands: rank, world size, and the device it trains on."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 writes files, logs progress and pushes."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.size > 1



def backend_for(device: torch.device) -> str:
    """NCCL reduces only CUDA tensors and gloo only CPU ones: on GPUs the group gets both, one per
    device type, and each collective is routed by its tensor's device. (NCCL refuses to start
    without a GPU, so a CPU-only group is plain gloo.)"""
    return "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"


def init(device: torch.device) -> World:
    """Join the torchrun process group when launched by torchrun (a world of one otherwise)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":  # before the group exists, so NCCL binds each rank to its own GPU
        torch.cuda.set_device(world.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend_for(device), timeout=timedelta(minutes=30))
    return world


def device_for(world: World, device: torch.device) -> torch.device:
    """One GPU per local rank on CUDA; the CPU otherwise."""
    if device.type == "cuda" and world.enabled:
        torch.cuda.set_device(world.local_rank)
        return torch.device("cuda", world.local_rank)
    return device


def sum_all(values: list[float], world: World, device: torch.device) -> list[float]:
    """Element-wise sum of `values` over all ranks, reduced on the training device (NCCL needs CUDA tensors)."""
    if not world.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def gather_predictions(index: np.ndarray, y: np.ndarray, p: np.ndarray, n: int,
                       world: World) -> tuple[np.ndarray, np.ndarray]:
    """Every rank's (labels, probabilities) of a sharded split, back in dataset order, padding removed."""
    if not world.enabled:
        return y, p
    parts: list = [None] * world.size
    # Objects travel as byte tensors on the current device (the rank's GPU under NCCL, set in `init`).
    dist.all_gather_object(parts, (index, y, p))
    idx = np.concatenate([a for a, _, _ in parts])
    ys, ps = np.concatenate([b for _, b, _ in parts]), np.concatenate([c for _, _, c in parts])
    first = np.unique(idx, return_index=True)[1]  # the sampler pads by repeating samples; keep one of each
    order = idx[first].argsort()
    assert len(first) == n, f"gathered {len(first)} of {n} samples"
    return ys[first][order], ps[first][order]


def barrier(world: World) -> None:
    """Wait for every rank (after rank 0 wrote something the others will read)."""
    if world.enabled:
        dist.barrier()


def shutdown(world: World) -> None:
    """Leave the process group."""
    if world.enabled and dist.is_initialized():
        dist.destroy_process_group()
