"""One training epoch (hustvl/YOLOS ``engine.py::train_one_epoch``), resumable mid-epoch."""
from __future__ import annotations

import contextlib
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .. import distributed as D
from ..distributed import all_reduce_flag, all_reduce_mean
from ..errors import YolosError
from ..inference.batching import chunks

LOG_KEYS = ("loss", "loss_ce", "loss_bbox", "loss_giou", "loss_groups", "loss_dn", "loss_dense",
            "class_error", "cardinality_error")


class NonFiniteLossError(YolosError):
    """The loss became NaN/inf; the message names the epoch and step."""


def worker_error_message(err: BaseException) -> str | None:
    """The original one-line message of an error raised inside a DataLoader worker (PyTorch
    re-raises it in the main process with the worker's whole traceback as its text)."""
    text = str(err)
    if "Original Traceback" not in text:
        return None
    last = [ln for ln in text.strip().splitlines() if ln.strip()][-1].strip()
    kind, sep, message = last.partition(": ")
    return message if sep and kind.replace(".", "").replace("_", "").isalnum() else last


def _batches(loader):
    """``loader``'s batches; a worker's YolosError comes back as one line, not a traceback."""
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except YolosError as err:
            message = worker_error_message(err)
            if message is None:
                raise
            raise type(err)(message) from None
        yield batch


def move_targets(targets: list[dict], device: torch.device) -> list[dict]:
    return [{k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in t.items()}
            for t in targets]




def accumulate_gradients(parts: StepParts, group: list, where: str, step_seed: tuple) -> dict[str, float]:
    """Forward and backward over the micro-batches of one optimizer step, with the loss
    normalizers of all of them (so their losses add up to the loss of one batch of them all);
    returns the step's summed losses and mean error rates. With training-only extra tokens
    (``parts.extra``) each micro-batch gets them, their noise drawn from ``step_seed`` + its
    index, and ``loss`` is the sum of the model's set loss and theirs."""
    model, criterion, device = parts.model, parts.criterion, parts.device
    config = D.unwrap(model).config
    normalizers = criterion.normalizers([t for _, targets in group for t in targets], config.num_det_tokens, device)
    if parts.extra is not None:
        normalizers.update(parts.extra.normalizers(group, config.patch_size, criterion.eos_coef, device))
    values: dict[str, float] = defaultdict(float)
    for i, (pixel_values, targets) in enumerate(group):
        sync = i == len(group) - 1 or not hasattr(model, "no_sync")  # DDP syncs the last one only
        with contextlib.nullcontext() if sync else model.no_sync():
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=parts.bf16):
                extra = None
                if parts.extra is not None:
                    noise = torch.Generator().manual_seed(hash((*step_seed, i)) % 2**63)
                    extra = parts.extra.prepare(D.unwrap(model), pixel_values, targets, noise)
                outputs = model(pixel_values, **(extra.model_inputs() if extra is not None else {}))
            outputs = {k: v.float() for k, v in outputs.items()}
            losses = criterion(outputs, targets, normalizers)
            if extra is not None:
                more = parts.extra.losses(outputs, targets, extra, criterion, normalizers)
                losses.update(more, loss=losses["loss"] + sum(more.values()))
            # One host sync per batch (as hustvl/YOLOS): the loss for the check and the means.
            part = {k: float(losses[k].detach()) for k in LOG_KEYS if k in losses}
            if all_reduce_flag(not math.isfinite(part["loss"]), device):  # all ranks stop together
                raise NonFiniteLossError(f"non-finite loss ({part['loss']}) at {where}: {part}")
            losses["loss"].backward()
        for k, v in part.items():  # sums for the losses; means for the error rates
            values[k] += v if k.startswith("loss") else v / len(group)
    if parts.extra is not None:
        D.average_gradients(parts.extra.parameters())  # outside DDP's wrapper
    return values


@dataclass
class StepParts:
    """What every optimizer step of a run uses."""

    model: nn.Module  # the model, or its DDP wrapper
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: object  # yolos.train.optim.LRSchedule
    device: torch.device
    clip_max_norm: float = 0.1
    bf16: bool = False
    accumulate_steps: int = 1
    extra: object = None  # yolos.train.extra_tokens.ExtraTokens: training-only tokens, or None
    seed: tuple = (0, 0)  # (run seed, rank): with the global step, seeds the extra tokens' noise


def train_one_epoch(
    parts: StepParts,
    loader,
    *,
    epoch: int,
    start_step: int = 0,
    global_step: int = 0,
    on_step: Callable[[int, int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[dict, int]:
    """Train over ``loader`` (which already skips the batches of the ``start_step`` optimizer
    steps done before a resume).

    Each optimizer step takes ``parts.accumulate_steps`` batches (the last step of an epoch may
    take fewer): the loss normalizers of all of them first (``criterion.normalizers``, so the
    micro-batch losses add up to the loss of one batch of them all), then per batch forward (bf16
    autocast if asked; the criterion casts to fp32 itself), the finite-loss check (all ranks stop
    together) and backward (DDP synchronises only the last one); then global-norm clipping and the
    AdamW step. ``on_step(step_in_epoch_done, global_step_done, step_metrics)`` runs after every
    optimizer step (checkpointing, step logging and the console live there); the epoch ends early
    when ``should_stop()`` says so after a step (a time budget).

    Returns ``(epoch means of the logged losses averaged over ranks, global_step)``.
    """
    model, criterion, optimizer, schedule = parts.model, parts.criterion, parts.optimizer, parts.schedule
    device, accumulate_steps = parts.device, parts.accumulate_steps
    model.train()
    criterion.train()
    sums: dict[str, float] = defaultdict(float)
    count = 0
    step = start_step
    t0 = time.perf_counter()
    groups = chunks(_batches(loader), accumulate_steps)  # the batches of each optimizer step
    for group in groups:
        lr = schedule.apply(optimizer, epoch, global_step)
        group = [(pixels.to(device, non_blocking=True), move_targets(targets, device)) for pixels, targets in group]
        optimizer.zero_grad(set_to_none=True)
        values = accumulate_gradients(parts, group, f"epoch {epoch}, step {step} (global step {global_step})",
                                       (*parts.seed, global_step))
        if parts.clip_max_norm and parts.clip_max_norm > 0:
            trained = list(model.parameters()) + (list(parts.extra.parameters()) if parts.extra is not None else [])
            norm = torch.nn.utils.clip_grad_norm_([p for p in trained if p.grad is not None], parts.clip_max_norm)
            values["grad_norm"] = float(norm)
        optimizer.step()
        step += 1
        global_step += 1
        count += 1
        for k, v in values.items():
            sums[k] += v
        if on_step is not None:
            on_step(step, global_step, dict(values, lr=lr))
        if should_stop is not None and should_stop():
            break
    means = {k: v / max(count, 1) for k, v in sums.items()}
    means = all_reduce_mean(means, device)
    means["lr"] = schedule.lr(epoch, max(global_step - 1, 0))
    means["steps"] = count
    means["time_s"] = time.perf_counter() - t0
    return means, global_step
