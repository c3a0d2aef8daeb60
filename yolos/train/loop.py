"""``fit``: a whole training run, nanoGPT-style: set up (config, model, data, optimizer), then loop
over epochs. The pieces live beside it: ``builders`` (model, datasets), ``data_order`` (the
seeded order), ``engine`` (one epoch), ``runlog`` (log, plot, model files) and ``checkpointing``
(the state); :class:`Progress` keeps the run's position, saves it and stops it on request.

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
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from .. import distributed as D
from .. import validate
from ..data.collate import collate_fn
from ..distributed import all_reduce_flag
from ..errors import CheckpointError, YolosError
from ..evaluation.evaluate import evaluate
from ..files import remove_stale_temporaries
from ..model import get_variant
from ..model.variants import input_size
from ..run_dir import run_dir
from .autocast import choose_bf16
from .builders import build_datasets, cache_datasets, data_sizes, prepare_model, set_transforms, starting_model
from .checkpointing import load_training_state, save_training_state, set_rng_state
from .config import TrainConfig
from .console import StepReporter
from .criterion import SetCriterion
from .data_order import ResumableSampler, SeededDataset
from .ema import ModelEMA
from .engine import NonFiniteLossError, StepParts, move_targets, train_one_epoch
from .extra_tokens import ExtraTokens, extra_tokens_for
from .matcher import HungarianMatcher
from .optim import LRSchedule, build_optimizer, freeze_input_side
from .runlog import RunLog

STATE_FILE = "state.pt"
RUN_FILES = (STATE_FILE, "log.jsonl", "last.safetensors", "best.safetensors", "metrics.png", "results.csv")
# Options a resumed run takes from the command line; every other one is the run's own.
RESUME_MAY_CHANGE = ("resume", "progress", "workers", "cache", "device", "out", "eval_every",
                     "save_every_steps", "log_every_steps", "epochs", "time", "patience", "tensorboard")


class TrainingInterrupted(YolosError):
    """Ctrl-C (or SIGTERM) stopped the run after saving its state; the message says how to continue."""


# --------------------------------------------------------------------------- the run's position
@dataclass
class Progress:
    """Where the run is (``epoch``, ``step`` in it, ``global_step``: the last finished optimizer
    step), its best AP, and what saves it: ``save()`` writes ``state.pt`` (rank 0), ``stop()``
    saves and raises :class:`TrainingInterrupted`. While entered (``with``), the first SIGINT or
    SIGTERM only asks for a stop after the step under way (``requested``); a second SIGINT stops
    at once. Signals are handled in the main thread of a single-process run only (under
    torchrun every rank would have to agree)."""

    out: Path
    parts: dict  # model, optimizer, scheduler, config (a dict): what the state holds
    is_main: bool
    handle_signals: bool
    say: object
    epoch: int = 0
    step: int = 0
    global_step: int = 0
    best_ap: float = -1.0
    stale_evals: int = 0  # evaluations since the best AP (--patience)
    requested: bool = False
    on_stop: object = None  # called when the run stops on request (the log's plot catches up)

    def save(self) -> None:
        if self.is_main:
            save_training_state(self.out / STATE_FILE, epoch=self.epoch, step_in_epoch=self.step,
                                global_step=self.global_step, best_ap=self.best_ap, stale_evals=self.stale_evals,
                                **self.parts)

    def finished(self, epoch: int, step: int, global_step: int) -> None:
        self.epoch, self.step, self.global_step = epoch, step, global_step
        if self.requested:  # keep every finished step, then stop
            self.stop()

    def stop(self):
        self.save()
        if self.on_stop is not None and self.is_main:
            self.on_stop()
        raise TrainingInterrupted(
            f"interrupted: the training state after epoch {self.epoch} step {self.step} (global step "
            f"{self.global_step}) is saved in {self.out / STATE_FILE}; continue with --resume --out {self.out}")

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.say(f"\n{signal.Signals(signum).name}: saving the training state after this step "
                 f"(Ctrl-C again to quit now)")

    def __enter__(self):
        self._previous = {}
        if self.handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


# --------------------------------------------------------------------------- fit
def fit(cfg: TrainConfig, log=print, given=None) -> dict:
    """Train according to ``cfg``; returns a summary (best AP, final epoch, paths).

    ``given``: the names of the options the user set (the CLI passes them); a resumed run
    takes those of :data:`RESUME_MAY_CHANGE` and refuses a different dataset. By default the
    options that differ from their defaults. The run folder is claimed and locked first
    (:mod:`yolos.run_dir`): a new run never writes into a folder that holds any file it would
    write, or a running run. A folder this call created is removed again if the run fails
    before writing anything into it.
    """
    if given is None:
        defaults = TrainConfig()
        given = {f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) != getattr(defaults, f.name)}
    di = D.init_distributed(cfg.device)
    say = log if di.is_main else (lambda *a, **k: None)
    try:
        if not di.is_main:  # rank 0 claims the folder; the others follow it
            out = Path(D.broadcast_object(None))
            return _fit(dataclasses.replace(cfg, out=str(out)), set(given), di, out, say)
        with run_dir(cfg.out, cfg.resume, run_files=RUN_FILES, say=say) as out:
            D.broadcast_object(str(out))
            remove_stale_temporaries(out)
            return _fit(dataclasses.replace(cfg, out=str(out)), set(given), di, out, say)
    finally:
        D.cleanup()


def resume_config(saved: dict, given_cfg: TrainConfig, given: set[str], done_epochs: int, say) -> TrainConfig:
    """The configuration a resumed run continues with: the saved one, with the options of
    :data:`RESUME_MAY_CHANGE` that were ``given`` (``--epochs`` may extend the run, not shorten
    it below the epochs done). Another dataset is refused; every other option given with a value
    other than the run's is reported as kept from the run."""
    merged = dict(saved)
    for name in sorted(given):
        value = getattr(given_cfg, name)
        if name == "data":
            merged["data"] = _resumed_data(saved.get("data", ""), value, say)
        elif name == "epochs" and value != saved.get("epochs"):
            if value <= done_epochs:
                raise ValueError(f"--epochs {value}: the run has already done {done_epochs} epochs; "
                                 f"give more to extend it")
            say(f"--epochs {value}: the run continues to {value} epochs (it was set to "
                f"{saved.get('epochs')}); the cosine schedule follows the new length")
            merged[name] = value
        elif name in RESUME_MAY_CHANGE:
            merged[name] = value
        elif name in saved and value != saved[name]:
            say(f"--{name.replace('_', '-')} {value}: ignored, a resumed run keeps its own "
                f"({saved[name]}); start a new run (--init ...) to change it")
    return TrainConfig.from_dict(merged)


