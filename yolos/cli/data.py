"""``yolos data check|convert``: one screen about a dataset in any layout, and its COCO json."""
from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor

from . import options as opt


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
    check.add_argument("--limit", type=opt.positive_int, default=20, help="problems listed per kind and split")
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


def _splits(dc, which: str) -> list[str]:
    there = dc.splits()
    if which != "all" and which not in there:
        raise ValueError(f"--split {which}: {dc.source} has no {which} split (it has {', '.join(there)})")
    return there if which == "all" else [which]


def decode_problems(raw, known: set[str]) -> list:
    """A Problem for each image of ``raw`` that is there but does not decode (a truncated file
    passes the header check), leaving out the places already in ``known``."""
    from ..data.check import Problem
    from ..errors import ImageError
    from ..images import load_image

    def decode(image):
        try:
            load_image(raw.image_path(image))
        except ImageError as err:
            return Problem(raw.image_where(image), str(err).split(": ", 1)[-1])
        return None

    present = [im for im in raw.coco["images"] if raw.image_path(im).is_file()]
    with ThreadPoolExecutor(4) as pool:
        return [p for p in pool.map(decode, present) if p is not None and p.where not in known]


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
    from ..data.check import normalize_split
    from ..data.dataset_config import resolve_dataset, shared_images

    opt.apply_max_pixels(args)
    dc = resolve_dataset(_dataset_arg(args), args.val_fraction)
    print(dc.describe())
    failed, read = False, {}
    for split in _splits(dc, args.split):
        if split == "train" and dc.train_synthetic is not None:
            continue
        raw = read[split] = dc.read(split)
        _, report = normalize_split(raw)
        if not args.headers_only:
            report.problems += decode_problems(raw, {p.where for p in report.problems})
        print(report.render(args.limit))
        failed = failed or bool(report.fatal)
    if "train" in read and "val" in read and dc.val is not None:
        both = shared_images(read["train"], read["val"])
        if both:
            print(f"warning: {len(both)} image(s) are in both train and val (e.g. {both[0]}): val AP on them "
                  f"measures memory, not generalisation")
    verdict = "problems above would stop training" if failed else "ready to train"
    print(f"yolos data check: {verdict}", file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0


def dataset_folders(dc) -> list:
    """The folders a dataset lives in (its folder or YAML's folder, each split's images and
    annotations): ``data convert`` writes into none of them."""
    from pathlib import Path

    source = Path(dc.source)
    folders = {source if source.is_dir() else source.parent}
    for name in ("train", "val", "test"):
        spec = getattr(dc, name)
        if spec is not None:
            folders.add(spec.images)
            if spec.annotations is not None:
                folders.add(spec.annotations.parent)
    return sorted({f.resolve() for f in folders})


def run_convert(args) -> int:
    from pathlib import Path

    from ..data.check import normalize_split, raise_fatal
    from ..data.dataset_config import resolve_dataset
    from ..files import atomic_write_text
    from ..run_dir import run_dir

    opt.apply_max_pixels(args)
    dc = resolve_dataset(_dataset_arg(args), args.val_fraction)
    target = Path(args.out).resolve()
    inside = next((f for f in dataset_folders(dc) if target == f or f in target.parents), None)
    if inside is not None:
        raise ValueError(f"--out {args.out}: inside the dataset ({inside}); data convert never writes into a "
                         f"dataset (its data.yaml would be read instead of the dataset from then on): give a folder "
                         f"outside it")
    print(dc.describe())
    splits = {}
    for split in _splits(dc, "all"):
        if split == "train" and dc.train_synthetic is not None:
            continue
        raw = dc.read(split)
        coco, report = normalize_split(raw)
        raise_fatal(report)
        splits[split] = (raw.images_root.resolve(), coco)
    with run_dir(args.out, run_files=("train.json", "val.json", "test.json", "data.yaml"),
                 say=lambda m: print(f"yolos data convert: {m}")) as out:
        lines = []
        for split, (images, coco) in splits.items():
            atomic_write_text(out / f"{split}.json", json.dumps(coco, allow_nan=False))
            lines.append(f"{split}: {{images: {json.dumps(str(images))}, annotations: {split}.json}}")
            print(f"{split}: {len(coco['images'])} images, {len(coco['annotations'])} boxes -> {out / f'{split}.json'}")
        atomic_write_text(out / "data.yaml", "\n".join(lines) + "\n")
    return 0
