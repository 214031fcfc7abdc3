"""Data-parallel training with torch.distributed, launched by ``torchrun``.

Every process builds the same model from the same seed, takes its own slice of each micro-batch, and
averages gradients across processes before each optimiser step, so all replicas stay identical and
``world_size`` processes with batch B follow the same trajectory as one process with batch B (up to
float rounding). Process 0 alone writes checkpoints, logs and sample grids.

    torchrun --nproc_per_node 2 $(which genlab) train vae-mnist --out runs/vae      # CPU (gloo) or GPUs (nccl)

Gradients are averaged by hand (one flattened all-reduce per optimiser) rather than through
``DistributedDataParallel``, because a model may have several optimisers (a GAN's phases) whose
parameters are updated at different times.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """This process's place; starts the process group when launched by torchrun (WORLD_SIZE > 1)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def barrier(w: World) -> None:
    if w.size > 1:
        dist.barrier()


@torch.no_grad()
def average_gradients(params: list[nn.Parameter], w: World, *, flag: bool = False) -> bool:
    """Replace each gradient by its mean over processes (one all-reduce of a flat buffer).

    ``flag`` rides along in the same all-reduce; the return value says whether any process raised
    it, so every process stops together (e.g. on a NaN loss) instead of waiting on the others.
    """
    if w.size == 1:
        return flag
    grads = [p.grad for p in params if p.grad is not None]
    device = params[0].device
    flat = torch.cat([*(g.reshape(-1).float() for g in grads), torch.tensor([float(flag)], device=device)])
    dist.all_reduce(flat)
    if flat[-1] > 0:
        return True
    flat /= w.size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
    return False


def agree(value: bool, w: World) -> bool:
    """Process 0's ``value``, on every process."""
    if w.size == 1:
        return value
    flag = torch.tensor([float(value)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.broadcast(flag, src=0)
    return bool(flag.item())


@torch.no_grad()
def broadcast_parameters(module: nn.Module, w: World) -> None:
    """Make every replica start from process 0's weights and buffers."""
    if w.size == 1:
        return
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src=0)
