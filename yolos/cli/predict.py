"""``yolos predict``: detect objects in files, directories or globs; write annotated images and
one ``predictions.json``."""
from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

from ..images import IMAGE_EXTENSIONS
from . import options as opt


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="detect objects in images; write annotated copies and predictions.json",
        description="Detect objects in image files, directories (searched recursively) and glob "
        "patterns. Without SOURCE the bundled example image is used; without --model the bundled "
        "micro model trained on synthetic shapes.",
    )
    p.add_argument("sources", nargs="*", metavar="SOURCE", help="image file, directory or glob ('imgs/**/*.jpg')")
    p.add_argument("--model", default=None,
                   help="checkpoint: transformers directory, .safetensors, original .pth, hub id or variant name")
    p.add_argument("--threshold", type=opt.threshold, default=0.5,
                   help="keep scores above this, 0..1 (YOLOS scores run low: try 0.3)")
    p.add_argument("--out", default="runs/predict",
                   help="output folder (annotated images keep their input's relative path and extension)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--batch-size", type=opt.positive_int, default=8,
                   help="images per forward pass (same-size images only)")
    p.add_argument("--top-k", type=opt.positive_int, default=None, help="at most K detections per image")
    p.add_argument("--short-side", type=opt.image_side, default=None,
                   help="resize short side (default: the model's eval size)")
    p.add_argument("--long-side", type=opt.image_side, default=None,
                   help="resize long-side cap (default: the model's eval size)")
    p.add_argument("--no-images", "--no-save-images", dest="no_images", action="store_true",
                   help="write predictions.json only, no annotated images (faster)")
    p.add_argument("--list", default=None, metavar="FILE",
                   help="read image paths from FILE, one per line (added to SOURCE; '#' lines skipped)")
    p.add_argument("--resume", action="store_true",
                   help="continue the job in --out: skip images it already predicted (same SOURCE/--list)")
    opt.add_dtype(p)
    opt.add_max_pixels(p)
    p.set_defaults(func=run)


def read_list(path: str) -> list[str]:
    """The image paths listed in ``path``, one per line; blank lines and ``#`` comments skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"--list: cannot read {path} ({err})") from None
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def _glob_root(pattern: str) -> Path:
    """The folder part of a glob pattern before its first wildcard (names are taken from it)."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def expand_sources(sources: list[str]) -> tuple[list[tuple[Path, Path]], list[tuple[str, str]]]:
    """``(file, root)`` for every file to read (``root``: the folder its output name is taken
    relative to), and ``(source, reason)`` for sources that name nothing."""
    files: list[tuple[Path, Path]] = []
    missing: list[tuple[str, str]] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                missing.append((source, "directory holds no image files"))
            files.extend((f, path) for f in found)
        elif path.is_file():
            files.append((path, path.parent))  # named explicitly: tried whatever its extension
        elif glob.has_magic(source):
            found = sorted(Path(f) for f in glob.glob(source, recursive=True) if Path(f).is_file())
            if not found:
                missing.append((source, "no files match this pattern"))
            files.extend((f, _glob_root(source)) for f in found)
        else:
            missing.append((source, "no such file or directory"))
    unique: dict[Path, tuple[Path, Path]] = {}
    for f, root in files:  # a file reached twice is predicted once
        unique.setdefault(f.resolve(), (f, root))
    return list(unique.values()), missing


# Formats PIL writes in RGB; annotated copies of other inputs (GIF, PGM, ...) are written as PNG.
_WRITABLE = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def output_names(files: list[tuple[Path, Path]]) -> list[str]:
    """Annotated-image name of each file: its path relative to its source root, extension kept
    (``photos/a.jpg`` from ``photos/`` -> ``a.jpg``; ``b.gif`` -> ``b.gif.png``). Where two
    sources give the same name, every file is named relative to the folder that holds them all,
    so names are unique and follow from the inputs alone."""
    def name(rel: Path) -> str:
        text = rel.as_posix()
        return text if rel.suffix.lower() in _WRITABLE else text + ".png"

    names = [name(Path(os.path.relpath(f.resolve(), root.resolve()))) for f, root in files]
    if len(set(names)) < len(names):
        common = Path(os.path.commonpath([str(f.resolve().parent) for f, _ in files]))
        names = [name(f.resolve().relative_to(common)) for f, _ in files]
    return names


