"""Wall-clock time to a working detector: yolos against transformers' YolosForObjectDetection.

Both train the same small YOLOS shape from random weights on the same task, each starting from the
recipe its users get when they train from scratch: ours from ``yolos train --recipe scratch``
(``yolos.train.recipe``: scratch init, anchors, head priors, anchor matching 50 added to the
matcher's costs, the recipe's training-only denoising tokens), transformers' from
``YolosForObjectDetection(config)`` (its ``_init_weights``) with its own loss (``labels=...``).
Everything else is the same regime for both: the task (128x128 images with 1-8 shapes of 12-64 px,
rendered fresh for every step, the same batches for both), batch, AdamW with the same parameter
groups, learning rate with linear warmup and a cosine to zero over the budget, gradient clipping
0.1, bf16 autocast, the matcher costs (1/5/2), loss weights (1/5/2) and no-object weight 0.1.

Both run in one process: training alternates in slices of a few seconds, each on its own clock
(rendering the batch included, evaluation excluded), so load from elsewhere hits both alike. Both
are evaluated by the same code (COCO AP by faster-coco-eval over all [DET] predictions) on the
same held-out images every ``--eval-every`` seconds of their own training. Printed: time and
steps to AP50 0.5, the final AP of each, and the time each needs to reach the other's final AP.

    python -m benchmarks.train_synthetic --budget-minutes 10
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from benchmarks.common import environment
from benchmarks.convergence_study import SPEC, budget_lr, detection_loss, held_out_set, time_to
from yolos import create_model
from yolos.data.collate import collate_fn
from yolos.data.synthetic import MAX_NUM_IMAGES, SyntheticShapes
from yolos.evaluation.evaluate import evaluate
from yolos.train.config import RECIPES
from yolos.train.criterion import SetCriterion
from yolos.train.extra_tokens import ExtraTokens
from yolos.train.matcher import HungarianMatcher
from yolos.train.optim import build_optimizer
from yolos.train.recipe import prepare_scratch_model

WD, CLIP = 1e-4, 0.1


class Contender:
    """One model with its own optimizer, loss and training clock."""

    def __init__(self, name: str, model, step_fn, eval_model):
        self.name, self.model, self.step_fn, self.eval_model = name, model, step_fn, eval_model
        self.train_time, self.steps, self.next_eval = 0.0, 0, 0.0
        self.curve: list[tuple[float, int, float, float]] = []  # (seconds, steps, AP, AP50)
        self.tail_loss, self.tail_n = 0.0, 0  # training loss over the last 10% of the budget


class HFOutputs(torch.nn.Module):
    """transformers' model behind our evaluation code's contract (logits/pred_boxes dict)."""

    def __init__(self, model, num_classes: int):
        super().__init__()
        self.model = model
        self.config = SimpleNamespace(num_classes=num_classes)

    def forward(self, pixel_values):
        out = self.model(pixel_values=pixel_values)
        return {"logits": out.logits, "pred_boxes": out.pred_boxes}


def hf_param_groups(model):
    """Our grouping (yolos.train.optim.param_groups) on transformers' names."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        skip = p.ndim <= 1 or name.endswith(".bias") or any(
            k in name for k in ("cls_token", "detection_tokens", "position_embeddings"))
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}]


