"""``yolos val``: COCO AP of a checkpoint on a COCO-format dataset (faster-coco-eval).

All T detections per image go to the evaluator at score threshold 0; batch
size 1 by default, because padding changes YOLOS' predictions (no pixel mask).
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import validate
from . import options as opt


def add_parser(sub) -> None:
    p = sub.add_parser("val", help="COCO evaluation of a checkpoint",
                       description="Evaluate a checkpoint (path, hub id or run directory) with COCO AP/AR.")
    p.add_argument("--model", required=True,
                   help="checkpoint: our .safetensors, a transformers dir / hub id, an original .pth")
    p.add_argument("--data", required=True, help="dataset YAML or COCO folder (its val split is used)")
    p.add_argument("--batch-size", type=opt.positive_int, default=1)
    p.add_argument("--eval-size", type=opt.image_side, default=None,
                   help="short side (default: the paper's evaluation size of the variant)")
    p.add_argument("--eval-max-size", type=opt.image_side, default=None)
    opt.add_max_pixels(p)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None, help="directory for results.json (COCO result format) and stats.json")
    p.add_argument("--no-progress", action="store_true")
    opt.add_dtype(p)
    p.set_defaults(func=run)


def _eval_transforms(model, args):
    """Resize to the paper's evaluation size (:func:`yolos.model.eval_sizes`) unless given."""
    from ..data import transforms as T
    from ..model.variants import eval_sizes

    short, long = eval_sizes(model.config, "paper")
    size = args.eval_size or short
    return T.make_transforms("val", eval_size=(size, args.eval_max_size or max(long, size)))


def build_val_dataset(model, data: str, transforms):
    """The val split, in the model's label space (COCO's 91 ids for COCO categories)."""
    from ..data.coco import CocoDetection
    from ..data.dataset_config import resolve_dataset
    from ..errors import DatasetError

    dc = resolve_dataset(data)
    if not dc.val_annotations:
        raise DatasetError(f"{data}: the dataset has no val split")
    ds = CocoDetection(dc.val_images, dc.val_annotations, transforms=transforms, names=dc.names)
    if len(ds) == 0:
        raise DatasetError(f"{dc.val_annotations}: no images to evaluate on")
    if not any(a for i in ds.ids for a in ds.annotations[i] if not a.get("iscrowd", 0)):
        raise DatasetError(f"{dc.val_annotations}: no (non-crowd) annotations: AP and AR are "
                           f"undefined without ground truth")
    if ds.num_classes != model.config.num_classes:
        raise DatasetError(
            f"{dc.val_annotations}: labels span {ds.num_classes} classes, but the model predicts "
            f"{model.config.num_classes}; evaluate on the dataset it was trained for"
        )
    return ds


def run(args) -> int:
    from .. import distributed as D
    from ..checkpoint import from_pretrained
    from ..evaluation.evaluate import evaluate

    if args.out:
        validate.output_folder(args.out)
    opt.apply_max_pixels(args)
    di = D.init_distributed(args.device)
    try:
        model = from_pretrained(args.model).to(di.device).eval()
        dataset = build_val_dataset(model, args.data, _eval_transforms(model, args))
        stats, results = evaluate(model, dataset, batch_size=args.batch_size, device=di.device,
                                  progress=not args.no_progress, dtype=args.dtype)
        if di.is_main:
            print(f"{args.model} on {len(dataset)} images:")
            from ..evaluation.coco_eval import STAT_NAMES

            for k in STAT_NAMES:
                if k in stats:
                    print(f"  {k:10s} {stats[k]:.4f}")
            if args.out:
                out = Path(args.out)
                out.mkdir(parents=True, exist_ok=True)
                (out / "results.json").write_text(json.dumps(results))
                (out / "stats.json").write_text(json.dumps(stats, indent=1))
                print(f"results written to {out / 'results.json'}")
    finally:
        D.cleanup()
    return 0
