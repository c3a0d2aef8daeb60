"""``fit``: the whole training run (data, model, optimizer, epochs, evaluation, logs, checkpoints),
from the pieces in ``builders`` (datasets, model), ``data_order`` (the seeded order),
``runlog`` (log, plot, model files), ``engine`` (one epoch) and ``checkpointing`` (the state).

Run directory (``TrainConfig.out``)::

    log.jsonl          one JSON line per epoch (+ every ``log_every_steps`` steps)
    metrics.png        losses, lr and AP per epoch
    last.safetensors   model after the latest epoch (single-file format, config inside)
    best.safetensors   model with the best val AP so far
    state.pt           training state (weights_only-loadable; see checkpointing.py)

Determinism: the sample order of epoch ``e`` is a permutation seeded by ``(seed, e)`` and every
sample's augmentation is seeded by ``(seed, e, index)``, independent of workers and ranks, so a
resumed run (which skips the batches already done) sees exactly the data of an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import random
import signal
import threading
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from .. import distributed as D
from ..errors import CheckpointError, DatasetError, YolosError
from ..evaluation.evaluate import evaluate
from ..model import get_variant
from .builders import build_model
from .checkpointing import load_training_state, save_training_state, set_rng_state
from .config import TrainConfig
from .data_order import ResumableSampler, SeededDataset
from .engine import NonFiniteLossError, train_one_epoch
from .optim import LRSchedule, build_optimizer
from .runlog import RunLog

STATE_FILE = "state.pt"


# --------------------------------------------------------------------------- interrupts
class TrainingInterrupted(YolosError):
    """Ctrl-C stopped the run after saving its state; the message says how to continue."""


class _InterruptRequest:
    """While active (``with``), the first SIGINT only asks the loop to stop after the current
    step (which saves the state first); a second one interrupts at once. Only in the main
    thread of a single-process run (under torchrun every rank would have to agree)."""

    def __init__(self, enabled: bool, say):
        self.enabled, self.say, self.requested, self._previous = enabled, say, False, None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.say("\ninterrupt: saving the training state after this step (Ctrl-C again to quit now)")

    def __enter__(self):
        if self.enabled and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        return False


# --------------------------------------------------------------------------- fit
def fit(cfg: TrainConfig, log=print) -> dict:
    """Train according to ``cfg``; returns a summary (best AP, final epoch, paths).

    The run folder is claimed and locked first (:mod:`yolos.run_dir`): a new run never writes
    into a folder that holds an earlier run or a running one. A folder this call created is
    removed again if the run fails before writing anything into it.
    """
    from ..run_dir import run_dir

    di = D.init_distributed(cfg.device)
    say = log if di.is_main else (lambda *a, **k: None)
    try:
        if not di.is_main:  # rank 0 claims the folder; the others follow it
            out = Path(D.broadcast_object(None))
            return _fit(dataclasses.replace(cfg, out=str(out)), di, out, say)
        with run_dir(cfg.out, cfg.resume, say=say) as out:
            D.broadcast_object(str(out))
            return _fit(dataclasses.replace(cfg, out=str(out)), di, out, say)
    finally:
        D.cleanup()


# Options a resumed run takes from the command line; every other one is the run's own.
RESUME_MAY_CHANGE = ("resume", "progress", "workers", "device", "out", "eval_every",
                     "save_every_steps", "log_every_steps", "epochs")


def resume_config(saved: dict, given: TrainConfig, done_epochs: int, say) -> TrainConfig:
    """The configuration a resumed run continues with: the saved one, with the options of
    :data:`RESUME_MAY_CHANGE` from ``given`` (``--epochs`` may extend the run, not shorten it
    below the epochs done). Every other option given with a value other than both its default
    and the run's is reported as kept from the run."""
    defaults = TrainConfig()
    merged = dict(saved)
    for f in dataclasses.fields(TrainConfig):
        name = f.name
        value = getattr(given, name)
        if name in RESUME_MAY_CHANGE:
            if name == "epochs" and value != saved.get("epochs"):
                if value == getattr(defaults, name):
                    continue  # not given: keep the run's
                if value <= done_epochs:
                    raise ValueError(f"--epochs {value}: the run has already done {done_epochs} epochs; "
                                     f"give more to extend it")
                say(f"--epochs {value}: the run continues to {value} epochs (it was set to "
                    f"{saved.get('epochs')}); the cosine schedule follows the new length")
            merged[name] = value
        elif name in saved and value != saved[name] and value != getattr(defaults, name):
            say(f"--{name.replace('_', '-')} {value}: ignored, a resumed run keeps its own "
                f"({saved[name]}); start a new run (--init ...) to change it")
    return TrainConfig.from_dict(merged)


