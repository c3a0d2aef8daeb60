"""Prediction from any image sources to :class:`Detections`, batched without padding.

Batching design: YOLOS has no attention mask, so zero padding becomes real tokens that every
[DET] token attends to, and the position-embedding grid is resampled to the padded size. A padded
batch therefore gives *different* detections than the same images one at a time
(hustvl/YOLOS#10, detr#217). :func:`predict` never pads: images are bucketed by their resized
``(h, w)`` and only images of one bucket share a forward pass, so batched prediction equals
single-image prediction (up to float summation order). Buckets run as soon as they hold
``batch_size`` images; to bound memory when many sizes are in flight, the fullest bucket is
also flushed once ``4 * batch_size`` images are waiting. Results come back in input order.
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import defaults, validate
from ..box_ops import clip_boxes
from ..errors import ImageError, PredictionError
from ..images import describe, load_image
from ..model.variants import input_size
from .batching import chunks, same_size_batches
from .detections import Detections
from .postprocess import non_finite, postprocess
from .precision import input_spec, precision_for
from .preprocess import _map, pixel_batch, target_size

WAITING_FACTOR = 4  # flush the fullest bucket once WAITING_FACTOR * batch_size images wait


def _sources(images) -> Iterable:
    """A list/iterable of single-image sources from whatever the user passed."""
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return list(images)  # [B, C, H, W]
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)  # [B, H, W, C]
    if isinstance(images, (str, Path, bytes, bytearray, np.ndarray, torch.Tensor, Image.Image)):
        return [images]
    return images




def check_predict_options(threshold, batch_size, top_k, short_side, long_side, dtype=None) -> tuple:
    """The prediction options as the values they stand for (``"0.3"`` -> 0.3), or a ValueError
    naming the bad one."""
    return (validate.threshold(threshold, "threshold"), validate.positive_int(batch_size, "batch_size"),
            None if top_k is None else validate.positive_int(top_k, "top_k"),
            None if short_side is None else validate.image_side(short_side, "short_side"),
            None if long_side is None else validate.image_side(long_side, "long_side"),
            validate.dtype(dtype, "dtype"))


def on_device(model, device):
    """``model`` if it is on ``device`` already (or none is given), else a copy there: a predict
    call never moves (or, with a device that holds no data, destroys) the caller's model. Move it
    once with ``model.to(device)`` to avoid the copy on every call."""
    if device is None:
        return model
    device = validate.device(device, "device")
    current = input_spec(model)[0]
    if current == device or (device.index is None and current.type == device.type):
        return model
    if getattr(model, "fixed_precision", None) is not None:
        raise ValueError(f"device: this {model.runtime} network runs on the CPU; use --runtime torch for {device}")
    return copy.deepcopy(model).to(device)


@dataclass
class _Run:
    """What every bucket of one ``iter_predict`` call shares."""

    network: object
    compute: Callable
    threshold: float
    top_k: int | None
    on_error: Callable | None
    dtype: object


def _load(item: tuple[int, object], short_side: int, long_side: int, rule: str):
    """``(index, source, PIL image or ImageError, resized size or None)`` of one source."""
    index, source = item
    try:
        pil = load_image(source)
        return index, source, pil, target_size(pil, short_side, long_side, rule, describe(source))
    except ImageError as err:
        return index, source, err, None


def _loaded(sources, batch_size: int, short_side: int, long_side: int, rule: str, on_error):
    """The readable images with their resized size, decoded a batch worth at a time on threads
    (PIL releases the GIL); an unreadable one goes to ``on_error`` (or raises without it)."""
    for chunk in chunks(enumerate(sources), batch_size):
        for index, source, pil, size in _map(lambda item: _load(item, short_side, long_side, rule), chunk):
            if size is None:
                if on_error is None:
                    raise pil
                on_error(index, source, pil)
                continue
            yield index, source, pil, size


def _detections(config, det: dict, original: tuple[int, int], source, pil) -> Detections:
    labels = det["labels"].cpu()
    return Detections(
        boxes=det["boxes"].cpu(), scores=det["scores"].cpu(), labels=labels,
        label_names=[config.label_name(int(c)) for c in labels], image_size=tuple(original),
        # the decoded image goes along (plot/save need not read the file again); predict() drops
        # it for path sources so that a long list of files is not held in memory
        image=pil, path=str(source) if isinstance(source, (str, Path)) else None,
        category_ids=torch.tensor([config.category_id(int(c)) for c in labels], dtype=torch.int64))


def _run_bucket(run: _Run, size: tuple[int, int], items: list) -> list[tuple[int, Detections]]:
    """One forward pass over images of one resized size (no padding): their Detections, boxes
    scaled to each original image and clipped to it; non-finite outputs go to ``on_error``."""
    images = [pil for _, _, pil in items]
    device, dtype = input_spec(run.network)
    pixel_values = pixel_batch(images, [size] * len(images)).to(device, dtype, non_blocking=True)
    original_sizes = [(im.size[1], im.size[0]) for im in images]
    with torch.inference_mode(), run.compute():
        outputs = run.network(pixel_values)
    decoded = postprocess(outputs, original_sizes, threshold=run.threshold, top_k=run.top_k)
    broken = set(non_finite(outputs))
    out = []
    for i, ((index, source, pil), (h, w), det) in enumerate(zip(items, original_sizes, decoded)):
        if i in broken:
            err = PredictionError(f"{describe(source)}: the model's outputs are not finite (NaN or inf); no boxes "
                                  f"can be given (broken weights, or a {run.dtype or 'float32'} overflow?)")
            if run.on_error is None:
                raise err
            run.on_error(index, source, err)
            continue
        det["boxes"] = clip_boxes(det["boxes"], w, h)  # inside the image (transformers' are not clipped)
        out.append((index, _detections(run.network.config, det, (h, w), source, pil)))
    return out


def iter_predict(
    model,
    images,
    threshold: float = defaults.THRESHOLD,
    batch_size: int = defaults.MAX_BATCH,
    top_k: int | None = None,
    short_side: int | None = None,
    long_side: int | None = None,
    rule: str = "hf",
    device=None,
    on_error: Callable[[int, object, ImageError], None] | None = None,
    dtype=None,
) -> Iterator[tuple[int, Detections]]:
    """Stream ``(input index, Detections)`` in completion order (see :func:`predict`).

    ``on_error(index, source, error)``, when given, receives images that cannot be read (an
    :class:`ImageError`) or whose outputs are not finite (a :class:`PredictionError`), and they
    are skipped; without it the error propagates.
    """
    threshold, batch_size, top_k, short_side, long_side, dtype = check_predict_options(
        threshold, batch_size, top_k, short_side, long_side, dtype)
    short_side, long_side = input_size(model.config, "transformers", short_side, long_side)
    model = on_device(model, device)
    run = _Run(model, precision_for(model, dtype), threshold, top_k, on_error, dtype)  # after the move
    was_training = model.training
    model.eval()
    try:
        loaded = _loaded(_sources(images), batch_size, short_side, long_side, rule, on_error)
        for size, group in same_size_batches(loaded, lambda item: item[3], batch_size, WAITING_FACTOR * batch_size):
            yield from _run_bucket(run, size, [item[:3] for item in group])
    finally:
        model.train(was_training)


def predict(
    model,
    images,
    threshold: float = defaults.THRESHOLD,
    batch_size: int = defaults.MAX_BATCH,
    top_k: int | None = None,
    short_side: int | None = None,
    long_side: int | None = None,
    rule: str = "hf",
    device=None,
    on_error="raise",
    dtype=None,
) -> list[Detections | None]:
    """Detect objects; one :class:`Detections` per input image, in input order.

    Args:
        model: a :class:`yolos.YOLOS` (put in eval mode for the call, restored after).
        images: one source or a list (paths, PIL images, ``[H, W, C]`` arrays, ``[C, H, W]``
            tensors; a ``[B, C, H, W]`` tensor is B images).
        threshold: keep detections with score strictly above it (:data:`yolos.defaults.THRESHOLD`,
            0.5 as transformers' pipeline;
            YOLOS scores run low, 0.3 is a reasonable value for inspection).
        batch_size: images per forward pass. Only images with the same resized size are
            batched together (see the module docstring), so results do not depend on it.
        top_k: keep at most the k highest-scoring detections per image.
        short_side, long_side: resize target; default from the model's variant
            (:func:`yolos.model.eval_sizes`, transformers' protocol: S/B 800/1333, Ti 512/1333). The
            paper's protocol is ``short_side=512, long_side=853, rule="orig"`` for Ti.
        rule: ``"hf"`` or ``"orig"`` resize rounding (:func:`yolos.resize.resize_shape`).
        device: run there (default: wherever the model is); a model elsewhere is copied
            there for the call (:func:`on_device`), never moved.
        dtype: compute dtype: ``None``/``"float32"`` (the model as it is) or ``"bfloat16"``
            (``"bf16"``), which runs the backbone's matrix products and attention in bf16
            (:func:`precision_for`): on CPUs with AMX several times faster, with detections
            equal to float32's on almost every image (README, Benchmarks).
        on_error: what an unreadable image does. ``"raise"`` (default): raise its
            :class:`yolos.ImageError` (no results are returned). ``"skip"``: its place in the
            returned list is ``None``, a ``RuntimeWarning`` names it, and every other image is
            still predicted (what ``yolos predict`` does). A callable ``f(index, source, error)``
            is called instead of the warning.
    """
    if on_error == "raise":
        handler = None
    elif on_error == "skip":
        def handler(index, source, err):
            warnings.warn(f"skipped image {index}: {err}", RuntimeWarning, stacklevel=4)
    elif callable(on_error):
        handler = on_error
    else:
        raise ValueError(f"on_error: expected 'raise', 'skip' or a callable, got {on_error!r}")
    sources = list(_sources(images))
    results: dict[int, Detections] = {}
    for index, det in iter_predict(
        model, sources, threshold=threshold, batch_size=batch_size, top_k=top_k,
        short_side=short_side, long_side=long_side, rule=rule, device=device, on_error=handler,
        dtype=dtype,
    ):
        # Keep no decoded copy: plot() decodes again from the file, or from the caller's own
        # in-memory source (1000 images must not cost 1000 decoded bitmaps).
        det.image = None if det.path is not None else sources[index]
        results[index] = det
    return [results.get(i) for i in range(len(sources))]


