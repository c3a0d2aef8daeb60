"""Training speed to a given AP: yolos vs transformers' YolosForObjectDetection, same budget.

Both train the micro shape (width 128, 4 layers, 4 heads, 10 [DET] tokens, 16 px patches) from
the *same initial weights* on the same seeded synthetic data (128x128 images with 1-3 squares,
one class), batch 32 in the same order, AdamW lr 3e-4 / wd 1e-4 (no decay on norms, biases and
token/position embeddings), gradient clipping 0.1, fp32, on CPU. Ours uses its own set loss
(``yolos.train.criterion``); transformers uses its own (``labels=...``), with the same matcher
costs (1/5/2), loss weights (1/5/2) and no-object weight 0.1.

Training alternates between the two in slices of a few seconds, each on its own training clock,
so load from other processes on the machine hits both alike. Each is evaluated (COCO AP by
faster-coco-eval, all 10 detections per image) every ``--eval-every`` seconds of its own
training time; the evaluation time is not counted. At the end the script prints both final APs
and the training time each needed to reach the other's final AP (linear interpolation between
evaluation points).

    python benchmarks/train_synthetic.py --budget-minutes 8
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from yolos.data.coco import CocoDetection
from yolos.data.synthetic import write_synthetic_dataset
from yolos.data.transforms import make_transforms
from yolos.evaluation.coco_eval import coco_evaluate
from yolos.model import create_model
from yolos.train.criterion import SetCriterion
from yolos.train.matcher import HungarianMatcher
from yolos.train.optim import build_optimizer

LR, WD, CLIP, BATCH, SIZE = 3e-4, 1e-4, 0.1, 32, 128


def load_split(folder: Path):
    """All images as one ``[N, 3, 128, 128]`` tensor plus targets (preloaded: the data pipeline
    is identical for both contenders and out of the measurement)."""
    ds = CocoDetection(folder / "images", folder / "annotations.json",
                       transforms=make_transforms("val", eval_size=(SIZE, SIZE)))
    images, targets = zip(*(ds[i] for i in range(len(ds))))
    return torch.stack(images), list(targets), ds


class Contender:
    """One model + optimizer + its own loss, with a private training clock."""

    def __init__(self, name, model, step_fn, outputs_fn):
        self.name, self.model, self.step_fn, self.outputs_fn = name, model, step_fn, outputs_fn
        self.train_time, self.steps, self.next_eval = 0.0, 0, 0.0
        self.curve: list[tuple[float, int, float, float]] = []  # (train seconds, steps, AP, AP50)
        # (train seconds, mean training loss since the previous evaluation): the same loss
        # definition for both (ours equals transformers' to 1e-5, tests/test_loss.py), and far
        # less noisy than AP while both are still on the early plateau.
        self.loss_curve: list[tuple[float, float]] = []
        self.loss_sum, self.loss_n = 0.0, 0


def hf_param_groups(model):
    """Our grouping (yolos.train.optim.param_groups) on transformers' names: no decay for 1-D
    tensors, biases and the cls/detection tokens and position embeddings."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        skip = p.ndim <= 1 or name.endswith(".bias") or any(
            k in name for k in ("cls_token", "detection_tokens", "position_embeddings"))
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def evaluate(contender: Contender, val_images, val_ds) -> tuple[float, float]:
    """COCO AP/AP50 on the val split: every [DET] prediction, threshold 0, same code for both."""
    model = contender.model
    model.eval()
    results = []
    for start in range(0, len(val_images), 50):  # one size, so batching adds no padding
        logits, boxes = contender.outputs_fn(model(val_images[start:start + 50]))
        prob = logits.float().softmax(-1)[..., :-1]
        scores, labels = prob.max(-1)
        cx, cy, w, h = (boxes.float() * SIZE).unbind(-1)
        xywh = torch.stack([cx - w / 2, cy - h / 2, w, h], -1)
        for i in range(len(scores)):
            image_id = val_ds.ids[start + i]
            orig_h, orig_w = val_ds.images[image_id]["height"], val_ds.images[image_id]["width"]
            scale = torch.tensor([orig_w, orig_h, orig_w, orig_h]) / SIZE
            for box, score, label in zip((xywh[i] * scale).tolist(), scores[i].tolist(), labels[i].tolist()):
                results.append({"image_id": image_id, "category_id": val_ds.label_to_category_id(label),
                                "bbox": box, "score": score})
    model.train()
    stats = coco_evaluate(val_ds.annotation_file, results, image_ids=val_ds.ids)
    return stats["AP"], stats["AP50"]


