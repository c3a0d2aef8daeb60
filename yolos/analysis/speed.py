"""Speed the way the YOLOS paper reports it: batch 1 over the first N images of a folder (model
only and end to end), or over a random input of one size (``yolos benchmark`` without
``--runtime``)."""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from .. import defaults
from ..errors import DatasetError
from ..hardware import cpu_summary
from ..images import IMAGE_EXTENSIONS, load_image
from ..inference.postprocess import postprocess
from ..inference.precision import precision_for
from ..inference.preprocess import preprocess
from ..model.variants import input_size
from ..resize import resize_shape


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def image_files(folder, limit: int) -> list[Path]:
    """The first ``limit`` image files under ``folder`` (sorted; a DatasetError names the folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"--data {folder}: not a directory")
    files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DatasetError(f"--data {folder}: no images found")
    return files[:limit]


def where(device) -> str:
    """The device in words, for the first line of every benchmark."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({cpu_summary()}), {torch.get_num_threads()} threads"


def timing_size(model, size=None, short_side=None, long_side=None) -> tuple[int, int]:
    """The random input's size: ``size``, else a 640x480 photo resized as predict resizes it."""
    if size:
        return tuple(size)
    return resize_shape(480, 640, *input_size(model.config, "transformers", short_side, long_side))


def time_files(model, files: list, device, dtype=None, warmup: int = 3, short_side=None, long_side=None):
    """Batch 1 over ``files``: ``(model times, end-to-end times, input sizes, label)``."""
    short, long = input_size(model.config, "transformers", short_side, long_side)
    compute = precision_for(model, dtype)
    model_times, e2e_times, shapes = [], [], []
    with torch.inference_mode():
        for i, f in enumerate(files[:warmup] + files):  # warm-up on the first images, then all timed
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
            if i >= min(warmup, len(files)):
                model_times.append(t2 - t1)
                e2e_times.append(time.perf_counter() - t0)
                shapes.append(tuple(x.shape[-2:]))
    return model_times, e2e_times, shapes, f"first {len(files)} images of {Path(files[0]).parent} (short side " \
                                           f"{short}, long side {long})"


def time_random(model, size: tuple[int, int], device, dtype=None, warmup: int = 3, passes: int = 100):
    """Batch 1 on one random input of ``size``: ``(model times, [], [size], label)``."""
    compute = precision_for(model, dtype)
    x = torch.randn(1, model.config.num_channels, *size, device=device)
    times = []
    with torch.inference_mode():
        for i in range(warmup + passes):
            _sync(device)
            t0 = time.perf_counter()
            with compute():
                model(x)
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return times, [], [size], f"random input {size[0]}x{size[1]}, {passes} passes"


def fps_report(name, device, dtype, model_times, e2e_times, shapes, what) -> str:
    """The lines ``yolos benchmark`` prints: the paper's FPS (model only) and end to end."""
    mean_model = statistics.mean(model_times)
    dtype_name = str(dtype or "float32").removeprefix("torch.")
    lines = [f"yolos benchmark: {name} on {where(device)}, {dtype_name}, batch 1, {what}"]
    height, width = statistics.mean(s[0] for s in shapes), statistics.mean(s[1] for s in shapes)
    lines.append(f"  mean input {height:.0f}x{width:.0f}")
    lines.append(f"  model only  : {1 / mean_model:8.2f} FPS  ({mean_model * 1e3:.1f} ms/img mean, "
                 f"{statistics.median(model_times) * 1e3:.1f} median)  <- the paper's FPS (preprocessing excluded)")
    if e2e_times:
        mean_e2e = statistics.mean(e2e_times)
        lines.append(f"  end to end  : {1 / mean_e2e:8.2f} FPS  ({mean_e2e * 1e3:.1f} ms/img: decode + "
                     f"preprocess + model + postprocess)")
    return "\n".join(lines)


__all__ = ["image_files", "where", "timing_size", "time_files", "time_random", "fps_report"]
