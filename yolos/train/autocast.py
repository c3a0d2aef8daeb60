"""Whether bf16 autocast makes a run's training step faster, decided by timing it (``--recipe
scratch`` / ``finetune`` leave ``--bf16`` to this).

On a GPU with bf16 it is on. On a CPU it depends on the model and the CPU: on a 2-core Xeon with
AMX, autocast trains yolos-ti at 512 px 1.6x faster, yet the micro model at 128 px 1.3x slower
(its matrices are too small for the casts to pay; docs/training.md). So the run times one step
of its own first batch both ways before it starts, and keeps bf16 only when it is clearly faster.
The decision goes into the resolved config (log, state): a resumed run keeps it.
"""
from __future__ import annotations

import dataclasses
import time

import torch

from ..distributed import all_reduce_flag
from .engine import StepParts, accumulate_gradients

# bf16 must beat fp32 by this factor: a near tie keeps the numerically safer fp32.
MARGIN = 0.9


def step_seconds(parts: StepParts, group: list, bf16: bool) -> float:
    """Wall seconds of one forward and backward over ``group`` (``[(pixels, targets)]``), gradients
    discarded; the optimizer is not stepped."""
    parts = dataclasses.replace(parts, bf16=bf16)
    began = time.perf_counter()
    accumulate_gradients(parts, group, "the bf16 timing step", (*parts.seed, -1))
    seconds = time.perf_counter() - began
    parts.optimizer.zero_grad(set_to_none=True)
    if parts.extra is not None:
        for p in parts.extra.parameters():
            p.grad = None
    return seconds


def choose_bf16(parts: StepParts, group: list, repeats: int = 2) -> tuple[bool, str]:
    """``(use bf16 autocast, one line saying why)``. CPU: one warm-up step each way, then
    ``repeats`` alternating timed steps each; the fastest of each decides. Every rank must find
    bf16 faster. The weights, the optimizer and the random streams are left as they were."""
    device = parts.device
    if device.type == "cuda":
        use = torch.cuda.is_bf16_supported()
        return use, f"bf16 autocast {'on' if use else 'off'}: this GPU {'has' if use else 'lacks'} bf16"
    if device.type != "cpu":
        return False, f"bf16 autocast off: not timed on {device.type}"
    was_training = parts.model.training
    parts.model.train()
    times = {False: [], True: []}
    with torch.random.fork_rng(devices=[]):  # dropout draws must not shift the run's stream
        for bf16 in (False, True):
            step_seconds(parts, group, bf16)  # warm-up: first-call allocations and kernel choice
        for _ in range(repeats):
            for bf16 in (False, True):
                times[bf16].append(step_seconds(parts, group, bf16))
    parts.model.train(was_training)
    fp32, bf16 = min(times[False]), min(times[True])
    use = not all_reduce_flag(not bf16 < MARGIN * fp32, device)
    return use, (f"bf16 autocast {'on' if use else 'off'}: one training step of the first batch took "
                 f"{bf16:.3f} s in bf16 against {fp32:.3f} s in fp32 here")
