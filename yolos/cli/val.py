"""``yolos val``: COCO AP of a checkpoint on a COCO-format dataset (faster-coco-eval).

All T detections per image go to the evaluator at score threshold 0; batch
size 1 by default, because padding changes YOLOS' predictions (no pixel mask).
"""
from __future__ import annotations

import json

from .. import validate
from . import options as opt


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
    p.add_argument("--batch-size", type=opt.positive_int, default=1)
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


def _eval_transforms(model, args):
    """Resize to the paper's evaluation size (:func:`yolos.model.input_size`) unless given."""
    from ..data import transforms as T
    from ..model.variants import input_size

    return T.make_transforms("val", eval_size=input_size(model.config, "paper", args.short_side, args.long_side))


def build_val_dataset(model, data, transforms, split: str = "val", class_map=None, say=None):
    """The ``split`` of ``data`` (a path or a DatasetConfig), checked, with the model's classes
    matched by name (:meth:`DatasetConfig.dataset_for_model`); ``say`` gets what the match did.
    A split with nothing to evaluate is an error, never AP 0."""
    from ..data.dataset_config import resolve_dataset
    from ..errors import DatasetError

    dc = resolve_dataset(data)
    ds = dc.dataset_for_model(split, model.config, transforms, class_map=class_map, say=say)
    if len(ds) == 0:
        raise DatasetError(f"{ds.annotation_file}: no images to evaluate on")
    if not any(a for i in ds.ids for a in ds.annotations[i] if not a.get("iscrowd", 0)):
        raise DatasetError(f"{ds.annotation_file}: no (non-crowd) annotations of the classes the model has: AP "
                           f"and AR are undefined without ground truth")
    return ds


def run(args) -> int:
    from .. import distributed as D
    from ..data.dataset_config import resolve_dataset
    from ..evaluation.evaluate import evaluate

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
        dataset = build_val_dataset(model, data, _eval_transforms(model, args), args.split, class_map, say)
        model = opt.apply_runtime(model, args, say=say, calibration=lambda: _calibration(data, args.split))
        stats, results = evaluate(model, dataset, batch_size=args.batch_size, device=di.device,
                                  progress=not args.no_progress, dtype=args.dtype, details=True)
        if di.is_main:
            _report(args, model, dataset, stats, results)
    finally:
        D.cleanup()
    return 0


def _calibration(data, split: str) -> list:
    """Images for a calibrated int8 without --calibration: the train split's (else the one evaluated)."""
    raw = data.read("train" if "train" in data.splits() else split)
    return [raw.image_path(im) for im in raw.coco["images"][:300]]


def _report(args, model, dataset, stats: dict, results: list[dict]) -> None:
    """The console summary (12 numbers, per-class table) and, with --out, the files."""
    from ..evaluation.coco_eval import STAT_NAMES
    from ..evaluation.report import confusion_matrix, per_class_table, write_plots
    from ..files import atomic_write_text
    from ..run_dir import run_dir

    names = {c["id"]: c["name"] for c in dataset.categories}
    curves, recall_points = stats.pop("pr_curves", {}), stats.pop("recall_points", [])
    print(f"{args.model or 'the bundled model'} on {len(dataset)} images of the {args.split} split "
          f"({dataset.annotation_file}), {len(dataset.categories)} classes:")
    for k in STAT_NAMES:
        print(f"  {k:10s} {stats[k]:.4f}")
    if stats.get("per_class"):
        for row in stats["per_class"]:
            row["name"] = names.get(row["category_id"], str(row["category_id"]))
        print(per_class_table(stats["per_class"], names))
    ids = [c["id"] for c in dataset.categories]
    confusion = confusion_matrix(dataset.ground_truth(), results, ids, args.confusion_threshold)
    confusion["classes"] = [names[i] for i in ids]
    if not args.out:
        return
    files = ("results.json", "stats.json", "confusion_matrix.json", "pr_curves.png", "confusion_matrix.png")
    with run_dir(args.out, run_files=files, say=lambda m: print(f"yolos val: {m}")) as out:
        atomic_write_text(out / "results.json", json.dumps(results, allow_nan=False))
        atomic_write_text(out / "stats.json", json.dumps(stats, indent=1, allow_nan=False))
        atomic_write_text(out / "confusion_matrix.json", json.dumps(confusion, indent=1))
        if stats.get("per_class"):
            write_plots(out, stats["per_class"], curves, recall_points, confusion, names)
        print(f"results, per-class stats, PR curves and the confusion matrix (score >= "
              f"{args.confusion_threshold:g}) written to {out}")
