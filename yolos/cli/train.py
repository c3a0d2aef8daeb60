"""``yolos train``: fine-tune or train YOLOS on a COCO-format dataset (torchrun for several GPUs/processes)."""
from __future__ import annotations

import argparse

from . import options as opt


def _sizes(text: str) -> list[int]:
    parts = text.replace(",", " ").split()
    if not parts:
        raise argparse.ArgumentTypeError(f"expected sizes like '96,112,128', got {text!r}")
    return [opt.image_side(part) for part in parts]  # each 16..8192 pixels


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train / fine-tune on a COCO-format dataset",
        description="Train YOLOS (hustvl/YOLOS recipe: AdamW, wd 1e-4, per-epoch cosine, clip 0.1). "
        "Several processes: torchrun --nproc_per_node=N $(which yolos) train ...",
    )
    p.add_argument("--model", default="micro", help="variant to build (yolos-ti, yolos-s, yolos-b, micro, ...)")
    p.add_argument("--init", default=None,
                   help="start from a YOLOS checkpoint / hub id (new class head if the classes differ) "
                        "or a DeiT/ViT ImageNet checkpoint (backbone init)")
    p.add_argument("--init-kind", default="auto", choices=["auto", "yolos", "imagenet"])
    p.add_argument("--recipe", default="paper", choices=["paper", "scratch"],
                   help="paper: the original recipe (default; for fine-tuning from DeiT or YOLOS). "
                        "scratch: for random weights: lr 1e-3 with 100 warmup steps, the scratch init, "
                        "anchor boxes, heads at the data's priors, bf16 autocast, patch size 16 (see "
                        "docs/training.md). Options given explicitly win over the recipe's")
    p.add_argument("--data", required=True, help="dataset YAML or COCO folder")
    p.add_argument("--epochs", type=opt.positive_int, default=10)
    p.add_argument("--out", default="runs/train", help="run directory (logs, checkpoints)")
    p.add_argument("--batch-size", type=opt.positive_int, default=None,
                   help="per process (default: the variant's recipe)")
    p.add_argument("--lr", type=opt.positive_float, default=None, help="default: the variant's recipe")
    p.add_argument("--min-lr", type=opt.non_negative_float, default=1e-7)
    p.add_argument("--weight-decay", type=opt.non_negative_float, default=1e-4)
    p.add_argument("--clip-max-norm", type=opt.non_negative_float, default=0.1, help="0: no clipping")
    p.add_argument("--warmup-epochs", type=opt.non_negative_int, default=0)
    p.add_argument("--warmup-steps", type=opt.non_negative_int, default=None,
                   help="linear warmup over N optimizer steps (default: the recipe's; paper 0)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bfloat16 autocast (loss and matching stay fp32; default: the recipe's, paper off)")
    p.add_argument("--grad-checkpointing", action="store_true", help="recompute blocks in backward (saves memory)")
    p.add_argument("--detach-det-tokens", action="store_true",
                   help="keep the [DET] tokens at their random init (paper, Table 7)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--workers", type=opt.non_negative_int, default=2)
    p.add_argument("--seed", type=opt.non_negative_int, default=42)
    p.add_argument("--save-every-steps", type=opt.non_negative_int, default=0,
                   help="also write the training state every N steps")
    p.add_argument("--log-every-steps", type=opt.non_negative_int, default=0)
    p.add_argument("--eval-every", type=opt.non_negative_int, default=1, help="epochs between evaluations (0: never)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its state.pt")
    p.add_argument("--train-sizes", type=_sizes, default=None,
                   help="training short sides, e.g. '96,112,128' (default: the variant's scales)")
    p.add_argument("--train-max-size", type=opt.image_side, default=None)
    p.add_argument("--eval-size", type=opt.image_side, default=None, help="evaluation short side")
    p.add_argument("--eval-max-size", type=opt.image_side, default=None)
    p.add_argument("--no-augment", action="store_true", help="no flips/crops; resize to the largest train size")
    p.add_argument("--num-det-tokens", type=opt.positive_int, default=None, help="from scratch only")
    p.add_argument("--patch-size", type=opt.positive_int, default=None,
                   help="from scratch only (default: the recipe's, else the variant's)")
    p.add_argument("--head-priors", action=argparse.BooleanOptionalAction, default=None,
                   help="from scratch: start the class and box heads at the training data's priors "
                        "(default: the recipe's)")
    p.add_argument("--scratch-init", action=argparse.BooleanOptionalAction, default=None,
                   help="from scratch: every block starts as a local pooling (a Fourier position code, "
                        "query = key projection), each [DET] token at its anchor (default: the recipe's)")
    p.add_argument("--anchors", action=argparse.BooleanOptionalAction, default=None,
                   help="from scratch: each [DET] token starts at its own box on a grid over the "
                        "image (default: the recipe's)")
    p.add_argument("--anchor-matching", type=opt.non_negative_float, default=None, metavar="WEIGHT",
                   help="matcher cost on the distance from each [DET] token's anchor cell to an object's "
                        "centre: 50 gives each object to its nearest token (default: the recipe's; 0 off)")
    p.add_argument("--max-train-images", type=opt.positive_int, default=None)
    p.add_argument("--max-val-images", type=opt.positive_int, default=None,
                   help="evaluate on the first N val images (with --max-train-images on a train-only "
                        "folder: the training images themselves)")
    p.add_argument("--warm-start-images", type=opt.non_negative_int, default=0,
                   help="warm start from scratch: the first --warm-start-epochs epochs draw only the first "
                        "N training images (the model fits a few images first; docs/training.md)")
    p.add_argument("--warm-start-epochs", type=opt.non_negative_int, default=0)
    p.add_argument("--repeat", type=opt.positive_int, default=1, help="repeat the training set N times per epoch")
    p.add_argument("--no-progress", action="store_true")
    opt.add_max_pixels(p)
    p.set_defaults(func=run)


# Command-line flags whose meaning is the negation of a TrainConfig field.
NEGATED = {"no_augment": "augment", "no_progress": "progress"}


def config_from_args(args):
    """The TrainConfig of parsed arguments: every field whose name is an option's ``dest`` (so a
    new field needs only its ``add_argument``), plus the negated flags of :data:`NEGATED`."""
    import dataclasses

    from ..train.config import TrainConfig

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    values.update({field: not getattr(args, flag) for flag, field in NEGATED.items()})
    return TrainConfig(**values)


def run(args) -> int:
    import sys

    from ..train.loop import TrainingInterrupted, fit

    opt.apply_max_pixels(args)
    cfg = config_from_args(args)
    try:
        summary = fit(cfg)
    except TrainingInterrupted as err:
        print(f"yolos train: {err}", file=sys.stderr)
        return 130
    if not summary["is_main"]:
        return 0
    if summary.get("val"):
        v = summary["val"]
        print(f"done: best AP {summary['best_ap']:.4f}; last AP {v['AP']:.4f} AP50 {v['AP50']:.4f}; "
              f"checkpoints in {summary['out']}")
    else:
        print(f"done: checkpoints in {summary['out']}")
    return 0
