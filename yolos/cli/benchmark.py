"""``yolos benchmark``: inference speed of a model the paper's way (batch 1, first N images)."""
from __future__ import annotations

from ..images import IMAGE_EXTENSIONS
from . import options as opt


def add_parser(sub) -> None:
    p = sub.add_parser(
        "benchmark",
        help="measure inference FPS (batch 1) on a COCO folder or random input",
        description="Measure inference speed the way the YOLOS paper reports FPS: batch 1 over the "
        "first N images of a COCO folder (sorted file names), each resized to the model's "
        "evaluation size. Reports model-only FPS (forward pass on a ready tensor) and end-to-end "
        "FPS (decode + preprocess + forward + postprocess). Without --data: random input of one "
        "fixed size, model only.",
    )
    p.add_argument("--model", default=None,
                   help="checkpoint, hub id, or variant name (random weights; speed does not depend "
                   "on them); default: the bundled micro model")
    p.add_argument("--data", default=None, help="COCO folder (images found recursively) or image folder")
    p.add_argument("--images", type=opt.positive_int, default=100, help="images (or random-input passes) to time")
    p.add_argument("--size", type=opt.image_side, nargs=2, metavar=("H", "W"), default=None,
                   help="random-input size without --data (default: the evaluation canvas); with "
                   "--data: resize short side / long-side cap instead of the model's defaults")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--threads", type=opt.positive_int, default=None, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--warmup", type=opt.non_negative_int, default=3, help="untimed passes first")
    opt.add_dtype(p)
    p.set_defaults(func=run)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(args) -> int:
    import statistics
    import time
    from pathlib import Path

    import torch

    from ..errors import DatasetError
    from ..images import load_image
    from ..inference.postprocess import postprocess
    from ..inference.predictor import precision_for
    from ..inference.preprocess import preprocess
    from ..model.variants import eval_sizes
    from .export import default_size, load_model_arg

    opt.check_device(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, name = load_model_arg(args.model)
    model = model.to(device).eval()
    compute = precision_for(model, args.dtype)
    dtype_name = str(args.dtype or "float32").removeprefix("torch.")
    from ..hardware import cpu_summary

    where = f"{device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda"
                           else f" ({cpu_summary()}), {torch.get_num_threads()} threads")

    model_times, e2e_times, shapes = [], [], []
    with torch.inference_mode():
        if args.data:
            folder = Path(args.data)
            if not folder.is_dir():
                raise DatasetError(f"--data {folder}: not a directory")
            files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                raise DatasetError(f"--data {folder}: no .jpg/.png images found")
            files = files[:args.images]
            short, long = tuple(args.size) if args.size else eval_sizes(model.config)
            sequence = files[:args.warmup] + files  # warm-up on the first images, then all timed
            for i, f in enumerate(sequence):
                t0 = time.perf_counter()
                image = load_image(f)
                batch = preprocess(image, short_side=short, long_side=long)
                x = batch["pixel_values"].to(device)
                _sync(device)
                t1 = time.perf_counter()
                with compute():
                    out = model(x)
                _sync(device)
                t2 = time.perf_counter()
                postprocess(out, target_sizes=batch["original_sizes"], threshold=0.5)
                _sync(device)
                t3 = time.perf_counter()
                if i >= min(args.warmup, len(files)):
                    model_times.append(t2 - t1)
                    e2e_times.append(t3 - t0)
                    shapes.append(tuple(x.shape[-2:]))
            what = f"first {len(files)} images of {folder} (short side {short}, long side {long})"
        else:
            size = tuple(args.size) if args.size else default_size(model)
            x = torch.randn(1, model.config.num_channels, *size, device=device)
            for i in range(args.warmup + args.images):
                _sync(device)
                t0 = time.perf_counter()
                with compute():
                    model(x)
                _sync(device)
                if i >= args.warmup:
                    model_times.append(time.perf_counter() - t0)
            shapes = [size]
            what = f"random input {size[0]}x{size[1]}, {args.images} passes"

    mean_model = statistics.mean(model_times)
    print(f"yolos benchmark: {name} on {where}, {dtype_name}, batch 1, {what}")
    mean_h = statistics.mean(s[0] for s in shapes)
    mean_w = statistics.mean(s[1] for s in shapes)
    print(f"  mean input {mean_h:.0f}x{mean_w:.0f}")
    print(f"  model only  : {1 / mean_model:8.2f} FPS  ({mean_model * 1e3:.1f} ms/img mean, "
          f"{statistics.median(model_times) * 1e3:.1f} median)  <- the paper's FPS (preprocessing excluded)")
    if e2e_times:
        mean_e2e = statistics.mean(e2e_times)
        print(f"  end to end  : {1 / mean_e2e:8.2f} FPS  ({mean_e2e * 1e3:.1f} ms/img: decode + "
              f"preprocess + model + postprocess)")
    return 0