def _resumed_data(saved: str, given: str, say) -> str:
    """The dataset a resumed run reads: the run's own (stored as an absolute path); the one given
    when it is the same, or when the run's is gone (moved); refused when both exist and differ."""
    mine, theirs = Path(saved), Path(given).resolve()
    if not saved or theirs == mine.resolve():
        return str(theirs)
    if not mine.exists():
        say(f"--data {given}: the run's dataset {saved} is gone; reading {theirs} (its classes are checked)")
        return str(theirs)
    raise ValueError(f"--data {given}: the run was trained on {saved}, which still exists; a resumed run "
                     f"keeps its dataset (leave --data out, or start a new run with --init OUT/last.safetensors)")


def _setup(cfg: TrainConfig, given: set[str], di, out: Path, say):
    """Everything the loop needs (:class:`Run`): the resolved config, the model (its DDP
    wrapper, its EMA), the datasets, loader, sampler, criterion, optimizer, schedule and the
    run's :class:`Progress`."""
    cfg, state = _configured(cfg, given, out, say)
    cfg, model, train_ds, val_ds = _model_and_data(cfg, state, di.device, say)
    cached = cache_datasets(cfg, train_ds, val_ds, say)
    model.to(di.device)
    net = model
    if di.distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[di.device.index] if di.device.type == "cuda" else None)
    ema = ModelEMA(model, cfg.ema_decay) if cfg.ema else None
    matcher = HungarianMatcher(cost_class=1, cost_bbox=5, cost_giou=2, cost_anchor=cfg.anchor_matching)
    criterion = SetCriterion(model.config.num_classes, matcher, eos_coef=cfg.eos_coef, weight_ce=cfg.class_loss_weight,
                             class_loss=cfg.class_loss, iou_power=cfg.iou_power).to(di.device)
    optimizer = build_optimizer(net, lr=cfg.lr, weight_decay=cfg.weight_decay, layer_decay=cfg.layer_decay)
    extra = extra_tokens_for(cfg, model.config)
    if extra is not None:  # training-only parameters: in the optimizer and the state, not the model
        extra.to(di.device)
        optimizer.add_param_group({"params": list(extra.parameters()), "weight_decay": 0.0})
    schedule = LRSchedule(cfg.lr, cfg.epochs, cfg.min_lr, cfg.warmup_epochs, cfg.warmup_lr, cfg.warmup_steps)
    seeded = SeededDataset(train_ds, cfg.seed, cfg.repeat)
    sampler = ResumableSampler(len(seeded), batch_size=cfg.batch_size, world_size=di.world_size,
                               rank=di.rank, seed=cfg.seed, shuffle=True)
    loader = DataLoader(seeded, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate_fn,
                        num_workers=cfg.workers, drop_last=sampler.drop_last, pin_memory=di.device.type == "cuda")
    if cfg.bf16 is None:  # the recipe's "auto": time one step each way on the first batch
        first = collate_fn([seeded[i] for i in range(min(cfg.batch_size, len(seeded)))])
        group = [(first[0].to(di.device), move_targets(first[1], di.device))]
        use, why = choose_bf16(StepParts(net, criterion, optimizer, schedule, di.device, extra=extra,
                                         seed=(cfg.seed, di.rank)), group)
        say(why)
        cfg = dataclasses.replace(cfg, bf16=use)
    parts = dict(model=model, optimizer=optimizer, scheduler=schedule, config=cfg.to_dict(), ema=ema,
                 extra_tokens=extra)
    progress = Progress(out, parts, di.is_main, not di.distributed, say)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["scheduler"])
        progress.epoch, progress.step = state["epoch"], state["step_in_epoch"]
        progress.global_step, progress.best_ap = state["global_step"], state["best_ap"]
        progress.stale_evals = int(state.get("stale_evals", 0))
        if ema is not None and "ema" in state:
            ema.load_state_dict(state["ema"])
        if extra is not None:
            extra.load_state_dict(state["extra_tokens"])
        set_rng_state(state["rng"])
    say(f"training {model.config.variant or cfg.model}: {model.num_parameters() / 1e6:.2f}M params, "
        f"{train_ds.num_classes} classes, {len(train_ds)} train images"
        f"{f' x {cfg.repeat} repeats' if cfg.repeat > 1 else ''}, batch {cfg.batch_size} x {di.world_size} "
        f"process(es){f' x {cfg.accumulate_steps} accumulated' if cfg.accumulate_steps > 1 else ''}, "
        f"lr {cfg.lr:g}, {cfg.epochs} epochs{f', within {cfg.time}' if cfg.time else ''}"
        f"{', EMA of the weights' if ema is not None else ''}, input {cfg.eval_size}/{cfg.eval_max_size}, "
        f"device {di.device}")
    return Run(cfg, model, net, ema, val_ds, seeded, sampler, loader, criterion, optimizer, schedule, progress,
               state, extra, cached)


