"""``yolos benchmark``: inference speed the paper's way (batch 1, first N images), or one model
through every runtime on the same inputs (``--runtime``): latency, throughput and fidelity."""
from __future__ import annotations

import statistics
import time
from pathlib import Path

from .. import defaults
from ..images import IMAGE_EXTENSIONS
from . import options as opt


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
    p.add_argument("--images", type=opt.positive_int, default=100, help="images (or random-input passes) to time")
    p.add_argument("--size", type=opt.image_side, nargs=2, metavar=("H", "W"), default=None,
                   help="input size of the random input (default: a 640x480 photo at the evaluation size)")
    opt.add_size(p)
    opt.add_device(p)
    p.add_argument("--threads", type=opt.positive_int, default=None, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--warmup", type=opt.non_negative_int, default=3, help="untimed passes first")
    p.add_argument("--runtime", nargs="+", default=None, metavar="NAME",
                   help="compare runtimes: 'all' or names from torch-fp32, torch-bf16, torch-int8, onnxruntime-fp32, "
                        "onnxruntime-fp16, onnxruntime-int8, openvino-fp32 (missing packages are reported, not fatal)")
    p.add_argument("--repeats", type=opt.positive_int, default=7, help="--runtime: timed rounds (medians)")
    opt.add_dtype(p)
    p.set_defaults(func=run)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _files(folder, limit: int):

    from ..errors import DatasetError

    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"--data {folder}: not a directory")
    files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DatasetError(f"--data {folder}: no images found")
    return files[:limit]


def _where(device) -> str:
    import torch

    from ..hardware import cpu_summary

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({cpu_summary()}), {torch.get_num_threads()} threads"


def _timing_size(model, args) -> tuple[int, int]:
    """The random input's size: --size, else a 640x480 photo resized as predict resizes it."""
    from ..model.variants import input_size
    from ..resize import resize_shape

    if args.size:
        return tuple(args.size)
    return resize_shape(480, 640, *input_size(model.config, "transformers", args.short_side, args.long_side))


def run(args) -> int:
    import torch

    opt.check_device(args)
    if args.data:
        _files(args.data, args.images)  # a bad --data is refused before any model loads
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.runtime:
        return _compare_runtimes(args)
    device = torch.device(args.device)
    model, name = opt.resolve_model(args.model, args.random_weights, device=device)
    if args.data:
        model_times, e2e_times, shapes, what = _time_files(model, args, device)
    else:
        model_times, e2e_times, shapes, what = _time_random(model, args, device)
    _print_fps(name, device, args, what, model_times, e2e_times, shapes)
    return 0


def _time_files(model, args, device):
    """Batch 1 over the first images of --data: (model times, end-to-end times, input sizes, label)."""

    import torch

    from ..images import load_image
    from ..inference.postprocess import postprocess
    from ..inference.precision import precision_for
    from ..inference.preprocess import preprocess
    from ..model.variants import input_size

    files = _files(args.data, args.images)
    short, long = input_size(model.config, "transformers", args.short_side, args.long_side)
    compute = precision_for(model, args.dtype)
    model_times, e2e_times, shapes = [], [], []
    with torch.inference_mode():
        for i, f in enumerate(files[:args.warmup] + files):  # warm-up on the first images, then all timed
            t0 = time.perf_counter()
            batch = preprocess(load_image(f), short_side=short, long_side=long)
            x = batch["pixel_values"].to(device)
            _sync(device)
            t1 = time.perf_counter()
            with compute():
                out = model(x)
            _sync(device)
            t2 = time.perf_counter()
            postprocess(out, target_sizes=batch["original_sizes"], threshold=defaults.THRESHOLD)
            _sync(device)
            if i >= min(args.warmup, len(files)):
                model_times.append(t2 - t1)
                e2e_times.append(time.perf_counter() - t0)
                shapes.append(tuple(x.shape[-2:]))
    return model_times, e2e_times, shapes, f"first {len(files)} images of {args.data} (short side {short}, " \
                                           f"long side {long})"


def _time_random(model, args, device):

    import torch

    from ..inference.precision import precision_for

    size = _timing_size(model, args)
    compute = precision_for(model, args.dtype)
    x = torch.randn(1, model.config.num_channels, *size, device=device)
    times = []
    with torch.inference_mode():
        for i in range(args.warmup + args.images):
            _sync(device)
            t0 = time.perf_counter()
            with compute():
                model(x)
            _sync(device)
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
    return times, [], [size], f"random input {size[0]}x{size[1]}, {args.images} passes"


def _print_fps(name, device, args, what, model_times, e2e_times, shapes) -> None:

    mean_model = statistics.mean(model_times)
    dtype_name = str(args.dtype or "float32").removeprefix("torch.")
    print(f"yolos benchmark: {name} on {_where(device)}, {dtype_name}, batch 1, {what}")
    print(f"  mean input {statistics.mean(s[0] for s in shapes):.0f}x{statistics.mean(s[1] for s in shapes):.0f}")
    print(f"  model only  : {1 / mean_model:8.2f} FPS  ({mean_model * 1e3:.1f} ms/img mean, "
          f"{statistics.median(model_times) * 1e3:.1f} median)  <- the paper's FPS (preprocessing excluded)")
    if e2e_times:
        mean_e2e = statistics.mean(e2e_times)
        print(f"  end to end  : {1 / mean_e2e:8.2f} FPS  ({mean_e2e * 1e3:.1f} ms/img: decode + "
              f"preprocess + model + postprocess)")


