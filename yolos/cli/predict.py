"""``yolos predict``: detect objects in files, directories or globs; write annotated images and
one ``predictions.json``. The job itself (sources, output names, overwrite rules, shards, records,
resume) is :mod:`yolos.inference.job`; this is its parser."""
from __future__ import annotations

import sys

from .. import defaults
from . import options as opt
from .types import positive_int


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
    p.add_argument("--batch-size", type=positive_int, default=defaults.MAX_BATCH,
                   help="images per forward pass (same-size images only)")
    p.add_argument("--top-k", type=positive_int, default=None, help="at most K detections per image")
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


def run(args) -> int:
    """Predict, sharded over the processes of ``torchrun`` when there are several (each takes
    every N-th image; process 0 merges the records into predictions.json)."""
    from tqdm import tqdm

    from .. import distributed as D
    from ..checkpoint.loader import check_model_name
    from ..inference.job import Plan, PredictJob, run_job
    from ..inference.sources import read_list

    opt.check_device(args)
    opt.check_runtime(args)
    opt.apply_max_pixels(args)
    if args.model is not None:  # a typo is reported before any image is read
        check_model_name(args.model)
    job = PredictJob(sources=args.sources + (read_list(args.list) if args.list else []), out=args.out,
                     model_name=str(args.model or defaults.DEFAULT_MODEL), threshold=args.threshold,
                     batch_size=args.batch_size, top_k=args.top_k, short_side=args.short_side,
                     long_side=args.long_side, dtype=args.dtype, runtime=args.runtime, images=not args.no_images,
                     resume=args.resume)
    plan = Plan.of(job)  # sources and output names checked before anything loads or is written
    say = lambda m: print(f"yolos predict: {m}", file=sys.stderr)  # noqa: E731
    di = D.init_distributed(args.device)
    try:
        model, _ = opt.resolve_model(args.model, device=str(di.device))
        network = opt.apply_runtime(model, args, say=say)
        bar = tqdm(desc="predict", unit="img", disable=None if di.is_main else True)

        def on_progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        result = run_job(network, job, say, on_progress, plan)
        bar.close()
    finally:
        D.cleanup()
    if result is None:  # not process 0
        return 0
    images, errors = result.report["images"], result.report["failed"]
    n_det = sum(len(r["detections"]) for r in images)
    print(f"{len(images)} images, {n_det} detections -> {result.out}" + (f" ({len(errors)} failed)" if errors else ""),
          file=sys.stderr)
    return 1 if errors else 0
