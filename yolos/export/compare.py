"""One model through every runtime asked for, on the same inputs: batch-1 latency, batch-8
throughput, the first call, set-up, and fidelity against PyTorch fp32 (``yolos benchmark
--runtime``; the runtimes are :mod:`yolos.export.runtimes`, what predict, val and serve run)."""
from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from .. import defaults
from ..images import load_image
from ..inference.postprocess import postprocess
from ..inference.preprocess import preprocess
from .runtimes import available, make_runtime, modes, same_detections


def compare_runtimes(model, names: list[str], size: tuple[int, int], repeats: int, images: list | None = None,
                     input_size: tuple[int, int] | None = None, threads: int | None = None) -> tuple[dict, dict]:
    """``(rows, missing)``: per runtime run, its measurements (see :func:`runtime_table`); per
    runtime not run, why. ``names``: from :func:`yolos.export.runtimes.modes` (PyTorch fp32 always runs, as the
    reference); ``size``: the random input's; ``images``: files whose detections are compared,
    each at ``input_size`` (short, long), and OpenVINO's int8 calibration set."""
    unknown = [n for n in names if n not in modes()]
    if unknown:
        raise ValueError(f"--runtime: unknown {', '.join(unknown)}; known: all, {', '.join(modes())}")
    threads = threads or torch.get_num_threads()
    runtimes, missing, setup = {}, {}, {}
    for name in ["torch-fp32"] + [n for n in names if n != "torch-fp32"]:
        why = available(name) or ("needs --data images to calibrate on" if name == "openvino-int8" and
                                  not images else None)
        if why:
            missing[name] = why
        else:
            t0 = time.perf_counter()  # export or cache read, quantization, session or compile
            runtimes[name] = make_runtime(name, model, threads, images)
            setup[name] = time.perf_counter() - t0
    rows = _time_runtimes(runtimes, model, size, repeats)
    for name, seconds in setup.items():
        rows[name]["setup"] = seconds
    _fidelity(runtimes, rows, images, input_size)
    return rows, missing


def _time_runtimes(runtimes: dict, model, size, repeats: int) -> dict:
    """Per runtime: first call, batch-1 latency and batch-8 throughput (medians of alternating rounds)."""
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


def _fidelity(runtimes: dict, rows: dict, images, input_size) -> None:
    """Largest |difference| of logits and boxes from PyTorch fp32 on the batch-8 input, and with
    ``images`` the share whose detections at the default threshold are fp32's (labels in order,
    boxes within 2 px)."""
    ref = rows["torch-fp32"]["out8"]
    for row in rows.values():
        row["logits"] = float(np.abs(row["out8"][0] - ref[0]).max())
        row["boxes"] = float(np.abs(row["out8"][1] - ref[1]).max())
    if not images:
        return
    short, long = input_size
    files = images
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


def runtime_table(rows: dict, missing: dict, names: list) -> str:
    """One Markdown table: PyTorch fp32 (the reference) first, then the runtimes asked for, then
    the ones not run and why."""
    compared = "identical" in rows["torch-fp32"]
    head = ["runtime", "batch 1 ms (speed-up)", "batch 8 images/s", "set-up s", "first call ms", "max |logit diff|",
            "max |box diff|"] + (["identical detections"] if compared else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = rows["torch-fp32"]["latency"]
    for name in ["torch-fp32"] + [n for n in names if n in rows and n != "torch-fp32"]:
        r = rows[name]
        cells = [name, f"{r['latency'] * 1e3:.1f} ({base / r['latency']:.2f}x)", f"{r['throughput']:.1f}",
                 f"{r['setup']:.1f}", f"{r['first'] * 1e3:.0f}", f"{r['logits']:.1e}", f"{r['boxes']:.1e}"]
        lines.append("| " + " | ".join(cells + ([r["identical"]] if compared else [])) + " |")
    lines += [f"| {name} | not run: {why} |" for name, why in missing.items()]
    return "\n".join(lines)


__all__ = ["compare_runtimes", "runtime_table"]
