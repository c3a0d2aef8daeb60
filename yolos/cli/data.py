"""``yolos data check|convert``: one screen about a dataset in any layout, and its COCO json; the
work is :mod:`yolos.data.tools`, this is its parser."""
from __future__ import annotations

import sys

from . import options as opt
from .types import positive_int


def add_parser(sub) -> None:
    p = sub.add_parser(
        "data", help="check a dataset (COCO, YOLO, Pascal VOC or LabelImg layout), or write its COCO json",
        description="Datasets are read in place, their layout recognised from the files: COCO json (also "
        "Roboflow's train/ valid/ test/ export), YOLO (data.yaml with train/val/names, images/ beside labels/), "
        "Pascal VOC (Annotations/, JPEGImages/, ImageSets/Main/), LabelImg (XML beside the images or in "
        "annotations/, flat or in train/ val/ folders). A dataset without a val split holds out 10% of train "
        "(--val-fraction), the same images in every command. Boxes of EXIF-rotated photos are taken in the "
        "displayed frame unless the annotation's image size says they were drawn on the stored pixels.")
    commands = p.add_subparsers(dest="data_command", metavar="ACTION")
    commands.required = True
    check = commands.add_parser(
        "check", help="images, boxes per class, sizes, and every problem with its file and line",
        description="Check a dataset the way `yolos train` and `yolos val` do before their first step, then "
        "decode every image. Lists each problem with its file (and line): a box outside its image or of "
        "zero area (repaired: clipped or dropped, and counted), a label beyond the names, a missing or "
        "unreadable image, a duplicate id, EXIF-rotated images and which frame their boxes are in. "
        "Exit code 1 when training would fail.")
    _add_dataset(check)
    check.add_argument("--split", choices=["train", "val", "test", "all"], default="all",
                       help="the split to check (default all: train, val, and test when there is one)")
    check.add_argument("--headers-only", action="store_true",
                       help="read image headers only (what train/val do), not every pixel")
    check.add_argument("--limit", type=positive_int, default=20, help="problems listed per kind and split")
    opt.add_max_pixels(check)
    check.set_defaults(func=run_check)
    convert = commands.add_parser(
        "convert", help="write the checked dataset as COCO json (images stay where they are)",
        description="Write OUT/train.json, OUT/val.json (held out of train when the dataset has no val split, "
        "as train does) and OUT/test.json when there is a test split (COCO, boxes as checked: displayed "
        "frame, clipped; VOC 'difficult' as crowd), and OUT/data.yaml pointing at the images in place, so "
        "tools that read COCO (pycocotools, other trainers) see exactly what yolos trains and evaluates on.")
    _add_dataset(convert)
    convert.add_argument("--out", required=True, help="folder for the json files and data.yaml, outside the "
                         "dataset (a folder holding them already is left alone: OUT2 is used)")
    opt.add_max_pixels(convert)
    convert.set_defaults(func=run_convert)


def _add_dataset(p) -> None:
    """The dataset as --data (as train and val take it) or as the one positional argument."""
    p.add_argument("dataset", metavar="DATA", nargs="?", default=None, help="the same as --data")
    opt.add_data(p, required=False, split="train and val")
    opt.add_val_fraction(p)


def _dataset_arg(args) -> str:
    if (args.dataset is None) == (args.data is None):
        raise ValueError("yolos data: give the dataset once, as DATA or --data")
    return args.dataset or args.data


def run_check(args) -> int:
    from ..data.dataset_config import resolve_dataset
    from ..data.tools import check_dataset

    opt.apply_max_pixels(args)
    dc = resolve_dataset(_dataset_arg(args), args.val_fraction)
    print(dc.describe())
    result = check_dataset(dc, args.split, decode=not args.headers_only)
    print(result.render(args.limit))
    verdict = "problems above would stop training" if result.failed else "ready to train"
    print(f"yolos data check: {verdict}", file=sys.stderr if result.failed else sys.stdout)
    return 1 if result.failed else 0


def run_convert(args) -> int:
    from ..data.dataset_config import resolve_dataset
    from ..data.tools import convert_dataset

    opt.apply_max_pixels(args)
    dc = resolve_dataset(_dataset_arg(args), args.val_fraction)
    print(dc.describe())
    convert_dataset(dc, args.out, say=print)
    return 0
