"""Fine-tuning a pretrained detector against training from random weights, on a new task.

The pretrained detector is a checkpoint the project trains itself (the hub is out of reach here):
by default the bundled model (squares, circles, triangles). The new task has new classes and a
new look, made with the generator: stars, crosses and rings, half of them drawn as outlines, on
the varied backgrounds (128 px images, 1-8 objects of 12-64 px), rendered fresh every epoch
(or, with ``--train-images N``, N of them written once as JPEG files and read as a user's dataset
is: on 2 cores a rendered batch costs 0.5-1x the model's step); the held-out set is written
once from another seed. Every contender is a real ``yolos train`` run
(``yolos.train.fit``) on the same data, one after the other, each with the same wall-clock budget
turned into epochs from a short timed calibration run:

* ``finetune``: ``--init CHECKPOINT --recipe finetune`` (new class rows at the data's prior,
  the checkpoint's anchor matching, lr 1e-3 with 50 warmup steps, an EMA of the weights
  evaluated, bf16 autocast where it is faster); ``finetune-no-ema``: the same with ``--no-ema``;
  ``finetune-denoising``: the same with ``--denoising 2`` (training-only denoising tokens);
  ``finetune-dense``: the same with ``--dense-aux 1`` (the training-only dense head);
  ``finetune-layer-decay``: the same with ``--layer-decay 0.75`` (layer-wise lr decay);
  ``finetune-class-weight``: the same with ``--class-loss-weight 2`` (the class term doubled);
  ``finetune-class-weight-eos1``: that and ``--eos-coef 1`` (the no-object weight the bundled
  model finished its training with, against DETR's 0.1); ``finetune-class-weight-no-anchors``:
  that with ``--anchor-matching 0`` (Hungarian matching on the predictions alone);
  ``finetune-class-weight-augment``: that with the augmentation ``yolos train`` has by default
  (flips and hustvl/YOLOS's crops; every other contender trains on the images as they are);
  ``finetune-class-weight-no-clip``: that without gradient clipping (``--clip-max-norm 0``);
  ``finetune-bf16`` / ``finetune-fp32``: the same with bf16 autocast forced on / off (the recipe
  times one step each way and keeps the faster);
* ``paper``: ``--init CHECKPOINT --recipe paper`` (the original recipe a user tries first);
* ``scratch``: ``--recipe scratch`` from random weights (36 [DET] tokens, as the bundled model).

Each run evaluates on the held-out set after every epoch (``--epoch-steps`` optimizer steps).
Printed: steps and training seconds (evaluation excluded) to held-out AP50 0.9, the final AP and
AP50, and the ratio of the fine-tuning time to the scratch time.

    python -m benchmarks.finetune --budget-minutes 10
    python -m benchmarks.finetune --budget-minutes 10 --contenders finetune scratch --json docs/finetune_curves.json
    python -m benchmarks.finetune --budget-minutes 10 --contenders finetune --lr 1e-3   # another learning rate
    python -m benchmarks.finetune --contenders finetune finetune-no-ema --json docs/finetune_ema.json
    python -m benchmarks.finetune --contenders finetune finetune-denoising --epochs 16 --epoch-steps 150 --seed 1
    python -m benchmarks.finetune --contenders finetune-bf16 finetune-fp32 --epochs 10   # autocast's cost
    python -m benchmarks.finetune --contenders finetune --train-images 4800   # a fixed set of files
    # AP50 0.9 within 4 minutes on 2 cores? (docs/training.md, "Fine-tuning at batch 16" and the sections after it)
    python -m benchmarks.finetune --contenders finetune-class-weight-no-clip --lr 2e-3 --batch 16 --epochs 5 \\
        --train-images 10400 --cache
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import environment
from yolos.data.synthetic import write_synthetic_dataset
from yolos.defaults import DEFAULT_MODEL
from yolos.train.config import TrainConfig
from yolos.train.loop import fit

TASK = dict(image_size=128, min_objects=1, max_objects=8, min_size=12, max_size=64, shapes=["star", "cross", "ring"],
            look="varied", outline=0.5)
CONTENDERS = {
    "finetune": dict(recipe="finetune", init=True),
    "finetune-no-ema": dict(recipe="finetune", init=True, ema=False),
    "finetune-denoising": dict(recipe="finetune", init=True, denoising=2),
    "finetune-dense": dict(recipe="finetune", init=True, dense_aux=1.0),
    "finetune-layer-decay": dict(recipe="finetune", init=True, layer_decay=0.75),
    "finetune-class-weight": dict(recipe="finetune", init=True, class_loss_weight=2.0),
    # and the no-object class weighted 1 instead of DETR's 0.1: the bundled model's last 10 epochs
    "finetune-class-weight-eos1": dict(recipe="finetune", init=True, class_loss_weight=2.0, eos_coef=1.0),
    # and plain Hungarian matching instead of the checkpoint's anchor matching (the bundled model's 10)
    "finetune-class-weight-no-anchors": dict(recipe="finetune", init=True, class_loss_weight=2.0, anchor_matching=0.0),
    # and the augmentation a user's run has by default (flips, hustvl/YOLOS's crops), as on the goal's files
    "finetune-class-weight-augment": dict(recipe="finetune", init=True, class_loss_weight=2.0, augment=True),
    # and no gradient clipping (DETR's 0.1 clips every step of this fine-tune: norms are 8-18)
    "finetune-class-weight-no-clip": dict(recipe="finetune", init=True, class_loss_weight=2.0, clip_max_norm=0.0),
    "finetune-16-tokens": dict(recipe="finetune", init=True, num_det_tokens=16),  # of the bundled model's 36
    "finetune-bf16": dict(recipe="finetune", init=True, bf16=True),
    "finetune-fp32": dict(recipe="finetune", init=True, bf16=False),
    "paper": dict(recipe="paper", init=True),
    "scratch": dict(recipe="scratch", init=False, num_det_tokens=36),
}
TARGET_AP50 = 0.9


def _write_split(folder: Path, images: int, seed: int) -> None:
    write_synthetic_dataset(folder, images, TASK["image_size"], TASK["min_objects"], TASK["max_objects"],
                            TASK["shapes"], seed=seed, min_size=TASK["min_size"], max_size=TASK["max_size"],
                            look=TASK["look"], outline=TASK["outline"])


def write_task(root: Path, val_images: int, batch: int, epoch_steps: int, train_images: int = 0) -> Path:
    """The task's data.yaml under ``root``: the held-out set written once (seed 2024); training
    images rendered fresh every epoch (``batch * epoch_steps`` of them, seed 11), or with
    ``train_images`` a fixed set written once as JPEG files (seed 12), read like a user's dataset."""
    _write_split(root / "val", val_images, seed=2024)
    if train_images:
        _write_split(root / "train", train_images, seed=12)
        train = "{images: train/images, annotations: train/annotations.json}"
    else:
        train = "\n  synthetic: " + json.dumps(dict(TASK, num_images=batch * epoch_steps, seed=11))
    (root / "data.yaml").write_text(f"train: {train}\n"
                                    f"val: {{images: val/images, annotations: val/annotations.json}}\n")
    return root / "data.yaml"


