"""``fit``: the whole training run (data, model, optimizer, epochs, evaluation, logs, checkpoints).

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
import json
import math
import random
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .. import distributed as D
from ..errors import CheckpointError, DatasetError, YolosError
from ..evaluation.evaluate import evaluate
from ..files import atomic_path
from ..model import create_model, eval_sizes, get_variant
from .checkpointing import load_training_state, save_training_state, set_rng_state
from .config import TrainConfig
from .engine import NonFiniteLossError, train_one_epoch
from .optim import LRSchedule, build_optimizer

STATE_FILE = "state.pt"


# --------------------------------------------------------------------------- data order
class SeededDataset(Dataset):
    """``dataset`` repeated ``repeat`` times; item ``i`` of epoch ``e`` is produced with the
    python/numpy/torch generators seeded from ``(seed, e, i)`` (then restored), so random
    augmentation is a pure function of the position in the run.

    Warm start: during the first ``warm_epochs`` epochs every item is one of the first
    ``warm_images`` images (item ``i`` -> image ``i % warm_images``; a rendered dataset renders
    them as in epoch 0, the same few images throughout), so a model from random weights can
    first fit a few images and then continue, in the same run, on all of them."""

    def __init__(self, dataset, seed: int, repeat: int = 1, warm_images: int = 0, warm_epochs: int = 0):
        self.dataset, self.seed, self.repeat, self._epoch = dataset, seed, max(1, repeat), 0
        self.warm_images, self.warm_epochs = min(warm_images, len(dataset)), warm_epochs

    @property
    def warming(self) -> bool:
        return self.warm_images > 0 and self._epoch < self.warm_epochs

    @property
    def epoch(self) -> int:
        return self._epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        # Datasets that render their items (SyntheticShapes) draw new ones per epoch.
        self._epoch = value
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(0 if self.warming else value)

    def __len__(self) -> int:
        return len(self.dataset) * self.repeat

    def __getitem__(self, i: int):
        s = (self.seed * 1_000_003 + self.epoch * 10_007 + i) % (2**31)
        py, npst = random.getstate(), np.random.get_state()
        random.seed(s)
        np.random.seed(s)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s)
                return self.dataset[i % (self.warm_images if self.warming else len(self.dataset))]
        finally:
            random.setstate(py)
            np.random.set_state(npst)


class ResumableSampler(Sampler[int]):
    """DistributedSampler semantics (seeded permutation per epoch, padded to a multiple of the
    world size, rank ``r`` takes positions ``r::world``) plus a start offset in batches.

    With rank-strided positions, global step ``s`` covers positions ``[s*B*W, (s+1)*B*W)`` of the
    permutation whatever the world size, so N processes at batch B see the same global batches
    as one process at batch N*B.
    """

    def __init__(self, size: int, *, batch_size: int, world_size: int = 1, rank: int = 0,
                 seed: int = 0, shuffle: bool = True):
        self.size, self.batch_size, self.world_size, self.rank = size, batch_size, world_size, rank
        self.seed, self.shuffle = seed, shuffle
        self.epoch, self.start_batch = 0, 0
        self.per_rank = math.ceil(size / world_size)
        self.drop_last = self.per_rank >= batch_size

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def batches_per_epoch(self) -> int:
        if self.drop_last:
            return self.per_rank // self.batch_size
        return math.ceil(self.per_rank / self.batch_size)

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        total = self.per_rank * self.world_size
        order += order[: total - len(order)] if total > len(order) else []
        mine = order[self.rank:total:self.world_size]
        if self.drop_last:
            mine = mine[: self.batches_per_epoch() * self.batch_size]
        return mine[self.start_batch * self.batch_size:]

    def __iter__(self):
        return iter(self._indices())

    def __len__(self) -> int:
        return len(self._indices())


# --------------------------------------------------------------------------- building blocks
def _transforms(cfg: TrainConfig, variant_name: str, split: str):
    """hustvl/YOLOS augmentation (train) or the fixed eval resize of a variant, with the size overrides."""
    from ..data import transforms as T

    v = get_variant(variant_name)
    if split == "train":
        scales = list(cfg.train_sizes or v.train_scales)
        max_size = cfg.train_max_size or max(v.train_max_size, max(scales))
        if not cfg.augment:  # deterministic: one resize to the largest training size
            return T.make_transforms("val", eval_size=(max(scales), max_size))
        crop_resize, crop_size = T.crop_branch_for_scales(scales)
        return T.make_transforms("train", scales=scales, max_size=max_size,
                                 crop_resize=crop_resize, crop_size=crop_size)
    short, long = eval_sizes(variant_name, "paper")
    size = cfg.eval_size or short
    max_size = cfg.eval_max_size or max(long, size)
    return T.make_transforms("val", eval_size=(size, max_size))


def _resolve_model_source(cfg: TrainConfig) -> str:
    """'scratch', 'yolos' (a detector checkpoint / hub id) or 'imagenet' (DeiT/ViT backbone)."""
    if not cfg.init:
        return "scratch"
    if cfg.init_kind in ("yolos", "imagenet"):
        return cfg.init_kind
    if cfg.init_kind != "auto":
        raise ValueError(f"init_kind must be auto, yolos or imagenet, not {cfg.init_kind!r}")
    p = Path(cfg.init)
    if p.is_dir() or not p.exists():
        return "yolos"  # transformers directory or hub id
    from ..checkpoint.safe_io import read_state_dict

    state, meta = read_state_dict(p)
    if "yolos_config" in meta or any("det_token" in k for k in state):
        return "yolos"
    return "imagenet"


def same_label_space(model_config, dataset) -> bool:
    """True when the model's class head already means the dataset's labels (same count, same
    names wherever the model has names): then a checkpoint is fine-tuned with its head kept."""
    if model_config.num_classes != dataset.num_classes:
        return False
    names = model_config.class_names or {}
    return all(names.get(label, name) == name for label, name in dataset.class_names.items())


def build_datasets(cfg: TrainConfig, variant_name: str):
    """(DatasetConfig, train, val or None). Labels: COCO's 91-id space when the categories are
    COCO's, contiguous 0..K-1 otherwise (CocoDetection's auto mode). A synthetic train split
    renders its images (fresh every epoch unless ``fresh: false``) with labels that must match
    the val split's categories."""
    from ..data.coco import CocoDetection
    from ..data.dataset_config import resolve_dataset

    dc = resolve_dataset(cfg.data)
    train_transforms = _transforms(cfg, variant_name, "train")
    if dc.train_synthetic is not None:
        from ..data.synthetic import synthetic_from_config

        train = synthetic_from_config(dc.train_synthetic, dc.source, train_transforms)
        if cfg.max_train_images:
            train.num_images = min(train.num_images, cfg.max_train_images)
    else:
        train = CocoDetection(dc.train_images, dc.train_annotations, names=dc.names,
                              transforms=train_transforms)
        if cfg.max_train_images:
            train.ids = train.ids[: cfg.max_train_images]
    if train.num_classes == 0:
        raise DatasetError(f"{dc.train_annotations or dc.source}: 'categories' is empty: there is "
                           f"nothing to learn")
    val = None
    if dc.val_annotations:
        val = CocoDetection(dc.val_images, dc.val_annotations, names=dc.names,
                            transforms=_transforms(cfg, variant_name, "val"))
        if cfg.max_val_images:
            val.ids = val.ids[: cfg.max_val_images]
        if dc.train_synthetic is not None and val.class_names != train.class_names:
            raise DatasetError(f"{dc.source}: the synthetic train split's classes {train.class_names} "
                               f"differ from the val split's {val.class_names} ({dc.val_annotations})")
    return dc, train, val