def _configured(cfg: TrainConfig, given: set[str], out: Path, say) -> tuple[TrainConfig, dict | None]:
    """The config a run starts from (a resumed run's own, with what may change) and its training
    state (None for a new run)."""
    state = None
    if cfg.resume:
        path = out / STATE_FILE
        if not path.exists():
            raise CheckpointError(f"{path}: --resume given but there is no training state to resume from")
        state = load_training_state(path)
        cfg = resume_config(dict(state["config"]), cfg, given, state["epoch"], say)
        say(f"resuming {path} at epoch {state['epoch']}, step {state['step_in_epoch']} "
            f"(global step {state['global_step']})")
    elif cfg.data:
        cfg = dataclasses.replace(cfg, data=str(Path(cfg.data).resolve()))  # a resume finds it from anywhere
    if cfg.recipe == "finetune" and not cfg.init and state is None:
        raise ValueError("--recipe finetune: give the checkpoint to fine-tune with --init (a file, a folder, a "
                         "hub id, a variant name, or 'bundled'); --recipe scratch trains from random weights")
    if cfg.freeze and not cfg.init:
        raise ValueError(f"--freeze {cfg.freeze}: only with --init (frozen random weights would stay random)")
    return cfg, state


def _model_and_data(cfg: TrainConfig, state: dict | None, device, say):
    """``(resolved config, model, train split, val split)``: the datasets read first, since the
    recipe may size the input from them, then the model built or fitted to their classes."""
    start, variant_name = starting_model(cfg, state)
    variant = get_variant(variant_name)
    _, train_ds, val_ds = build_datasets(cfg, None if state is None else start.config, say)
    sizes = data_sizes(cfg, train_ds, start, variant)
    cfg = cfg.resolved(variant, None if start is None else start.config, sizes)
    if sizes is not None:
        say(sizes.describe(input_size(start.config if start is not None else variant.config, "paper")))
        warning = sizes.warning(variant.config.patch_size)
        if warning:
            say(warning)
    set_transforms(cfg, train_ds, val_ds)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = prepare_model(cfg, start, train_ds, say, device)
    model.grad_checkpointing = cfg.grad_checkpointing
    if cfg.detach_det_tokens:
        model.det_tokens.requires_grad_(False)  # stay at random init (paper, Table 7)
    if cfg.freeze:
        frozen = freeze_input_side(model, cfg.freeze)
        blocks = "block 0" if cfg.freeze == 1 else f"blocks 0-{cfg.freeze - 1}"
        say(f"frozen: the embeddings and {blocks} ({frozen:,} of "
            f"{model.num_parameters():,} parameters)"
            + ("; the [DET] tokens are new to this backbone and stay at their random init (paper, Table 7)"
               if start is None else ""))
    return cfg, model, train_ds, val_ds


