"""What makes a small YOLOS leave DETR's plateau fast when trained from scratch.

Every run trains the same task for the same wall-clock budget of training time (evaluation not
counted): 128x128 images with 1-8 shapes (square, circle, triangle; 8 colours; sides 12-64 px)
on textured backgrounds, rendered fresh for every step unless a run asks for a fixed set. Each
run changes one lever of ``scratch recipe`` (``yolos train --recipe scratch``); ``baseline`` is the
paper's recipe applied to a model from random weights. Every run is evaluated with
COCO AP (faster-coco-eval, all [DET] predictions) on the same held-out images from a seed never
used in training, every ``--eval-every`` seconds of training. The learning rate follows a
linear warmup and then a cosine to zero over the time budget.

    python -m benchmarks.convergence_study --budget-seconds 180 --threads 1 --out study.jsonl
    python -m benchmarks.convergence_study --table docs/convergence_study.jsonl   # the table of saved runs
    python -m benchmarks.convergence_study --table runs.jsonl --targets 0.5 0.9 --plot curves.png
    python -m benchmarks.convergence_study --runs "scratch recipe" --budget-seconds 60
    python -m benchmarks.convergence_study --runs "scratch, anchor matching 50" --budget-steps 2000

``--budget-steps`` gives every run the same number of optimizer steps instead (the cosine over
steps, an evaluation every eighth of them): curves then do not depend on load from elsewhere, and
the wall time each run took is still recorded beside every evaluation.

Training and evaluation run under bf16 autocast, as ``yolos train`` does where bf16 is faster.
``--precision fp32`` is for CPUs without bf16 units (AVX2 only, where bf16 is emulated and a step
costs 10x): its rows say ``fp32`` and compare only with each other.

Prints one line per evaluation and, at the end, a Markdown table: steps and seconds to AP50 0.5
(or to each of ``--targets``; interpolated between evaluations), the final AP / AP50, the
training loss over the last 10% of the budget, the steps done and the budget of each run.
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from benchmarks.common import environment, table, time_alternating
from yolos import create_model
from yolos.data.collate import collate_fn
from yolos.data.dataset import DetectionDataset
from yolos.data.synthetic import MAX_NUM_IMAGES, ShapesSpec, SyntheticShapes, write_synthetic_dataset
from yolos.evaluation.evaluate import evaluate
from yolos.train.criterion import SetCriterion
from yolos.train.extra_tokens import extra_tokens_for
from yolos.train.matcher import HungarianMatcher
from yolos.train.optim import build_optimizer
from yolos.train.recipe import init_box_anchors, init_head_priors, init_scratch_weights

SPEC = ShapesSpec(image_size=128, min_objects=1, max_objects=8, min_size=12, max_size=64)
VAL_SEED = 987_654  # never used for training images
BOX_PRIOR = 0.2  # a typical side (25 px) over the image side (128 px)

BASELINE = dict(lr=3e-4, warmup=0, batch=32, det_tokens=20, class_prior=False, box_prior=False,
                patch=16, width=128, depth=4, fixed_images=0, pretrain=0.0, scratch_init=False,
                anchors=False, one_to_many=1, one_to_many_until=0.0, curriculum_images=0,
                curriculum_until=0.0, curriculum_seconds=0.0, anchor_matching=0.0, class_loss="ce",
                det_groups=1, denoising=0, iou_power=1.0, dense_aux=0.0)
# The scratch inits at lr 1e-3, as the rows below were run; `yolos train --recipe scratch`
# (yolos.train.config.RECIPES["scratch"]) is the row "scratch, anchor matching 50, lr 2e-3, dense
# aux 1": anchor matching, the lever that left the plateau, and the two that won after it (the
# dense head moved the plateau's end from ~2500 steps to ~1000; with it on, denoising no longer
# paid for its 1.25x model step).
SCRATCH = dict(BASELINE, lr=1e-3, warmup=100, class_prior=True, box_prior=True, scratch_init=True,
               anchors=True)

def repeat_targets(target: dict, k: int, num_tokens: int) -> dict:
    """One-to-many matching (a dead end, kept for its study row): ``target`` with its labels and
    boxes repeated ``min(k, T // N)`` times (at least once), so the Hungarian matcher gives every
    object k [DET] tokens, as hybrid-matching DETRs do early in training."""
    n = len(target["labels"])
    times = max(1, min(k, num_tokens // max(n, 1)))
    if times == 1:
        return target
    return dict(target, labels=target["labels"].repeat(times), boxes=target["boxes"].repeat(times, 1))


def patch_features(model, x: torch.Tensor) -> torch.Tensor:
    """The patch outputs after the final LayerNorm, ``[B, gh*gw, D]`` row-major (the dense
    pretraining row): the detector's forward with every block computing all rows."""
    p = model.config.patch_size
    pos, mid = model.position_embeddings((x.shape[-2] // p, x.shape[-1] // p))
    h = model.patch_embed(x)
    b, t = x.shape[0], model.config.num_det_tokens
    h = torch.cat([model.cls_token.expand(b, -1, -1), h, model.det_tokens.expand(b, -1, -1)], 1) + pos
    for i, block in enumerate(model.blocks):
        h, _ = block(h)
        if mid is not None and i < len(model.blocks) - 1:
            h = h + mid[i]
    return model.norm(h)[:, 1:-t]


RUNS: dict[str, dict] = {
    "baseline (paper recipe, random init)": BASELINE,
    "scratch recipe": SCRATCH,
    "scratch, lr 3e-4": dict(SCRATCH, lr=3e-4),
    "scratch, lr 3e-3": dict(SCRATCH, lr=3e-3),
    "scratch, no warmup": dict(SCRATCH, warmup=0),
    "scratch, batch 64": dict(SCRATCH, batch=64),
    "scratch, 10 [DET]": dict(SCRATCH, det_tokens=10),
    "scratch, 40 [DET]": dict(SCRATCH, det_tokens=40),
    "scratch, no class prior": dict(SCRATCH, class_prior=False),
    "scratch, no box prior": dict(SCRATCH, box_prior=False),
    "scratch, hustvl/YOLOS init, no anchors": dict(SCRATCH, scratch_init=False, anchors=False),
    "scratch, no anchors": dict(SCRATCH, anchors=False),
    "scratch, patch 8": dict(SCRATCH, patch=8),
    "scratch, fixed 2000 images": dict(SCRATCH, fixed_images=2000),
    "scratch, width 192, depth 6": dict(SCRATCH, width=192, depth=6),
    "scratch, width 64, depth 4": dict(SCRATCH, width=64),
    "scratch, 25% patch-class pretraining": dict(SCRATCH, pretrain=0.25),
    "scratch, one-to-many x3 for 60%": dict(SCRATCH, one_to_many=3, one_to_many_until=0.6),
    "scratch, 64 fixed images for 30%, then fresh": dict(SCRATCH, curriculum_images=64, curriculum_until=0.3),
    "scratch, 64 fixed images for the first 180 s, then fresh": dict(SCRATCH, curriculum_images=64,
                                                                      curriculum_seconds=180),
    "scratch, anchor matching 50": dict(SCRATCH, anchor_matching=50.0),
    "scratch, anchor matching 50, 36 [DET]": dict(SCRATCH, anchor_matching=50.0, det_tokens=36),
    "scratch, anchor matching 50, 64 [DET]": dict(SCRATCH, anchor_matching=50.0, det_tokens=64),
    "baseline + anchor matching 50 (no scratch inits)": dict(BASELINE, anchor_matching=50.0),
    "scratch, anchor matching 50, IoU-aware class loss": dict(SCRATCH, anchor_matching=50.0, class_loss="iou"),
    "scratch, anchor matching 50, 2 groups": dict(SCRATCH, anchor_matching=50.0, det_groups=2),
    "scratch, anchor matching 50, 3 groups": dict(SCRATCH, anchor_matching=50.0, det_groups=3),
    "scratch, anchor matching 50, denoising 2": dict(SCRATCH, anchor_matching=50.0, denoising=2),
    "scratch, anchor matching 50, 3 groups, denoising 2": dict(SCRATCH, anchor_matching=50.0, det_groups=3,
                                                               denoising=2),
    "scratch, anchor matching 50, denoising 2, lr 2e-3": dict(SCRATCH, anchor_matching=50.0, denoising=2, lr=2e-3),
    "scratch, anchor matching 50, 3 groups, denoising 2, lr 2e-3": dict(SCRATCH, anchor_matching=50.0, det_groups=3,
                                                                        denoising=2, lr=2e-3),
    "scratch, anchor matching 50, denoising 2, lr 3e-3, warmup 500": dict(SCRATCH, anchor_matching=50.0, denoising=2,
                                                                          lr=3e-3, warmup=500),
    "scratch, anchor matching 50, denoising 2, lr 2e-3, dense aux 1": dict(SCRATCH, anchor_matching=50.0, denoising=2,
                                                                           lr=2e-3, dense_aux=1.0),
    "scratch, anchor matching 50, lr 2e-3, dense aux 1": dict(SCRATCH, anchor_matching=50.0, lr=2e-3, dense_aux=1.0),
    "scratch, anchor matching 50, lr 2e-3, dense aux 2": dict(SCRATCH, anchor_matching=50.0, lr=2e-3, dense_aux=2.0),
    # the recipe with 3 groups: timed per step on a GPU by benchmarks/gpu_check.py, where extra tokens cost little
    "scratch, anchor matching 50, 3 groups, lr 2e-3, dense aux 1": dict(SCRATCH, anchor_matching=50.0, det_groups=3,
                                                                        lr=2e-3, dense_aux=1.0),
    "scratch, lr 2e-3, dense aux 1 (no anchor matching)": dict(SCRATCH, lr=2e-3, dense_aux=1.0),
    # the recipe without DETR's gradient clip at 0.1 (which every step of a fine-tune hits)
    "scratch, anchor matching 50, lr 2e-3, dense aux 1, no clip": dict(SCRATCH, anchor_matching=50.0, lr=2e-3,
                                                                       dense_aux=1.0, clip=0.0),
    "scratch, anchor matching 50, denoising 2, IoU^0.25 class loss": dict(SCRATCH, anchor_matching=50.0, denoising=2,
                                                                          class_loss="iou", iou_power=0.25),
    "scratch, anchor matching 50, denoising 2, IoU^0.5 class loss": dict(SCRATCH, anchor_matching=50.0, denoising=2,
                                                                         class_loss="iou", iou_power=0.5),
}


def held_out_set(folder: Path, num_images: int) -> DetectionDataset:
    """The evaluation images: ``num_images`` of the task from :data:`VAL_SEED`, written to
    ``folder`` (the same set for every run and for benchmarks/train_synthetic.py)."""
    ann = write_synthetic_dataset(folder, num_images, SPEC.image_size, SPEC.min_objects, SPEC.max_objects,
                                  SPEC.shapes, VAL_SEED, SPEC.min_size, SPEC.max_size)
    return DetectionDataset(folder / "images", ann)


def budget_lr(base: float, seconds: float, budget: float, step: int, warmup: int) -> float:
    """Linear warmup over ``warmup`` steps, then a cosine from ``base`` to 0 over ``budget``
    seconds of training: the schedule of every run here and of both benchmark contenders."""
    lr = base * 0.5 * (1 + math.cos(math.pi * min(seconds / budget, 1.0)))
    return lr * min(1.0, (step + 1) / warmup) if warmup else lr


def build_model(run: dict, seed: int):
    torch.manual_seed(seed)
    model = create_model(
        "micro", patch_size=run["patch"], hidden_size=run["width"], depth=run["depth"],
        mlp_dim=4 * run["width"], num_heads=4, num_det_tokens=run["det_tokens"],
        num_classes=len(SPEC.shapes), class_names=dict(enumerate(SPEC.shapes)),
    )
    if run["scratch_init"]:
        init_scratch_weights(model)
    if run["class_prior"] or run["box_prior"]:
        saved = {k: v.clone() for k, v in model.state_dict().items()}
        init_head_priors(model, objects_per_image=(SPEC.min_objects + SPEC.max_objects) / 2 * 0.9,
                         box_size=BOX_PRIOR)
        if not run["class_prior"]:
            model.class_head.load_state_dict({k[len("class_head."):]: v for k, v in saved.items()
                                              if k.startswith("class_head.")})
        if not run["box_prior"]:
            model.box_head.load_state_dict({k[len("box_head."):]: v for k, v in saved.items()
                                            if k.startswith("box_head.")})
    if run["anchors"]:
        sample = SyntheticShapes(SPEC, 32, seed=seed + 1)
        init_box_anchors(model, collate_fn([sample[i] for i in range(32)])[0], BOX_PRIOR)
    return model


def batches(run: dict, seed: int):
    """Endless training batches: fresh images (seeded by step) or a fixed set, reshuffled."""
    data = SyntheticShapes(SPEC, num_images=run["fixed_images"] or MAX_NUM_IMAGES, seed=seed,
                           fresh=not run["fixed_images"])
    loader = torch.utils.data.DataLoader(
        data, batch_size=run["batch"], collate_fn=collate_fn, num_workers=0,
        sampler=torch.utils.data.RandomSampler(data, replacement=not run["fixed_images"],
                                               num_samples=10**8,
                                               generator=torch.Generator().manual_seed(seed)),
    )
    yield from loader


def patch_labels(targets: list[dict], grid: int, num_classes: int) -> torch.Tensor:
    """``[B, grid*grid]`` class of the box covering each patch centre (``num_classes`` = none):
    the dense classification task of the pretraining lever."""
    centres = (torch.arange(grid) + 0.5) / grid
    out = torch.full((len(targets), grid, grid), num_classes, dtype=torch.long)
    for b, t in enumerate(targets):
        for (cx, cy, w, h), label in zip(t["boxes"].tolist(), t["labels"].tolist()):
            xs = (centres >= cx - w / 2) & (centres <= cx + w / 2)
            ys = (centres >= cy - h / 2) & (centres <= cy + h / 2)
            out[b][ys[:, None] & xs[None, :]] = label
    return out.flatten(1)


def run_parts(run: dict, seed: int):
    """``(model, criterion, pretrain_head, extra, optimizer, params)`` of one run: the model in
    training mode, the training-only parts it asks for (None where off), and every trained
    parameter (for the gradient clip)."""
    model = build_model(run, seed).train()
    k = model.config.num_classes
    matcher = HungarianMatcher(cost_class=1, cost_bbox=5, cost_giou=2, cost_anchor=run.get("anchor_matching", 0.0))
    criterion = SetCriterion(k, matcher, eos_coef=0.1, class_loss=run.get("class_loss", "ce"),
                             iou_power=run.get("iou_power", 1.0))
    pretrain_head = torch.nn.Linear(run["width"], k + 1) if run["pretrain"] else None
    extra = extra_tokens_for(SimpleNamespace(det_groups=run.get("det_groups", 1), denoising=run.get("denoising", 0),
                                             dense_aux=run.get("dense_aux", 0.0)), model.config)  # issue 29
    added = [m for m in (pretrain_head, extra) if m is not None]
    params = list(model.parameters()) + [p for m in added for p in m.parameters()]
    optimizer = build_optimizer(model, lr=run["lr"], weight_decay=1e-4)
    for m in added:
        optimizer.add_param_group({"params": list(m.parameters()), "weight_decay": 0.0})
    return model, criterion, pretrain_head, extra, optimizer, params


def clip(params, run: dict) -> None:
    """DETR's gradient clip (max norm 0.1), or the run's ``clip`` (0: none)."""
    max_norm = run.get("clip", 0.1)
    if max_norm:
        torch.nn.utils.clip_grad_norm_(params, max_norm)


def one_step(run: dict, seed: int, bf16: bool, device: torch.device | str = "cpu"):
    """A call that takes one training step of ``run`` (the detection loss under bf16 autocast or
    in fp32, backward, clip, AdamW) on its first batch, rendered once, on ``device``: what
    :func:`step_costs` and the GPU check's accelerators part time."""
    device = torch.device(device)
    model, criterion, _, extra, optimizer, params = run_parts(run, seed)
    model.to(device)
    if extra is not None:
        extra.to(device)
    x, targets = next(batches(run, seed))
    x = x.to(device)
    targets = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = detection_loss(model, criterion, extra, x, targets, (seed, 0))
        loss = loss[0] if isinstance(loss, tuple) else loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip(params, run)
        optimizer.step()
    return step


def step_costs(names: list[str], seed: int, repeats: int, bf16: bool) -> str:
    """Median seconds of one training step (the detection loss, backward, clip, AdamW; the
    batch rendered once, so rendering is left out) of each run in ``names``, alternating
    between them in this process: the cost of each lever per step, free of the load that
    changes over a long run. A Markdown table, the ratios to the first run."""
    times = time_alternating({name: one_step(RUNS[name], seed, bf16) for name in names}, repeats=repeats, warmup=2)
    first = times[names[0]]
    return table([[n, f"{t:.3f}", f"{t / first:.2f}x"] for n, t in times.items()], ["run", "s / step", "ratio"])


def train_run(name: str, run: dict, val, budget: float, eval_every: float, seed: int, log,
              save: str | None = None, by_steps: bool = False, bf16: bool = True,
              stop_at: float | None = None) -> dict:
    """One run of ``budget`` seconds of training (``by_steps``: optimizer steps), evaluated every
    ``eval_every`` of the same unit; the schedule and the run's phases follow the same clock.
    ``bf16``: training and evaluation under bf16 autocast (fp32 otherwise). ``stop_at``: end
    the run at the first evaluation with held-out AP50 >= it (the schedule stays the budget's)."""
    model, criterion, pretrain_head, extra, optimizer, params = run_parts(run, seed)
    k = model.config.num_classes
    pretrain_until = run["pretrain"] * budget

    curve, train_time, step, next_eval = [], 0.0, 0, eval_every
    warm_data = batches(dict(run, fixed_images=run["curriculum_images"]), seed) if run["curriculum_images"] else None
    tail_loss, tail_n = 0.0, 0  # the model's detection loss over the last 10% of the budget
    data = batches(run, seed)
    clock = (lambda: step) if by_steps else (lambda: train_time)
    while clock() < budget:
        t0 = time.perf_counter()  # rendering counts: it is part of every run's training time
        now = clock()
        warm_until = run["curriculum_until"] * budget
        in_warmup_set = warm_data is not None and (
            train_time < run["curriculum_seconds"] if run.get("curriculum_seconds") else now < warm_until)
        x, targets = next(warm_data if in_warmup_set else data)
        phase_budget = pretrain_until if now < pretrain_until else budget - pretrain_until
        phase_t = now if now < pretrain_until else now - pretrain_until
        lr = budget_lr(run["lr"], phase_t, phase_budget, step, run["warmup"])
        for g in optimizer.param_groups:
            g["lr"] = lr
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if now < pretrain_until:  # dense patch classification on the ViT
                grid = x.shape[-1] // run["patch"]
                logits = pretrain_head(patch_features(model, x).float())
                loss = model_loss = torch.nn.functional.cross_entropy(
                    logits.flatten(0, 1), patch_labels(targets, grid, k).flatten())
            else:
                k_match = run["one_to_many"] if now < run["one_to_many_until"] * budget else 1
                if k_match > 1:
                    targets = [repeat_targets(t, k_match, run["det_tokens"]) for t in targets]
                loss = model_loss = detection_loss(model, criterion, extra, x, targets, (seed, step))
                if isinstance(loss, tuple):
                    loss, model_loss = loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip(params, run)
        optimizer.step()
        train_time += time.perf_counter() - t0
        step += 1
        if clock() >= 0.9 * budget and clock() >= pretrain_until:
            tail_loss, tail_n = tail_loss + float(model_loss.detach()), tail_n + 1
        if not math.isfinite(float(loss.detach())):
            log(f"  {name}: non-finite loss at step {step}")
            break
        if clock() >= next_eval or clock() >= budget:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                stats, _ = evaluate(model, val, batch_size=64, progress=False)
            curve.append((round(train_time, 1), step, round(stats["AP"], 4), round(stats["AP50"], 4)))
            log(f"  {name:38s} {train_time:6.0f} s  step {step:6d}  loss {float(model_loss.detach()):.3f}  "
                f"AP {stats['AP']:.4f}  AP50 {stats['AP50']:.4f}")
            next_eval += eval_every
            if stop_at is not None and stats["AP50"] >= stop_at:
                break
    if save:
        model.save(save)
    return {"name": name, "run": run, "seed": seed, "precision": "bf16" if bf16 else "fp32", "curve": curve,
            "steps": step,
            "budget_s" if not by_steps else "budget_steps": budget, "seconds": round(train_time, 1),
            "final_loss": tail_loss / max(tail_n, 1) if tail_n else None,
            **({"note": f"stopped at AP50 >= {stop_at:g}"} if stop_at is not None and clock() < budget else {})}


def detection_loss(model, criterion, extra, x, targets, step_seed):
    """The set loss of one batch; with training-only tokens ``(the total, the model's own)``."""
    if extra is None:
        out = model(x)
        return criterion({k: v.float() for k, v in out.items()}, targets)["loss"]
    batch = extra.prepare(model, x, targets, torch.Generator().manual_seed(hash(step_seed) % 2**63))
    out = {k: v.float() for k, v in model(x, **batch.model_inputs()).items()}
    own = criterion(out, targets)
    normalizers = criterion.normalizers(targets, out["logits"].shape[1], "cpu")
    normalizers.update(extra.normalizers([(x, targets)], model.config.patch_size, criterion.eos_coef, "cpu"))
    more = extra.losses(out, targets, batch, criterion, normalizers)
    return own["loss"] + sum(more.values()), own["loss"]


def time_to(curve, key_index: int, target: float):
    """(seconds, steps) when ``curve[i][key_index]`` first reaches ``target`` (interpolated)."""
    prev = (0.0, 0, 0.0, 0.0)
    for point in curve:
        if point[key_index] >= target:
            v0, v1 = prev[key_index], point[key_index]
            f = 1.0 if v1 == v0 else (target - v0) / (v1 - v0)
            return prev[0] + f * (point[0] - prev[0]), round(prev[1] + f * (point[1] - prev[1]))
        prev = point
    return None


def summary_table(results: list[dict], targets: tuple[float, ...] = (0.5,)) -> str:
    """One row per run: seconds and steps to each AP50 in ``targets`` ("never" when the run did not
    get there), the final AP / AP50, the loss over the last 10% and the budget ("-" and "never"
    for a run stopped by hand before the end of its budget, whose row says so in ``note``)."""
    rows = []
    for r in results:
        hits = [time_to(r["curve"], 3, t) for t in targets]
        ap, ap50 = (r["curve"][-1][2], r["curve"][-1][3]) if r["curve"] else (float("nan"),) * 2
        name = r["name"] + (", fp32" if r.get("precision") == "fp32" else "") + (
            f", seed {r['seed']}" if "seed" in r else "")
        rows.append([name, *("never" if hit is None else f"{hit[0]:.0f} s / {hit[1]} steps" for hit in hits),
                     f"{ap:.4f}", f"{ap50:.4f}", "-" if r["final_loss"] is None else f"{r['final_loss']:.3f}",
                     str(r["steps"]),
                     f"{r['budget_s']:.0f} s" if "budget_s" in r else f"{r['budget_steps']:.0f} steps "
                     f"({r['seconds']:.0f} s)"])
    return table(rows, ["run", *(f"to AP50 {t:g}" for t in targets), "final AP", "final AP50", "loss, last 10%",
                        "steps", "budget"])


def plot_curves(results: list[dict], path: str) -> None:
    """Held-out AP against steps and against training seconds, one colour per run, one line
    style per seed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    names = list(dict.fromkeys(r["name"] for r in results))
    for r in results:
        colour, style = f"C{names.index(r['name'])}", ["-", "--", ":", "-."][r.get("seed", 0) % 4]
        seconds, steps, ap = zip(*[(c[0], c[1], c[2]) for c in r["curve"]]) if r["curve"] else ((), (), ())
        label = r["name"] + (f" (seed {r['seed']})" if "seed" in r else "")  # older rows name their seed
        axes[0].plot(steps, ap, style, color=colour, marker=".", label=label)
        axes[1].plot(seconds, ap, style, color=colour, marker=".")
    for ax, unit in zip(axes, ("optimizer steps", "training seconds")):
        ax.set_xlabel(unit)
        ax.set_ylabel("held-out AP")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="+", default=list(RUNS), help=f"any of: {' | '.join(RUNS)}".replace("%", "%%"))
    p.add_argument("--budget-seconds", type=float, default=240.0, help="training time per run")
    p.add_argument("--budget-steps", type=int, default=None, help="optimizer steps per run instead of a time")
    p.add_argument("--eval-every", type=float, default=None,
                   help="seconds of training, or steps with --budget-steps (default: an eighth of the budget)")
    p.add_argument("--val-images", type=int, default=300)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16",
                   help="bf16 autocast (the study's rows), or fp32 where the CPU has no bf16 units (AVX2 only)")
    p.add_argument("--stop-at", type=float, default=None, metavar="AP50",
                   help="end each run at its first evaluation with held-out AP50 >= this (for wall-clock figures; "
                        "the learning-rate schedule stays that of the whole budget)")
    p.add_argument("--step-cost", type=int, default=None, metavar="REPEATS",
                   help="instead of training: the median seconds of one step of each of --runs, alternating")
    p.add_argument("--out", default=None, help="append one JSON line per run here")
    p.add_argument("--save-model", default=None, help="write the (last) run's final model here (.safetensors)")
    p.add_argument("--table", nargs="+", default=None,
                   help="print only the table of the runs in these JSON-lines files (in order)")
    p.add_argument("--plot", default=None, help="with --table: also draw their curves into this PNG")
    p.add_argument("--targets", nargs="+", type=float, default=[0.5],
                   help="the table's columns: seconds and steps to each of these held-out AP50s")
    args = p.parse_args(argv)
    if args.table:
        saved = [json.loads(ln) for f in args.table for ln in Path(f).read_text().splitlines() if ln.strip()]
        print(summary_table(saved, tuple(args.targets)))
        if args.plot:
            plot_curves(saved, args.plot)
        return 0
    unknown = [r for r in args.runs if r not in RUNS]
    if unknown:
        p.error(f"--runs: unknown {unknown}; known: {list(RUNS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(environment(), flush=True)
    if args.step_cost:
        print(step_costs(args.runs, args.seed, args.step_cost, args.precision == "bf16"))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="yolos-study-"))
    val = held_out_set(tmp / "val", args.val_images)
    by_steps = args.budget_steps is not None
    budget, unit = (args.budget_steps, "steps") if by_steps else (args.budget_seconds, "s")
    eval_every = args.eval_every or budget / 8
    print(f"budget {budget:.0f} {unit} of training per run, evaluation on {len(val)} held-out "
          f"images every {eval_every:.0f} {unit}, {torch.get_num_threads()} threads, "
          f"{'bf16 autocast' if args.precision == 'bf16' else 'fp32'}", flush=True)
    results = []
    for name in args.runs:
        result = train_run(name, RUNS[name], val, budget, eval_every, args.seed,
                           lambda m: print(m, flush=True), save=args.save_model, by_steps=by_steps,
                           bf16=args.precision == "bf16", stop_at=args.stop_at)
        results.append(result)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(result) + "\n")
    print()
    print(summary_table(results, tuple(args.targets)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
