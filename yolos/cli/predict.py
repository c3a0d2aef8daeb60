"""``yolos predict``: detect objects in files, directories or globs; write annotated images and
one ``predictions.json``.

Nothing the run did not create is written over: an ``--out`` where an annotated image would
replace an input (compared by file identity, so hard links count) is refused; an ``--out`` that
holds any file the run would write goes to the next free ``OUT2``; output names never leave
``--out`` (a symbolic link among the inputs is named by where it is, not where it points) and a
link inside ``--out`` is never written through.
"""
from __future__ import annotations

import glob
import os
import stat
import sys
from pathlib import Path

from .. import defaults
from ..images import IMAGE_EXTENSIONS
from . import options as opt

MAX_LIST_BYTES = 1 << 30  # a --list file larger than this is not a list of paths


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="detect objects in images; write annotated copies and predictions.json",
        description="Detect objects in image files, directories (searched recursively, symbolic links to "
        "folders not followed) and glob patterns. Without SOURCE the bundled example image is used; without "
        "--model the bundled micro model trained on synthetic shapes. predictions.json names each class by "
        "its name and the category id of the dataset the model was trained on.",
    )
    p.add_argument("sources", nargs="*", metavar="SOURCE", help="image file, directory or glob ('imgs/**/*.jpg')")
    opt.add_model(p)
    opt.add_threshold(p, help="keep scores above this, 0..1; YOLOS scores run low: try 0.3")
    p.add_argument("--out", default="runs/predict",
                   help="output folder (annotated images keep their input's relative path and extension); one "
                        "holding any file this run would write is left alone: the next free OUT2, OUT3... is used")
    opt.add_device(p)
    p.add_argument("--batch-size", type=opt.positive_int, default=defaults.MAX_BATCH,
                   help="images per forward pass (same-size images only)")
    p.add_argument("--top-k", type=opt.positive_int, default=None, help="at most K detections per image")
    opt.add_size(p)
    p.add_argument("--no-images", "--no-save-images", dest="no_images", action="store_true",
                   help="write predictions.json only, no annotated images (faster)")
    p.add_argument("--list", default=None, metavar="FILE",
                   help="read image paths from FILE, one per line (added to SOURCE; '#' lines skipped)")
    p.add_argument("--resume", action="store_true",
                   help="continue the job in --out: skip images it already predicted (same SOURCE/--list, "
                        "model and settings; a job with other settings is refused)")
    opt.add_dtype(p)
    opt.add_runtime(p)
    opt.add_max_pixels(p)
    p.set_defaults(func=run)


def read_list(path: str) -> list[str]:
    """The image paths listed in ``path``, one per line; blank lines and ``#`` comments skipped.
    A file that is not a regular file (a device, a FIFO), is too large or lists nothing is refused."""
    p = Path(path)
    try:
        info = p.stat()
    except OSError as err:
        raise ValueError(f"--list: cannot read {path} ({err.strerror or err})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"--list: {path} is not a regular file")
    if info.st_size > MAX_LIST_BYTES:
        raise ValueError(f"--list: {path} is {info.st_size} bytes, above {MAX_LIST_BYTES >> 20} MB")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"--list: cannot read {path} ({err})") from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ValueError(f"--list: {path} lists no image paths")
    return lines


def _glob_root(pattern: str) -> Path:
    """The folder part of a glob pattern before its first wildcard (names are taken from it)."""
    fixed = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _images_under(folder: Path) -> list[Path]:
    """Image files under ``folder``, recursively, sorted; links to folders are not followed (a
    loop of links cannot make the search endless)."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        found += [Path(root) / f for f in files if Path(f).suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(found)


def _kind(path: Path) -> str | None:
    """Why ``path`` cannot be read as an image file (None: it can)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return "no such file or directory"
    if not stat.S_ISREG(mode):
        return "not a regular file (a device, pipe or socket)"
    return None


