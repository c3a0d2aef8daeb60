"""Distributed data parallel through ``torchrun``: no launcher of ours, no print patching.

``torchrun --nproc_per_node=N -m yolos.cli train ...`` (or ``yolos`` via its entry point) sets
RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; :func:`init_distributed` reads them.
Side effects (logs, checkpoints, plots, progress bars) happen only where :attr:`DistInfo.is_main`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str | None, local_rank: int = 0) -> torch.device:
    """``None``/"auto" -> this rank's GPU when CUDA is available, else CPU. A device this torch
    build or machine lacks raises ValueError naming ``--device``."""
    from .validate import device as check_device

    if device in (None, "", "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = check_device(device, "--device")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    return dev


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group described by the environment (gloo on CPU, nccl on GPU).

    Without WORLD_SIZE > 1 this is a no-op returning a single-process :class:`DistInfo`.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world_size, local_rank, dev)


def unwrap(model):
    """The model inside a DistributedDataParallel wrapper (the model itself otherwise)."""
    return getattr(model, "module", model)


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank (itself without a process group)."""
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_reduce_mean(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average scalars over ranks (logged means, loss divisors; one collective for the whole dict)."""
    if not is_dist() or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))


def average_gradients(params) -> None:
    """Average the gradients of ``params`` over ranks in place, as DDP does for the parameters
    it wraps (for training-only parameters outside it); nothing in a single process."""
    if not is_dist():
        return
    params = list(params)
    for p in params:  # a rank whose batch left one unused sends zeros: every rank sends the same shapes
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    if grads:
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


def all_reduce_flag(flag: bool, device: torch.device) -> bool:
    """True on every rank if it is True on any rank (used to stop all ranks on a bad loss)."""
    if not is_dist():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def cleanup() -> None:
    if is_dist():
        dist.destroy_process_group()