def build_model(cfg: TrainConfig, state: dict | None, log):
    """The model to train, the datasets matching its label space, and the variant it was built
    as (a YOLOS checkpoint's own, else ``cfg.model``)."""
    from ..config import ModelConfig
    from ..model import YOLOS

    if state is not None:  # resume: the architecture comes from the state
        model = YOLOS(ModelConfig.from_dict(state["model_config"]))
        model.load_state_dict(state["model"])
        variant = cfg.variant or cfg.model
        dc, train, val = build_datasets(cfg, variant)
        return model, dc, train, val, variant
    source = _resolve_model_source(cfg)
    variant = cfg.model
    if source == "yolos":
        from ..checkpoint import from_pretrained

        model = from_pretrained(cfg.init).train()
        variant = model.config.variant or cfg.model
        dc, train, val = build_datasets(cfg, variant)
        if same_label_space(model.config, train):
            log(f"keeping the checkpoint's class head ({model.config.num_classes} classes)")
        else:
            model.reset_heads(train.num_classes, dict(train.class_names))
            had = len(model.config.class_names or {}) or "?"
            log(f"new class head for {train.num_classes} classes (checkpoint had {had} names)")
    else:
        dc, train, val = build_datasets(cfg, variant)
        overrides = {"num_classes": train.num_classes, "class_names": dict(train.class_names)}
        if cfg.num_det_tokens:
            overrides["num_det_tokens"] = cfg.num_det_tokens
        if cfg.patch_size:
            overrides["patch_size"] = cfg.patch_size
        overrides.update(cfg.model_overrides)
        model = create_model(variant, **overrides)
        if source == "scratch" and (cfg.scratch_init or cfg.anchors or cfg.head_priors):
            from .recipe import prepare_scratch_model

            log("from scratch: " + prepare_scratch_model(
                model, train, scratch_init=cfg.scratch_init, anchors=cfg.anchors,
                head_priors=cfg.head_priors))
        if source == "imagenet":
            from ..checkpoint.deit import load_imagenet_backbone

            report = load_imagenet_backbone(model, cfg.init, seed=cfg.seed)
            log(f"backbone initialized from {cfg.init}: {report}")
    return model, dc, train, val, variant