def expand_sources(sources: list[str]) -> tuple[list[tuple[Path, Path]], list[tuple[str, str]]]:
    """``(file, root)`` for every file to read (``root``: the folder its output name is taken
    relative to), and ``(source, reason)`` for sources that name nothing."""
    files: list[tuple[Path, Path]] = []
    missing: list[tuple[str, str]] = []
    for source in sources:
        if not source.strip():
            raise ValueError("SOURCE: an empty path (an unset variable?); give files, folders or globs")
        path = Path(source)
        if path.is_dir():
            found = _images_under(path)
            if not found:
                missing.append((source, "directory holds no image files"))
            files.extend((f, path) for f in found)
        elif path.exists() or path.is_symlink():
            reason = _kind(path)
            if reason:
                missing.append((source, reason))
            else:
                files.append((path, path.parent))  # named explicitly: tried whatever its extension
        elif glob.has_magic(source):
            root = _glob_root(source)
            rest = os.path.relpath(source, root) if str(root) != "." else source
            found = sorted(f for f in root.glob(rest) if f.is_file()) if root.is_dir() else []
            if not found:
                missing.append((source, "no files match this pattern"))
            files.extend((f, root) for f in found)
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
    (``photos/a.jpg`` from ``photos/`` -> ``a.jpg``; ``b.gif`` -> ``b.gif.png``), taken from
    where the file is listed, not where a link points, so a name never climbs out of ``--out``.
    Where two sources give the same name, every file is named relative to the folder that holds
    them all."""
    def name(rel: str) -> str:
        rel = Path(rel).as_posix()
        return rel if Path(rel).suffix.lower() in _WRITABLE else rel + ".png"

    absolute = [Path(os.path.abspath(f)) for f, _ in files]
    names = [name(os.path.relpath(a, os.path.abspath(root))) for a, (_, root) in zip(absolute, files)]
    if len(set(names)) < len(names) or any(n.startswith("../") for n in names):
        common = os.path.commonpath([str(a.parent) for a in absolute])
        names = [name(os.path.relpath(a, common)) for a in absolute]
    return names


def _identity(path: Path):
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


def check_outputs(out: Path, files: list[tuple[Path, Path]], names: list[str], write_images: bool) -> None:
    """Refuse, before anything is written, an ``--out`` where an output would be an input: the
    same file by identity (device and inode), so a hard link or a link to an input counts."""
    inputs = {_identity(f) for f, _ in files} - {None}
    targets = [out / "predictions.json"] + ([out / n for n in names] if write_images else [])
    for target in targets:
        if _identity(target) in inputs:
            raise ValueError(f"--out: writing {target} would overwrite an input image (the same file); "
                             f"choose another --out folder (or --no-images)")


def run(args) -> int:
    """Predict, sharded over the processes of ``torchrun`` when there are several: process r takes
    images r, r + N, r + 2N, ... of the input list, streams its records to its own part
    (:mod:`yolos.inference.records`), and process 0 merges them into predictions.json."""
    from .. import distributed as D
    from ..inference.defaults import DEFAULT_IMAGE
    from ..run_dir import run_dir

    opt.check_device(args)
    opt.check_runtime(args)
    opt.apply_max_pixels(args)
    if args.model is not None:  # a typo is reported before any image is read
        from ..checkpoint.loader import check_model_name

        check_model_name(args.model)
    sources = args.sources + (read_list(args.list) if args.list else [])
    pairs, failed = expand_sources(sources or [str(DEFAULT_IMAGE)])
    names = output_names(pairs) if pairs else []
    check_outputs(Path(args.out), pairs, names, not args.no_images)  # before loading or writing anything
    run_files = ("predictions.json", "records") + (tuple(names) if not args.no_images else ())
    di = D.init_distributed(args.device)
    try:
        if not di.is_main:  # process 0 claims the folder; the others write where it says
            return _predict_into(args, Path(D.broadcast_object(None)), pairs, names, failed, di)
        with run_dir(args.out, args.resume, run_files=run_files,
                     say=lambda m: print(f"yolos predict: {m}", file=sys.stderr)) as out:
            D.broadcast_object(str(out))
            return _predict_into(args, out, pairs, names, failed, di)
    finally:
        D.cleanup()


def _job(args, model_name) -> dict:
    """What makes two runs the same job (a resumed one must match)."""
    job = {"model": str(model_name), "threshold": args.threshold, "top_k": args.top_k, "short_side": args.short_side,
           "long_side": args.long_side, "dtype": None if args.dtype is None else str(args.dtype),
           "images": not args.no_images}
    if args.runtime != "torch":  # jobs recorded before --runtime existed ran torch
        job["runtime"] = args.runtime
    return job


def _predict_into(args, out: Path, pairs, names, failed, di) -> int:
    from tqdm import tqdm

    from .. import distributed as D
    from ..inference.defaults import DEFAULT_MODEL
    from ..inference.predictor import iter_predict
    from ..inference.records import RecordWriter, check_job, merge, read_records

    model_name = args.model or DEFAULT_MODEL
    files = [str(f) for f, _ in pairs]
    job = _job(args, model_name)
    if di.is_main:
        check_job(out, job, args.resume)  # a resumed job must be the same job; a new one records itself
    D.barrier()
    done = {f for f, r in read_records(out).items() if "error" not in r} if args.resume else set()
    mine = [i for i in range(di.rank, len(files), di.world_size) if files[i] not in done]
    if di.is_main:
        for source, reason in failed:
            print(f"yolos predict: {source}: {reason}", file=sys.stderr)
        if done:
            print(f"yolos predict: --resume: {len(done)} of {len(files)} images already done", file=sys.stderr)
    model, _ = opt.resolve_model(args.model, device=str(di.device))
    model = opt.apply_runtime(model, args, say=lambda m: print(f"yolos predict: {m}", file=sys.stderr))
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
                det.save(_inside(out, names[i]))
                record["annotated"] = names[i]
            writer.write(record)
            progress.update(1)
    progress.close()
    D.barrier()
    if not di.is_main:
        return 0
    report = merge(out, files, job, unreadable=[{"file": s, "error": r} for s, r in failed])
    n_det = sum(len(r["detections"]) for r in report["images"])
    errors = report["failed"]
    print(f"{len(report['images'])} images, {n_det} detections -> {out}"
          + (f" ({len(errors)} failed)" if errors else ""), file=sys.stderr)
    return 1 if errors else 0


def _inside(out: Path, name: str) -> Path:
    """``out / name`` with its folders made, refusing a name or a folder on the way that would
    take the write out of ``out`` (``..``, or a symbolic link placed inside ``out``)."""
    target = out / name
    if ".." in Path(name).parts or Path(name).is_absolute():
        raise ValueError(f"--out: output name {name!r} leaves {out}")
    folder = out
    for part in Path(name).parts[:-1]:
        folder = folder / part
        if folder.is_symlink():
            raise ValueError(f"--out: {folder} is a symbolic link; refusing to write through it")
        folder.mkdir(exist_ok=True)
    if target.is_symlink():
        raise ValueError(f"--out: {target} is a symbolic link; refusing to write through it")
    return target