def check_outputs(out: Path, files: list[tuple[Path, Path]], names: list[str], write_images: bool) -> None:
    """Refuse, before anything is written, an ``--out`` that would overwrite an input."""
    inputs = {f.resolve() for f, _ in files}
    targets = [out / "predictions.json"] + ([out / n for n in names] if write_images else [])
    for target in targets:
        if target.resolve() in inputs:
            raise ValueError(f"--out: writing {target} would overwrite the input image of that name; "
                             f"choose another --out folder (or --no-images)")


def run(args) -> int:
    """Predict, sharded over the processes of ``torchrun`` when there are several: process r takes
    images r, r + N, r + 2N, ... of the input list, streams its records to its own part
    (:mod:`yolos.inference.records`), and process 0 merges them into predictions.json."""
    from .. import distributed as D
    from ..run_dir import run_dir

    opt.check_device(args)
    opt.apply_max_pixels(args)
    if args.model is None:
        from ..inference.defaults import DEFAULT_MODEL

        if not DEFAULT_MODEL.is_file():
            raise FileNotFoundError(f"the bundled model {DEFAULT_MODEL} is missing; pass --model")
    sources = args.sources + (read_list(args.list) if args.list else [])
    di = D.init_distributed(args.device)
    try:
        if not di.is_main:  # process 0 claims the folder; the others write where it says
            return _predict_into(args, Path(D.broadcast_object(None)), sources, di)
        with run_dir(args.out, args.resume, run_files=("predictions.json", "records"),
                     say=lambda m: print(f"yolos predict: {m}", file=sys.stderr)) as out:
            D.broadcast_object(str(out))
            return _predict_into(args, out, sources, di)
    finally:
        D.cleanup()


def _predict_into(args, out: Path, sources: list[str], di) -> int:
    from tqdm import tqdm

    from .. import distributed as D
    from ..checkpoint import from_pretrained
    from ..inference.defaults import DEFAULT_IMAGE, DEFAULT_MODEL
    from ..inference.predictor import iter_predict
    from ..inference.records import RecordWriter, merge, read_records

    model_name = args.model or DEFAULT_MODEL
    pairs, failed = expand_sources(sources or [str(DEFAULT_IMAGE)])
    files = [str(f) for f, _ in pairs]
    names = output_names(pairs) if pairs else []
    check_outputs(out, pairs, names, not args.no_images)  # before loading or writing anything
    done = {f for f, r in read_records(out).items() if "error" not in r} if args.resume else set()
    mine = [i for i in range(di.rank, len(files), di.world_size) if files[i] not in done]
    if di.is_main:
        for source, reason in failed:
            print(f"yolos predict: {source}: {reason}", file=sys.stderr)
        if done:
            print(f"yolos predict: --resume: {len(done)} of {len(files)} images already done", file=sys.stderr)
    model = from_pretrained(model_name, device=str(di.device))
    progress = tqdm(total=len(mine), desc="predict", unit="img", disable=None if di.is_main else True)

    with RecordWriter(out, di.rank) as writer:
        def on_error(index, source, err) -> None:
            print(f"yolos predict: skipped {err}", file=sys.stderr)
            writer.write({"file": files[mine[index]], "error": str(err)})
            progress.update(1)

        for index, det in iter_predict(
            model, [files[i] for i in mine], threshold=args.threshold, batch_size=args.batch_size,
            top_k=args.top_k, short_side=args.short_side, long_side=args.long_side, on_error=on_error,
            dtype=args.dtype,
        ):
            i = mine[index]
            entries = det.to_dict()
            for entry, category in zip(entries, det.category_ids.tolist()):
                entry["category_id"] = category  # the dataset's own id (COCO checkpoints: COCO's)
            h, w = det.image_size
            record = {"file": files[i], "width": w, "height": h, "detections": entries}
            if not args.no_images:  # the image first: a record always means its image is there
                target = out / names[i]
                target.parent.mkdir(parents=True, exist_ok=True)
                det.save(target)
                record["annotated"] = names[i]
            writer.write(record)
            progress.update(1)
    progress.close()
    D.barrier()
    if not di.is_main:
        return 0
    report = merge(out, files, {"model": str(model_name), "threshold": args.threshold},
                   unreadable=[{"file": s, "error": r} for s, r in failed])
    n_det = sum(len(r["detections"]) for r in report["images"])
    errors = report["failed"]
    print(f"{len(report['images'])} images, {n_det} detections -> {out}"
          + (f" ({len(errors)} failed)" if errors else ""), file=sys.stderr)
    return 1 if errors else 0