def time_to_reach(points, target: float, lower_is_better: bool = False) -> float | None:
    """Training seconds at which a ``[(seconds, value), ...]`` curve first reaches ``target``
    (linear interpolation between points; ``lower_is_better`` for losses)."""
    sign = -1.0 if lower_is_better else 1.0
    prev = None
    for t, v in points:
        if sign * v >= sign * target:
            if prev is None or sign * v <= sign * prev[1]:
                return t
            t0, v0 = prev
            return t0 + (t - t0) * (target - v0) / (v - v0)
        prev = (t, v)
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget-minutes", type=float, default=8.0, help="training time per contender")
    p.add_argument("--eval-every", type=float, default=None, help="seconds of training between evaluations")
    p.add_argument("--slice-seconds", type=float, default=5.0, help="alternation granularity")
    p.add_argument("--train-images", type=int, default=4000)
    p.add_argument("--val-images", type=int, default=200)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the curves here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    budget = args.budget_minutes * 60
    eval_every = args.eval_every or max(10.0, budget / 16)

    from transformers import YolosForObjectDetection

    tmp = Path(tempfile.mkdtemp(prefix="yolos-bench-"))
    print(f"data: {args.train_images} train / {args.val_images} val synthetic 128x128 images with 1-3 squares in {tmp}")
    write_synthetic_dataset(tmp / "train", args.train_images, SIZE, 1, 3, ("square",), args.seed)
    write_synthetic_dataset(tmp / "val", args.val_images, SIZE, 1, 3, ("square",), args.seed + 1)
    train_x, train_t, _ = load_split(tmp / "train")
    val_x, _, val_ds = load_split(tmp / "val")

    torch.manual_seed(args.seed)
    ours = create_model("micro", num_classes=1, class_names={0: "square"}).train()
    ours.save_pretrained(tmp / "init_hf")  # the same initial weights for transformers
    theirs = YolosForObjectDetection.from_pretrained(tmp / "init_hf", attn_implementation="sdpa").train()

    criterion = SetCriterion(1, HungarianMatcher(cost_class=1, cost_bbox=5, cost_giou=2), eos_coef=0.1)
    opt_ours = build_optimizer(ours, lr=LR, weight_decay=WD)
    # fused AdamW for both (our trainer uses it), so the comparison is model + loss only
    opt_theirs = torch.optim.AdamW(hf_param_groups(theirs), lr=LR, betas=(0.9, 0.999), eps=1e-8, fused=True)

    def step_ours(x, targets):
        loss = criterion(ours(x), targets)["loss"]
        opt_ours.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ours.parameters(), CLIP)
        opt_ours.step()
        return loss

    def step_theirs(x, targets):
        labels = [{"class_labels": t["labels"], "boxes": t["boxes"]} for t in targets]
        loss = theirs(pixel_values=x, labels=labels).loss
        opt_theirs.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), CLIP)
        opt_theirs.step()
        return loss

    contenders = [
        Contender("yolos", ours, step_ours, lambda o: (o["logits"], o["pred_boxes"])),
        Contender("transformers", theirs, step_theirs, lambda o: (o.logits, o.pred_boxes)),
    ]
    # The same batch sequence for both: a seeded permutation per epoch.
    n = len(train_x)
    steps_per_epoch = n // BATCH

    def batch(step: int):
        epoch, k = divmod(step, steps_per_epoch)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed * 1000 + epoch))
        idx = perm[k * BATCH:(k + 1) * BATCH]
        return train_x[idx], [train_t[i] for i in idx.tolist()]

    for c in contenders:  # AP at step 0 (same weights, so the same value)
        c.curve.append((0.0, 0, *evaluate(c, val_x, val_ds)))
        c.next_eval = eval_every
    print(f"budget {budget:.0f} s each, evaluation every {eval_every:.0f} s of training, "
          f"{torch.get_num_threads()} threads; initial AP {contenders[0].curve[0][2]:.4f}")
    while any(c.train_time < budget for c in contenders):
        for c in contenders:
            if c.train_time >= budget:
                continue
            slice_end = min(c.train_time + args.slice_seconds, budget)
            while c.train_time < slice_end:
                x, targets = batch(c.steps)
                t0 = time.perf_counter()
                loss = c.step_fn(x, targets)
                c.train_time += time.perf_counter() - t0
                c.steps += 1
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise RuntimeError(f"{c.name}: non-finite loss at step {c.steps}")
                c.loss_sum, c.loss_n = c.loss_sum + value, c.loss_n + 1
                if c.train_time >= c.next_eval or c.train_time >= budget:
                    ap, ap50 = evaluate(c, val_x, val_ds)
                    c.curve.append((c.train_time, c.steps, ap, ap50))
                    mean_loss = c.loss_sum / c.loss_n
                    c.loss_curve.append((c.train_time, mean_loss))
                    c.loss_sum, c.loss_n = 0.0, 0
                    c.next_eval += eval_every
                    print(f"  {c.name:12s} {c.train_time:7.1f} s  step {c.steps:5d}  loss {mean_loss:.4f}"
                          f"  AP {ap:.4f}  AP50 {ap50:.4f}", flush=True)

    a, b = contenders
    print()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    for c in contenders:
        t, steps, ap, ap50 = c.curve[-1]
        print(f"{c.name:12s} final AP {ap:.4f}  AP50 {ap50:.4f}  after {steps} steps "
              f"({steps / t:.2f} steps/s, {t:.0f} s of training)")
    fmt = lambda v: "never" if v is None else f"{v:.0f} s"  # noqa: E731
    ap_points = {c.name: [(t, ap) for t, _, ap, _ in c.curve] for c in contenders}
    for what, points, lower in (("AP", ap_points, False),
                                ("training loss", {c.name: c.loss_curve for c in contenders}, True)):
        for target_owner in (b, a):
            target = points[target_owner.name][-1][1]
            t_a = time_to_reach(points[a.name], target, lower)
            t_b = time_to_reach(points[b.name], target, lower)
            ratio = f"  -> yolos needs {t_a / t_b:.2f}x the time" if t_a and t_b else ""
            print(f"time to reach {target_owner.name}'s final {what} {target:.4f}: "
                  f"yolos {fmt(t_a)}, transformers {fmt(t_b)}{ratio}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {c.name: {"ap_curve": c.curve, "loss_curve": c.loss_curve} for c in contenders}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