def _fit(cfg: TrainConfig, di: D.DistInfo, out: Path, say) -> dict:
    state = None
    if cfg.resume:
        path = out / STATE_FILE
        if not path.exists():
            raise CheckpointError(f"{path}: --resume given but there is no training state to resume from")
        state = load_training_state(path)
        cfg = resume_config(dict(state["config"]), cfg, state["epoch"], say)
    from .recipe import resolve_recipe

    cfg = resolve_recipe(cfg)
    if state is not None:
        say(f"resuming {path} at epoch {state['epoch']}, step {state['step_in_epoch']} "
            f"(global step {state['global_step']})")
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if di.is_main:
        out.mkdir(parents=True, exist_ok=True)

    model, dc, train_ds, val_ds, variant_name = build_model(cfg, state, say)
    variant = get_variant(variant_name)
    lr = cfg.lr if cfg.lr is not None else variant.lr
    batch_size = cfg.batch_size or variant.batch_size
    cfg = dataclasses.replace(cfg, variant=variant_name, lr=lr, batch_size=batch_size)  # fully resolved
    if len(train_ds) == 0:
        raise DatasetError(f"{dc.train_annotations}: no training images")

    model.grad_checkpointing = cfg.grad_checkpointing
    if cfg.detach_det_tokens:
        model.det_tokens.requires_grad_(False)  # stay at random init (paper, Table 7)
    model.to(di.device)
    net = model
    if di.distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[di.device.index] if di.device.type == "cuda" else None
        )

    from .criterion import SetCriterion
    from .matcher import HungarianMatcher

    matcher = HungarianMatcher(cost_class=1, cost_bbox=5, cost_giou=2, cost_anchor=cfg.anchor_matching)
    criterion = SetCriterion(model.config.num_classes, matcher, eos_coef=0.1).to(di.device)
    optimizer = build_optimizer(net, lr=lr, weight_decay=cfg.weight_decay)
    schedule = LRSchedule(lr, cfg.epochs, cfg.min_lr, cfg.warmup_epochs, cfg.warmup_lr, cfg.warmup_steps)

    seeded = SeededDataset(train_ds, cfg.seed, cfg.repeat, cfg.warm_start_images, cfg.warm_start_epochs)
    if cfg.warm_start_images and cfg.warm_start_epochs:
        say(f"warm start: epochs 0-{cfg.warm_start_epochs - 1} draw only the first "
            f"{seeded.warm_images} training images")
    sampler = ResumableSampler(len(seeded), batch_size=batch_size, world_size=di.world_size,
                               rank=di.rank, seed=cfg.seed, shuffle=True)
    from ..data.collate import collate_fn

    loader = DataLoader(seeded, batch_size=batch_size, sampler=sampler, collate_fn=collate_fn,
                        num_workers=cfg.workers, drop_last=sampler.drop_last,
                        pin_memory=di.device.type == "cuda")

    start_epoch, start_step, global_step, best_ap = 0, 0, 0, -1.0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["scheduler"])
        start_epoch, start_step = state["epoch"], state["step_in_epoch"]
        global_step, best_ap = state["global_step"], state["best_ap"]
        set_rng_state(state["rng"])
    runlog = RunLog(out, di.is_main, global_step if state is not None else None)
    cfg_dict = cfg.to_dict()
    # The resolved configuration heads the log (again on each resume, at the step it resumes).
    runlog.write({"type": "config", "global_step": global_step, "config": cfg_dict})
    say(f"training {model.config.variant or cfg.model}: {model.num_parameters() / 1e6:.2f}M params, "
        f"{train_ds.num_classes} classes, {len(train_ds)} train images"
        f"{f' x {cfg.repeat} repeats' if cfg.repeat > 1 else ''}, batch {batch_size} x "
        f"{di.world_size} process(es), lr {lr:g}, {cfg.epochs} epochs, device {di.device}")

    def checkpoint(epoch: int, step_in_epoch: int, gstep: int) -> None:
        if di.is_main:
            save_training_state(out / STATE_FILE, model=model, optimizer=optimizer, scheduler=schedule,
                                epoch=epoch, step_in_epoch=step_in_epoch, global_step=gstep,
                                best_ap=best_ap, config=cfg_dict)

    last_stats = None
    interrupt = _InterruptRequest(enabled=not di.distributed, say=say)
    finished = [(start_epoch, start_step, global_step)]  # the last finished (epoch, step, global step)

    def stop_after_interrupt():
        epoch_done, step_done, gstep_done = finished[0]
        checkpoint(epoch_done, step_done, gstep_done)
        raise TrainingInterrupted(
            f"interrupted: the training state after epoch {epoch_done} step {step_done} (global "
            f"step {gstep_done}) is saved in {out / STATE_FILE}; continue with --resume --out {out}")

    with interrupt:
        for epoch in range(start_epoch, cfg.epochs):
            seeded.epoch = epoch
            sampler.set_epoch(epoch, start_step if epoch == start_epoch else 0)
            steps_per_epoch = sampler.batches_per_epoch()

            def on_step(step: int, gstep: int, values: dict, epoch=epoch, steps_per_epoch=steps_per_epoch) -> None:
                if cfg.log_every_steps and gstep % cfg.log_every_steps == 0:
                    runlog.write({"type": "step", "epoch": epoch, "step": step, "global_step": gstep,
                                  **{k: round(v, 6) for k, v in values.items()}})
                if cfg.save_every_steps and gstep % cfg.save_every_steps == 0 and step < steps_per_epoch:
                    checkpoint(epoch, step, gstep)
                finished[0] = (epoch, step, gstep)
                if interrupt.requested:  # Ctrl-C: keep every finished step, then stop
                    stop_after_interrupt()

            try:
                train_stats, global_step = train_one_epoch(
                    net, criterion, loader, optimizer, schedule, epoch=epoch, device=di.device,
                    start_step=sampler.start_batch, global_step=global_step,
                    clip_max_norm=cfg.clip_max_norm, bf16=cfg.bf16, on_step=on_step,
                    progress=cfg.progress and di.is_main,
                )
            except RuntimeError:
                if interrupt.requested:  # DataLoader workers die with the same Ctrl-C
                    stop_after_interrupt()
                raise
            except NonFiniteLossError as err:
                kept = out / STATE_FILE
                where = (f"the last good checkpoint is kept at {kept}" if kept.exists()
                         else "no checkpoint was written yet")
                raise NonFiniteLossError(f"{err}; training stopped, {where}") from None
            val_stats = None
            is_last = epoch + 1 == cfg.epochs
            if val_ds is not None and cfg.eval_every and ((epoch + 1) % cfg.eval_every == 0 or is_last):
                val_stats, _ = evaluate(net, val_ds, batch_size=1, device=di.device, progress=cfg.progress)
                last_stats = val_stats
            best_ap = runlog.end_epoch(model, epoch, global_step, train_stats, val_stats, best_ap, is_last, say)
            checkpoint(epoch + 1, 0, global_step)
            finished[0] = (epoch + 1, 0, global_step)
            if interrupt.requested:  # arrived during evaluation or saving
                stop_after_interrupt()
            D.barrier()
    return {"out": str(out), "best_ap": best_ap, "val": last_stats, "global_step": global_step,
            "epochs": cfg.epochs, "is_main": di.is_main}