def config(name: str, data: Path, out: Path, init: str, epochs: int, batch: int,
           lr: float | None = None, seed: int = 1, freeze: int = 0, cache: bool = False) -> TrainConfig:
    c = CONTENDERS[name]
    return TrainConfig(data=str(data), out=str(out), model="micro", recipe=c["recipe"], lr=lr, ema=c.get("ema"),
                       init=init if c["init"] else None, num_det_tokens=c.get("num_det_tokens"), epochs=epochs,
                       batch_size=batch, augment=c.get("augment", False), train_sizes=[128], train_max_size=128,
                       eval_size=128, eval_max_size=128, workers=0, eval_every=1, progress=False, seed=seed,
                       denoising=c.get("denoising"), dense_aux=c.get("dense_aux"), bf16=c.get("bf16"),
                       layer_decay=c.get("layer_decay"), class_loss_weight=c.get("class_loss_weight", 1.0),
                       freeze=freeze if c["init"] else 0, eos_coef=c.get("eos_coef", TrainConfig.eos_coef),
                       anchor_matching=c.get("anchor_matching"), cache=cache,
                       clip_max_norm=c.get("clip_max_norm", TrainConfig.clip_max_norm))


def curve(out: Path) -> list[dict]:
    """Per epoch: cumulative steps and training seconds (``--cache``'s decoding counted in the
    first epoch's), held-out AP and AP50."""
    rows = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines() if ln.strip()]
    points, seconds = [], sum(r["time_s"] for r in rows if r["type"] == "cache")
    for r in (r for r in rows if r["type"] == "epoch"):
        seconds += r["train"]["time_s"]
        points.append({"steps": r["global_step"], "seconds": round(seconds, 1),
                       "AP": r["val"]["AP"], "AP50": r["val"]["AP50"]})
    return points


def _chosen_lines(name: str):
    """A log function that prints only the run's timed bf16 choice (the recipes' ``bf16`` "auto")
    and what ``--cache`` kept."""
    return lambda line, *a: print(f"{name}: {line}", flush=True) if str(line).startswith(
        ("bf16 autocast", "--cache")) else None


