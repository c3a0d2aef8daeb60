"""Images -> padded, normalized ``pixel_values``, numerically as transformers' PIL YOLOS processor.

Pipeline per image: :func:`resize_shape` (shortest side to ``short_side``, longest
capped at ``long_side``, both floored to a multiple of 16) -> PIL bilinear resize on uint8 ->
``x / 255`` -> ImageNet ``(x - mean) / std`` -> zero padding at the bottom/right up to the batch's
largest height and width. transformers does the rescale in float64 and normalizes in a second
numpy pass; here each channel goes uint8 -> float32 once, straight into its slot of the
preallocated batch (numpy, shared with the returned tensor), with ``1 / (255 std)`` and
``-mean / std`` folded into one multiply-add (differences are float32 rounding, ~1e-7).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

from ..images import IMAGENET_MEAN, IMAGENET_STD, describe, load_image
from ..resize import resize_shape

# x * SCALE + SHIFT == (x / 255 - mean) / std, per channel.
_SCALE = tuple(np.float32(1.0 / (255.0 * s)) for s in IMAGENET_STD)
_SHIFT = tuple(np.float32(-m / s) for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))


_POOL: ThreadPoolExecutor | None = None


def _map(fn, items: list) -> list:
    """``[fn(x) for x in items]``, spread over threads for batches: PIL decoding/resizing and numpy
    arithmetic release the GIL, so images of a batch are processed in parallel."""
    global _POOL
    if len(items) < 2 or (os.cpu_count() or 1) < 2:
        return [fn(x) for x in items]
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="yolos-pre")
    return list(_POOL.map(fn, items))


def _as_list(images) -> list:
    if isinstance(images, (list, tuple)):
        return list(images)
    return [images]


def target_size(
    image: Image.Image, short_side: int, long_side: int | None, rule: str = "hf", name: str = "image"
) -> tuple[int, int]:
    """The ``(h, w)`` an RGB PIL image is resized to (:func:`yolos.resize.resize_shape`: at least
    one patch per side, so a very thin image is stretched to one patch across)."""
    w, h = image.size
    return resize_shape(h, w, short_side, long_side, rule=rule)


def normalize_into(out: np.ndarray, image: Image.Image) -> None:
    """Write an RGB uint8 PIL image ``[h, w]`` normalized into ``out``, a float32 ``[3, h, w]`` view."""
    # One contiguous uint8 band per channel (faster than permuting an HWC array), converted and
    # scaled in a single numpy pass. numpy rather than torch: torch's intra-op threads stall
    # badly on a busy machine for element-wise work this small.
    for c, band in enumerate(image.split()):
        plane = out[c]
        np.multiply(np.asarray(band), _SCALE[c], out=plane)
        plane += _SHIFT[c]


def preprocess(
    images,
    short_side: int = 800,
    long_side: int | None = 1333,
    rule: str = "hf",
) -> dict:
    """Resize, normalize and pad a batch.

    Args:
        images: one source or a list of them (paths, PIL images, arrays, tensors; see
            :func:`yolos.load_image`).
        short_side, long_side: the resize target (transformers' ``shortest_edge`` and
            ``longest_edge``; hustvl/YOLOS evaluates Ti at 512 / 853 and S, B at 800 / 1333).
        rule: ``"hf"`` (transformers) or ``"orig"`` (hustvl/YOLOS); see :func:`resize_shape`.

    Returns:
        ``{"pixel_values": float32 [B, 3, H, W]`` (zero-padded bottom/right to the batch
        maximum), ``"original_sizes": [(h, w), ...]``, ``"resized_sizes": [(h, w), ...]}``.
        Boxes predicted on a padded image are relative to the padded canvas; feed same-size
        batches (as :func:`yolos.predict` does) to avoid padding altogether.
    """
    sources = _as_list(images)
    if not sources:
        raise ValueError("preprocess needs at least one image")
    pil = _map(load_image, sources)
    originals = [(im.size[1], im.size[0]) for im in pil]
    sizes = [target_size(im, short_side, long_side, rule, describe(s)) for im, s in zip(pil, sources)]
    return {"pixel_values": pixel_batch(pil, sizes), "original_sizes": originals, "resized_sizes": sizes}


def pixel_batch(pil: list[Image.Image], sizes: list[tuple[int, int]]) -> torch.Tensor:
    """Loaded RGB images resized to their ``(h, w)`` in ``sizes``, normalized and zero-padded
    bottom/right to the largest: float32 ``[B, 3, H, W]`` (the second half of :func:`preprocess`,
    for callers that have loaded and sized the images already)."""
    height = max(h for h, _ in sizes)
    width = max(w for _, w in sizes)
    batch = np.zeros((len(pil), 3, height, width), dtype=np.float32)  # the padding is this zero

    def fill(i: int) -> None:
        (h, w), im = sizes[i], pil[i]
        if (w, h) != im.size:
            im = im.resize((w, h), Image.BILINEAR)
        normalize_into(batch[i, :, :h, :w], im)

    _map(fill, range(len(pil)))
    return torch.from_numpy(batch)
