"""Inference precision: one function that turns a ``dtype`` option into the context a forward pass
runs in (:mod:`yolos.model.kernels` does the arithmetic)."""
from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from .. import validate
from ..model.kernels import LowPrecision, low_precision


def precision_for(model, dtype) -> Callable:
    """A context factory running ``model`` in ``dtype``: ``None``/float32 as the model is;
    bfloat16 (or float16, or int8: ``torch.qint8``, CPU only) with the Linear weights of every
    block but the last cast (quantized) once, here,
    and those blocks' matrix products and attention in that dtype inside the context
    (:mod:`yolos.model.kernels`). The patch stem, LayerNorms, residual stream, the last block
    (with the [DET]-only rows, a few percent of the work) and the heads stay fp32: keeping the
    last block fp32 cut the bundled model's changed detections on 2000 held-out images from 35
    to 27, for ~1% of the time. Call it once per use: the cast weights are a snapshot of the model's."""
    dtype = validate.dtype(dtype, "dtype")
    if dtype in (None, torch.float32):
        return contextlib.nullcontext
    if dtype == torch.qint8 and next(model.parameters()).device.type != "cpu":
        raise ValueError("dtype: int8 runs on the CPU only (PyTorch's quantized GEMMs); use bfloat16 on a GPU")
    weights = LowPrecision(model.blocks[:-1], dtype)
    return lambda: low_precision(weights)