# --------------------------------------------------------------------------- logging
class RunLog:
    """log.jsonl writer (rank 0). On resume, lines past the checkpoint's step are dropped so
    the log reads as one uninterrupted run."""

    def __init__(self, out: Path, enabled: bool, resume_step: int | None):
        self.path = out / "log.jsonl"
        self.enabled = enabled
        if enabled and resume_step is not None and self.path.exists():
            keep = [ln for ln in self.path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("global_step", 0) <= resume_step]
            self.path.write_text("".join(ln + "\n" for ln in keep))
        elif enabled and resume_step is None and self.path.exists():
            self.path.unlink()

    def write(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def epochs(self) -> list[dict]:
        if not self.path.exists():
            return []
        rows = [json.loads(ln) for ln in self.path.read_text().splitlines() if ln.strip()]
        return [r for r in rows if r.get("type") == "epoch"]


def plot_metrics(records: list[dict], path: Path) -> None:
    """metrics.png: losses, lr and val AP per epoch (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not records:
        return
    ep = [r["epoch"] for r in records]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for key in ("loss", "loss_ce", "loss_bbox", "loss_giou"):
        axes[0].plot(ep, [r["train"].get(key, float("nan")) for r in records], label=key)
    axes[0].set_title("train loss")
    axes[0].legend()
    axes[1].plot(ep, [r["train"].get("lr", float("nan")) for r in records])
    axes[1].set_title("learning rate")
    for key in ("AP", "AP50", "AP75"):
        pts = [(r["epoch"], r["val"][key]) for r in records if r.get("val") and key in r["val"]]
        if pts:
            axes[2].plot(*zip(*pts), marker="o", label=key)
            axes[2].legend()
    axes[2].set_title("val AP")
    for ax in axes:
        ax.set_xlabel("epoch")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def save_model_atomic(model, path: Path) -> None:
    from ..checkpoint.native import save_native

    with atomic_path(path, suffix=".safetensors") as tmp:
        save_native(D.unwrap(model), tmp)


# --------------------------------------------------------------------------- evaluation
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

    last_stats, last_plot = None, 0.0
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
            record = {"type": "epoch", "epoch": epoch, "global_step": global_step,
                      "train": {k: round(v, 6) for k, v in train_stats.items()},
                      "val": val_stats, "time": time.time()}
            runlog.write(record)
            if di.is_main:
                save_model_atomic(model, out / "last.safetensors")
                ap = val_stats["AP"] if val_stats else -1.0
                if val_stats is None or ap > best_ap or not (out / "best.safetensors").exists():
                    if val_stats is not None:
                        best_ap = max(best_ap, ap)
                    save_model_atomic(model, out / "best.safetensors")
                if is_last or time.perf_counter() - last_plot > 30:  # plotting costs ~1 s; not every tiny epoch
                    plot_metrics(runlog.epochs(), out / "metrics.png")
                    last_plot = time.perf_counter()
                msg = f"epoch {epoch}: loss {train_stats.get('loss', float('nan')):.4f}"
                if val_stats:
                    msg += f", val AP {val_stats['AP']:.4f} AP50 {val_stats['AP50']:.4f}"
                say(msg)
            checkpoint(epoch + 1, 0, global_step)
            finished[0] = (epoch + 1, 0, global_step)
            if interrupt.requested:  # arrived during evaluation or saving
                stop_after_interrupt()
            D.barrier()
    return {"out": str(out), "best_ap": best_ap, "val": last_stats, "global_step": global_step,
            "epochs": cfg.epochs, "is_main": di.is_main}
