"""``yolos val``: COCO AP of a checkpoint on a dataset in any layout; the work is
:mod:`yolos.evaluation.val`, this is its parser."""
from __future__ import annotations

from .. import validate
from . import options as opt
from .types import positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("val", help="COCO evaluation of a checkpoint, per class, with a confusion matrix",
                       description="Evaluate a checkpoint with COCO AP/AR on the val split of a dataset in any "
                       "layout (COCO json, YOLO data.yaml, Pascal VOC, LabelImg), checked first as `yolos data "
                       "check` does. Prints the 12 COCO numbers and a per-class table (AP, AP50, AP75, AR, "
                       "instances). The model's classes are matched with the dataset's by name, never by "
                       "position: the same names in another order are mapped (and said so); a dataset class the "
                       "model does not have is listed and left out, so AP is the mean over the classes both have; "
                       "no class in common is refused (--class-map maps names by hand).")
    opt.add_model(p)
    opt.add_data(p)
    p.add_argument("--split", choices=["val", "test", "train"], default="val",
                   help="the split to evaluate (default val; Roboflow exports ship a test split)")
    opt.add_val_fraction(p)
    opt.add_class_map(p)
    p.add_argument("--batch-size", type=positive_int, default=1)
    opt.add_size(p, old_names=("--eval-size", "--eval-max-size"))
    opt.add_max_pixels(p)
    opt.add_device(p)
    p.add_argument("--out", default=None,
                   help="folder for results.json (COCO results in the dataset's category ids), stats.json (with "
                        "the per-class table), pr_curves.png, confusion_matrix.png/.json; a folder holding "
                        "any of them already is left alone: the next free OUT2, OUT3... is used")
    opt.add_threshold(p, "--confusion-threshold", help="score a detection needs to count in the confusion matrix")
    p.add_argument("--no-progress", action="store_true")
    opt.add_dtype(p)
    opt.add_runtime(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import distributed as D
    from ..data.dataset_config import resolve_dataset
    from ..evaluation.val import calibration_images, run_val, val_dataset

    if args.out:
        validate.output_folder(args.out)
    opt.apply_max_pixels(args)
    opt.check_runtime(args)
    class_map = opt.class_map(args)
    data = resolve_dataset(args.data, args.val_fraction)  # the layout is recognised before a model is loaded
    if args.split not in data.splits():
        raise ValueError(f"--split {args.split}: {data.source} has no {args.split} split (it has "
                         f"{', '.join(data.splits())})")
    di = D.init_distributed(args.device)
    say = print if di.is_main else (lambda *a: None)
    try:
        say(data.describe())
        model, _ = opt.resolve_model(args.model, device=di.device)
        dataset = val_dataset(model, data, args.split, class_map, args.short_side, args.long_side, say)
        network = opt.apply_runtime(model, args, say=say, calibration=lambda: calibration_images(data, args.split))
        result = run_val(network, dataset, args.batch_size, di.device, args.dtype, not args.no_progress,
                         args.confusion_threshold, args.split)
        if di.is_main:
            print(result.summary(args.model or "the bundled model"))
            if args.out:
                out = result.write(args.out, say=lambda m: print(f"yolos val: {m}"))
                print(f"results, per-class stats, PR curves and the confusion matrix (score >= "
                      f"{args.confusion_threshold:g}) written to {out}")
    finally:
        D.cleanup()
    return 0