def run(name: str, data: Path, root: Path, init: str, budget_s: float, batch: int, epoch_steps: int,
        lr: float | None = None, seed: int = 1, epochs: int | None = None, freeze: int = 0,
        cache: bool = False) -> list[dict]:
    if epochs:  # the same steps for every contender
        return curve(Path(fit(config(name, data, root / name, init, epochs, batch, lr, seed, freeze, cache),
                              log=_chosen_lines(name))["out"]))
    calibration = fit(config(name, data, root / f"{name}-calibration", init, 1, batch, lr, seed, freeze, cache),
                      log=_chosen_lines(f"{name} (calibration)"))
    first = curve(Path(calibration["out"]))[0]
    rate = first["steps"] / first["seconds"]  # steps per training second
    epochs = max(1, math.floor(budget_s * rate / epoch_steps))
    print(f"{name}: {rate:.2f} steps/s in calibration -> {epochs} epochs of {epoch_steps} steps", flush=True)
    summary = fit(config(name, data, root / name, init, epochs, batch, lr, seed, freeze, cache),
                  log=_chosen_lines(name))
    return curve(Path(summary["out"]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--init", default=str(DEFAULT_MODEL), help="the pretrained detector (default: bundled)")
    ap.add_argument("--budget-minutes", type=float, default=10.0, help="training time of each contender")
    ap.add_argument("--contenders", nargs="+", choices=list(CONTENDERS), default=list(CONTENDERS))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epoch-steps", type=int, default=60,
                    help="optimizer steps between evaluations (with --train-images: a pass over them, N / --batch)")
    ap.add_argument("--val-images", type=int, default=300)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--json", default=None, help="write the curves here")
    ap.add_argument("--lr", type=float, default=None, help="learning rate for every contender (default: its recipe's)")
    ap.add_argument("--freeze", type=int, default=0,
                    help="every fine-tuning contender keeps the embeddings and this many blocks frozen (--freeze)")
    ap.add_argument("--seed", type=int, default=1, help="the runs' seed (the data and held-out set stay the same)")
    ap.add_argument("--train-images", type=int, default=0,
                    help="train on this many images written once to disk (a user's fixed dataset) instead of "
                         "images rendered fresh every epoch")
    ap.add_argument("--cache", action="store_true",
                    help="with --train-images: decode them into memory before training (yolos train --cache; "
                         "its seconds count as training)")
    ap.add_argument("--epochs", type=int, default=None,
                    help="this many epochs of --epoch-steps for every contender instead of a time budget")
    args = ap.parse_args(argv)
    if args.train_images:  # an epoch is a pass over the files
        args.epoch_steps = args.train_images // args.batch
    torch.set_num_threads(args.threads)
    print(environment(), flush=True)
    budget = (f"{args.epochs} epochs of {args.epoch_steps} steps" if args.epochs
              else f"{args.budget_minutes:g} min of training")
    source = f"{args.train_images} training images on disk" if args.train_images else "rendered fresh every epoch"
    print(f"task: {TASK} ({source}); each contender: {budget}; pretrained: {args.init}", flush=True)
    curves = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = write_task(root, args.val_images, args.batch, args.epoch_steps, args.train_images)
        for name in args.contenders:
            t0 = time.perf_counter()
            curves[name] = run(name, data, root, args.init, args.budget_minutes * 60, args.batch, args.epoch_steps,
                               args.lr, args.seed, args.epochs, args.freeze, args.cache)
            print(f"{name}: done in {time.perf_counter() - t0:.0f} s wall (evaluations included)", flush=True)
    print(f"\n| run | steps | time to AP50 {TARGET_AP50} | final AP | final AP50 |\n|---|---|---|---|---|")
    reached = {}
    for name, points in curves.items():
        hit = next((p for p in points if p["AP50"] >= TARGET_AP50), None)
        reached[name] = hit["seconds"] if hit else None
        when = f"{hit['seconds']:.0f} s ({hit['steps']} steps)" if hit else f"not within {points[-1]['seconds']:.0f} s"
        last = points[-1]
        print(f"| {name} | {last['steps']} | {when} | {last['AP']:.3f} | {last['AP50']:.3f} |")
    if reached.get("finetune") and "scratch" in curves:
        scratch = reached["scratch"] or curves["scratch"][-1]["seconds"]
        bound = "" if reached["scratch"] else " at most (scratch never got there)"
        print(f"\nfine-tuning needs {reached['finetune'] / scratch:.2f}x the scratch recipe's time{bound}")
    if args.json:
        Path(args.json).write_text(json.dumps({"task": TASK, "train_images": args.train_images or "fresh",
                                               "budget_minutes": args.budget_minutes, "seed": args.seed,
                                               "epochs": args.epochs, "epoch_steps": args.epoch_steps,
                                               "batch": args.batch, "lr": args.lr, "init": args.init,
                                               "freeze": args.freeze, "cache": args.cache,
                                               "environment": environment(), "curves": curves}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