@dataclass
class Run:
    """The parts of a set-up run (:func:`_setup`)."""

    cfg: TrainConfig
    model: torch.nn.Module
    net: torch.nn.Module
    ema: ModelEMA | None
    val_ds: object
    seeded: SeededDataset
    sampler: ResumableSampler
    loader: DataLoader
    criterion: SetCriterion
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    progress: Progress
    state: dict | None
    extra: ExtraTokens | None = None
    cached: dict | None = None  # --cache's log record


class Budget:
    """The run's wall-clock budget (``--time``): whether another epoch fits, and whether it is
    spent (agreed by every rank, so that all stop at the same step)."""

    def __init__(self, cfg: TrainConfig, device):
        self.seconds = validate.seconds(cfg.time, "--time") if cfg.time else None
        self.started = time.monotonic()
        self.device = device
        self.epoch_s = self.eval_s = 0.0

    def spent(self) -> bool:
        if self.seconds is None:
            return False
        over = time.monotonic() - self.started + self.eval_s >= self.seconds
        return all_reduce_flag(over, self.device) if D.is_dist() else over

    def another_epoch_fits(self) -> bool:
        if self.seconds is None:
            return True
        fits = time.monotonic() - self.started + self.epoch_s + self.eval_s < self.seconds
        return not all_reduce_flag(not fits, self.device) if D.is_dist() else fits