def _compare_runtimes(args) -> int:
    """Every runtime asked for, on the same inputs; see :mod:`yolos.export.runtimes`."""

    import torch

    from ..export.runtimes import RUNTIMES, available, make_runtime

    names = list(RUNTIMES) if args.runtime == ["all"] else args.runtime
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown:
        raise ValueError(f"--runtime: unknown {', '.join(unknown)}; known: all, {', '.join(RUNTIMES)}")
    if args.device != "cpu":
        raise ValueError("--runtime compares CPU runtimes; use --device cpu")
    model, label = opt.resolve_model(args.model, args.random_weights)
    threads = torch.get_num_threads()
    size = _timing_size(model, args)
    print(f"yolos benchmark --runtime: {label} on {_where(torch.device('cpu'))}, input {size[0]}x{size[1]}")
    runtimes, missing, setup = {}, {}, {}
    calibration = _files(args.data, args.images) if args.data else None
    for name in ["torch-fp32"] + [n for n in names if n != "torch-fp32"]:
        why = available(name) or ("needs --data images to calibrate on" if name == "openvino-int8" and
                                  calibration is None else None)
        if why:
            missing[name] = why
        else:
            t0 = time.perf_counter()  # export or cache read, quantization, session or compile
            runtimes[name] = make_runtime(name, model, threads, calibration)
            setup[name] = time.perf_counter() - t0
    rows = _time_runtimes(runtimes, model, size, args.repeats)
    for name, seconds in setup.items():
        rows[name]["setup"] = seconds
    _fidelity(runtimes, rows, model, args)
    _print_runtimes(rows, missing, names, args)
    return 0


def _time_runtimes(runtimes: dict, model, size, repeats: int) -> dict:
    """Per runtime: first call, batch-1 latency and batch-8 throughput (medians of alternating rounds)."""

    import numpy as np

    rng = np.random.default_rng(0)
    one = rng.standard_normal((1, model.config.num_channels, *size), dtype=np.float32)
    eight = rng.standard_normal((8, model.config.num_channels, *size), dtype=np.float32)
    rows = {name: {"latency": [], "throughput": []} for name in runtimes}
    settle = 0.05  # s before each timed call: the previous runtime's worker threads stop spinning
    for name, fn in runtimes.items():
        t0 = time.perf_counter()
        fn(one)
        rows[name]["first"] = time.perf_counter() - t0
        fn(eight)
    for _ in range(repeats):
        for name, fn in runtimes.items():
            time.sleep(settle)
            t0 = time.perf_counter()
            fn(one)
            rows[name]["latency"].append(time.perf_counter() - t0)
    for _ in range(max(2, repeats // 3)):
        for name, fn in runtimes.items():
            time.sleep(settle)
            t0 = time.perf_counter()
            out = fn(eight)
            rows[name]["throughput"].append(8 / (time.perf_counter() - t0))
            rows[name]["out8"] = out
    for row in rows.values():
        row["latency"] = statistics.median(row["latency"])
        row["throughput"] = statistics.median(row["throughput"])
    return rows


def _fidelity(runtimes: dict, rows: dict, model, args) -> None:
    """Largest |difference| of logits and boxes from PyTorch fp32 on the batch-8 input, and with
    --data the share of images whose detections at 0.5 are fp32's (labels in order, boxes within 2 px)."""
    import numpy as np
    import torch

    ref = rows["torch-fp32"]["out8"]
    for row in rows.values():
        row["logits"] = float(np.abs(row["out8"][0] - ref[0]).max())
        row["boxes"] = float(np.abs(row["out8"][1] - ref[1]).max())
    if not args.data:
        return
    from ..export.runtimes import same_detections
    from ..images import load_image
    from ..inference.postprocess import postprocess
    from ..inference.preprocess import preprocess
    from ..model.variants import input_size

    short, long = input_size(model.config, "transformers", args.short_side, args.long_side)
    files = _files(args.data, args.images)
    same = {name: 0 for name in runtimes}
    for f in files:  # each image at its own size: the any-size graphs at work
        batch = preprocess(load_image(f), short_side=short, long_side=long)
        x = batch["pixel_values"].numpy()
        found = {}
        for name, fn in runtimes.items():
            logits, boxes = fn(x)
            found[name] = postprocess({"logits": torch.from_numpy(np.asarray(logits)),
                                       "pred_boxes": torch.from_numpy(np.asarray(boxes))},
                                      batch["original_sizes"], threshold=defaults.THRESHOLD)[0]
        for name, det in found.items():
            r = found["torch-fp32"]
            same[name] += same_detections(det, r)
    for name in runtimes:
        rows[name]["identical"] = f"{same[name]}/{len(files)}"


def _print_runtimes(rows: dict, missing: dict, names: list, args) -> None:
    """One Markdown table: PyTorch fp32 (the reference) first, then the runtimes asked for."""
    head = ["runtime", "batch 1 ms (speed-up)", "batch 8 images/s", "set-up s", "first call ms", "max |logit diff|",
            "max |box diff|"] + (["identical detections"] if args.data else [])
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    base = rows["torch-fp32"]["latency"]
    for name in ["torch-fp32"] + [n for n in names if n in rows and n != "torch-fp32"]:
        r = rows[name]
        cells = [name, f"{r['latency'] * 1e3:.1f} ({base / r['latency']:.2f}x)", f"{r['throughput']:.1f}",
                 f"{r['setup']:.1f}", f"{r['first'] * 1e3:.0f}", f"{r['logits']:.1e}", f"{r['boxes']:.1e}"]
        print("| " + " | ".join(cells + ([r["identical"]] if args.data else [])) + " |")
    for name, why in missing.items():
        print(f"| {name} | not run: {why} |")
