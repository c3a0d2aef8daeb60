"""``yolos benchmark``: inference speed the paper's way (batch 1, first N images;
:mod:`yolos.analysis.speed`), or one model through every runtime on the same inputs
(``--runtime``; :mod:`yolos.export.compare`): latency, throughput and fidelity."""
from __future__ import annotations

from ..export.runtimes import modes
from . import options as opt
from .types import image_side, non_negative_int, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser(
        "benchmark",
        help="inference FPS (batch 1), or every runtime compared (--runtime): speed and fidelity",
        description="Without --runtime: speed the way the YOLOS paper reports FPS, batch 1 over the first N images "
        "of a folder (sorted names), each resized to the model's evaluation size; model-only and end-to-end FPS "
        "(without --data: random input of one size, model only). With --runtime: the model through each runtime "
        "(PyTorch fp32/bf16/int8, onnxruntime fp32/fp16/int8 on the exported any-size ONNX, OpenVINO on it when "
        "installed) on the same inputs, alternating: batch-1 latency, batch-8 throughput, the first call (which "
        "includes a runtime's compile), and the largest output difference and share of identical detections "
        "against PyTorch fp32.",
    )
    opt.add_model(p, random_weights=True)
    p.add_argument("--data", default=None, help="a folder of images (searched recursively), e.g. a COCO split")
    p.add_argument("--images", type=positive_int, default=100, help="images (or random-input passes) to time")
    p.add_argument("--size", type=image_side, nargs=2, metavar=("H", "W"), default=None,
                   help="input size of the random input (default: a 640x480 photo at the evaluation size)")
    opt.add_size(p)
    opt.add_device(p)
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--warmup", type=non_negative_int, default=3, help="untimed passes first")
    p.add_argument("--runtime", nargs="+", default=None, metavar="NAME",
                   help=f"compare runtimes: 'all' or names from {', '.join(modes())} (missing packages are "
                        f"reported, not fatal)")
    p.add_argument("--repeats", type=positive_int, default=7, help="--runtime: timed rounds (medians)")
    opt.add_dtype(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..analysis.speed import fps_report, image_files, time_files, time_random, timing_size, where
    from ..model.variants import input_size

    opt.check_device(args)
    files = image_files(args.data, args.images) if args.data else None  # refused before any model loads
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.runtime:
        from ..export.compare import compare_runtimes, runtime_table

        if device.type != "cpu":
            raise ValueError("--runtime compares CPU runtimes; use --device cpu")
        model, label = opt.resolve_model(args.model, args.random_weights)
        size = timing_size(model, args.size, args.short_side, args.long_side)
        print(f"yolos benchmark --runtime: {label} on {where(device)}, input {size[0]}x{size[1]}")
        names = list(modes()) if args.runtime == ["all"] else args.runtime
        rows, missing = compare_runtimes(model, names, size, args.repeats, files,
                                         input_size(model.config, "transformers", args.short_side, args.long_side))
        print(runtime_table(rows, missing, names))
        return 0
    model, name = opt.resolve_model(args.model, args.random_weights, device=device)
    if files:
        timed = time_files(model, files, device, args.dtype, args.warmup, args.short_side, args.long_side)
    else:
        timed = time_random(model, timing_size(model, args.size, args.short_side, args.long_side), device,
                            args.dtype, args.warmup, args.images)
    print(fps_report(name, device, args.dtype, *timed))
    return 0