def _fit(cfg: TrainConfig, given: set[str], di, out: Path, say) -> dict:
    run = _setup(cfg, given, di, out, say)
    cfg, progress = run.cfg, run.progress
    runlog = RunLog(out, di.is_main, progress.global_step if run.state is not None else None, say,
                    tensorboard=cfg.tensorboard)
    progress.on_stop = runlog.flush
    # The resolved configuration heads the log (again on each resume, at the step it resumes).
    runlog.write({"type": "config", "global_step": progress.global_step, "config": cfg.to_dict()})
    if run.cached is not None:
        runlog.write({**run.cached, "global_step": progress.global_step})
    budget = Budget(cfg, di.device)
    steps_per_epoch = -(-run.sampler.batches_per_epoch() // cfg.accumulate_steps)
    reporter = StepReporter(cfg.epochs, steps_per_epoch * cfg.epochs - progress.global_step,
                            enabled=cfg.progress and di.is_main, say=say)
    last_stats, first_epoch, first_step, stopped = None, progress.epoch, progress.step, None
    with progress:
        for epoch in range(first_epoch, cfg.epochs):
            run.seeded.epoch = epoch
            # a step is accumulate_steps batches: a resumed epoch skips the batches of its done steps
            start = first_step if epoch == first_epoch else 0
            run.sampler.set_epoch(epoch, start * cfg.accumulate_steps)
            steps = -(-run.sampler.batches_per_epoch() // cfg.accumulate_steps)
            reporter.start_epoch(epoch, steps, start)
            began = time.monotonic()

            def on_step(step: int, gstep: int, values: dict, epoch=epoch, steps=steps) -> None:
                if run.ema is not None:
                    run.ema.update(run.model)
                reporter.step(values, values["lr"])
                if cfg.log_every_steps and gstep % cfg.log_every_steps == 0:
                    runlog.write({"type": "step", "epoch": epoch, "step": step, "global_step": gstep,
                                  **{k: round(v, 6) for k, v in values.items()}})
                if cfg.save_every_steps and gstep % cfg.save_every_steps == 0 and step < steps:
                    progress.epoch, progress.step, progress.global_step = epoch, step, gstep
                    progress.save()
                progress.finished(epoch, step, gstep)

            train_stats = _train_epoch(run, epoch, start, on_step, budget.spent, di)
            reporter.end_epoch()
            budget.epoch_s = time.monotonic() - began
            partial = progress.step < steps
            is_last = epoch + 1 == cfg.epochs or partial or not budget.another_epoch_fits()
            val_stats = None
            if run.val_ds is not None and cfg.eval_every and ((epoch + 1) % cfg.eval_every == 0 or is_last):
                began = time.monotonic()
                val_stats, _ = evaluate(run.ema.module if run.ema is not None else run.net, run.val_ds,
                                        batch_size=1, device=di.device, progress=cfg.progress and reporter.tty)
                budget.eval_s = time.monotonic() - began
                last_stats = val_stats
            saved = run.ema.module if run.ema is not None else run.model
            best = runlog.end_epoch(saved, epoch, progress.global_step, train_stats, val_stats, progress.best_ap,
                                    is_last, say)
            if val_stats is not None:
                progress.stale_evals = 0 if best > progress.best_ap else progress.stale_evals + 1
            progress.best_ap = best
            if not partial:
                progress.epoch, progress.step = epoch + 1, 0
            progress.save()
            if progress.requested:  # arrived during evaluation or saving
                progress.stop()
            D.barrier()
            stopped = _stop_reason(cfg, progress, partial, is_last and epoch + 1 < cfg.epochs, epoch)
            if stopped:
                say(stopped)
                break
    runlog.flush()
    return {"out": str(out), "best_ap": progress.best_ap, "val": last_stats, "global_step": progress.global_step,
            "epochs": cfg.epochs, "is_main": di.is_main, "stopped": stopped}


def _stop_reason(cfg: TrainConfig, progress: Progress, partial: bool, out_of_time: bool, epoch: int) -> str | None:
    """Why the run ends before its last epoch (a time budget, --patience), or None."""
    if partial or out_of_time:
        where = f"epoch {epoch + 1} step {progress.step}" if partial else f"epoch {epoch + 1}"
        return (f"time budget {cfg.time} reached after {where} of {cfg.epochs}: the state and a final "
                f"evaluation are saved; --resume --time ... continues")
    if cfg.patience and progress.stale_evals >= cfg.patience:
        return (f"early stop: no better val AP in {progress.stale_evals} evaluations (--patience {cfg.patience}); "
                f"best AP {progress.best_ap:.4f} is in best.safetensors")
    return None


def _train_epoch(run: Run, epoch: int, start: int, on_step, should_stop, di) -> dict:
    """One epoch through :func:`train_one_epoch`, with what its failures mean for the run."""
    cfg, progress = run.cfg, run.progress
    try:
        parts = StepParts(run.net, run.criterion, run.optimizer, run.schedule, di.device, cfg.clip_max_norm,
                          cfg.bf16, cfg.accumulate_steps, run.extra, (cfg.seed, di.rank))
        stats, progress.global_step = train_one_epoch(parts, run.loader, epoch=epoch, start_step=start,
                                                      global_step=progress.global_step, on_step=on_step,
                                                      should_stop=should_stop)
        return stats
    except RuntimeError:
        if progress.requested:  # DataLoader workers die with the same Ctrl-C
            progress.stop()
        raise
    except NonFiniteLossError as err:
        kept = progress.out / STATE_FILE
        where = f"the last good checkpoint is kept at {kept}" if kept.exists() else "no checkpoint was written yet"
        raise NonFiniteLossError(f"{err}; training stopped, {where}") from None