def make_step(model, optimizer, loss_fn, params, schedule):
    def step(contender, x, targets):
        for g in optimizer.param_groups:
            g["lr"] = schedule(contender)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = loss_fn(x, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        optimizer.step()
        return float(loss.detach())
    return step


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget-minutes", type=float, default=10.0, help="training time per contender")
    p.add_argument("--eval-every", type=float, default=None, help="seconds of training (default budget/10)")
    p.add_argument("--slice-seconds", type=float, default=5.0)
    p.add_argument("--val-images", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--det-tokens", type=int, default=36)
    p.add_argument("--patch-size", type=int, default=None, help="default: the scratch recipe's")
    p.add_argument("--lr", type=float, default=None, help="default: the scratch recipe's")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the curves here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = RECIPES["scratch"]
    patch = args.patch_size or recipe["patch_size"]
    lr, warmup = args.lr or recipe["lr"], recipe["warmup_steps"]
    budget = args.budget_minutes * 60
    eval_every = args.eval_every or budget / 10
    print(environment(), flush=True)

    from transformers import YolosConfig, YolosForObjectDetection

    tmp = Path(tempfile.mkdtemp(prefix="yolos-bench-"))
    val = held_out_set(tmp / "val", args.val_images)
    k = len(SPEC.shapes)
    train = SyntheticShapes(SPEC, MAX_NUM_IMAGES, seed=args.seed)

    torch.manual_seed(args.seed)
    ours = create_model("micro", patch_size=patch, num_det_tokens=args.det_tokens, num_classes=k,
                        class_names=dict(enumerate(SPEC.shapes)))
    print("yolos: " + prepare_scratch_model(ours, train, scratch_init=recipe["scratch_init"],
                                            anchors=recipe["anchors"], head_priors=recipe["head_priors"]))
    c = ours.config
    theirs = YolosForObjectDetection(YolosConfig(
        hidden_size=c.hidden_size, num_hidden_layers=c.depth, num_attention_heads=c.num_heads,
        intermediate_size=c.mlp_dim, image_size=list(c.image_size), patch_size=patch,
        num_detection_tokens=args.det_tokens, use_mid_position_embeddings=False, num_labels=k,
        auxiliary_loss=False, attn_implementation="sdpa"))
    ours.train()
    theirs.train()

    def schedule(contender):
        return budget_lr(lr, contender.train_time, budget, contender.steps, warmup)

    matcher = HungarianMatcher(cost_class=1, cost_bbox=5, cost_giou=2, cost_anchor=recipe["anchor_matching"])
    criterion = SetCriterion(k, matcher, eos_coef=0.1)

    extra = None  # the recipe's training-only tokens (denoising sets), trained beside the model
    if recipe["det_groups"] > 1 or recipe["denoising"]:
        extra = ExtraTokens(ours.config, recipe["det_groups"], recipe["denoising"])
    extra_steps = itertools.count()

    def loss_ours(x, targets):
        loss = detection_loss(ours, criterion, extra, x, targets, (args.seed, next(extra_steps)))
        return loss[0] if isinstance(loss, tuple) else loss

    def loss_theirs(x, targets):
        labels = [{"class_labels": t["labels"], "boxes": t["boxes"]} for t in targets]
        return theirs(pixel_values=x, labels=labels).loss

    opt_ours = build_optimizer(ours, lr=lr, weight_decay=WD)
    ours_params = list(ours.parameters())
    if extra is not None:
        opt_ours.add_param_group({"params": list(extra.parameters()), "weight_decay": 0.0})
        ours_params += list(extra.parameters())
    opt_theirs = torch.optim.AdamW(hf_param_groups(theirs), lr=lr, betas=(0.9, 0.999), eps=1e-8, fused=True)
    contenders = [
        Contender("yolos", ours, make_step(ours, opt_ours, loss_ours, ours_params, schedule), ours),
        Contender("transformers", theirs,
                  make_step(theirs, opt_theirs, loss_theirs, list(theirs.parameters()), schedule),
                  HFOutputs(theirs, k)),
    ]

    def batch(step: int):  # the same batches for both: items step*B .. step*B+B-1
        return collate_fn([train[i] for i in range(step * args.batch_size, (step + 1) * args.batch_size)])

    def evaluate_now(cont: Contender) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            stats, _ = evaluate(cont.eval_model, val, batch_size=64, progress=False)
        cont.curve.append((round(cont.train_time, 1), cont.steps, stats["AP"], stats["AP50"]))
        print(f"  {cont.name:12s} {cont.train_time:7.1f} s  step {cont.steps:6d}  "
              f"AP {stats['AP']:.4f}  AP50 {stats['AP50']:.4f}", flush=True)
        cont.eval_model.train()
        cont.next_eval += eval_every

    print(f"task: {SPEC}; {len(val)} held-out images; patch {patch}, {args.det_tokens} [DET], batch "
          f"{args.batch_size}, lr {lr:g} (warmup {warmup} steps, cosine over the budget), bf16; "
          f"budget {budget:.0f} s each, evaluation every {eval_every:.0f} s", flush=True)
    for cont in contenders:
        cont.next_eval = eval_every
    while any(cont.train_time < budget for cont in contenders):
        for cont in contenders:
            end = min(cont.train_time + args.slice_seconds, budget)
            while cont.train_time < end:
                t0 = time.perf_counter()
                x, targets = batch(cont.steps)
                value = cont.step_fn(cont, x, targets)
                cont.train_time += time.perf_counter() - t0
                cont.steps += 1
                if not math.isfinite(value):
                    raise RuntimeError(f"{cont.name}: non-finite loss at step {cont.steps}")
                if cont.train_time >= 0.9 * budget:
                    cont.tail_loss, cont.tail_n = cont.tail_loss + value, cont.tail_n + 1
                if cont.train_time >= cont.next_eval or cont.train_time >= budget:
                    evaluate_now(cont)

    print()
    ours_c, theirs_c = contenders
    for cont in contenders:
        t, steps, ap, ap50 = cont.curve[-1]
        hit = time_to(cont.curve, 3, 0.5)
        hit_s = "never" if hit is None else f"{hit[0]:.0f} s ({hit[1]} steps)"
        print(f"{cont.name:12s} final AP {ap:.4f}  AP50 {ap50:.4f}  after {steps} steps "
              f"({steps / t:.2f} steps/s); training loss over the last 10% "
              f"{cont.tail_loss / max(cont.tail_n, 1):.3f}; AP50 0.5 reached at {hit_s}")
    rate = [c.steps / c.curve[-1][0] for c in (ours_c, theirs_c)]
    print(f"steps per second, yolos / transformers: {rate[0] / rate[1]:.2f}x")
    for target_owner in (theirs_c, ours_c):
        target = target_owner.curve[-1][2]
        times = [time_to(cont.curve, 2, target) for cont in contenders]
        text = ", ".join(f"{cont.name} {'never' if tt is None else f'{tt[0]:.0f} s'}"
                         for cont, tt in zip(contenders, times))
        ratio = (f"  -> yolos needs {times[0][0] / times[1][0]:.2f}x transformers' time"
                 if times[0] and times[1] and times[1][0] > 0 else "")
        print(f"time to {target_owner.name}'s final AP {target:.4f}: {text}{ratio}")
    if args.json:
        Path(args.json).write_text(json.dumps({cont.name: cont.curve for cont in contenders}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
