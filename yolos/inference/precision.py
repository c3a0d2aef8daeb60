"""Inference precision: one function that turns a ``dtype`` option into the context a forward pass
runs in (:mod:`yolos.model.kernels` does the arithmetic)."""
from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from .. import validate
from ..model.kernels import LowPrecision, low_precision, settle_bf16_attention
from ..model.variants import input_size

_NAMES = {torch.float16: "fp16", torch.qint8: "int8", torch.bfloat16: "bf16"}


def input_spec(model) -> tuple[torch.device, torch.dtype]:
    """Where a network's inputs go and in what dtype: its first parameter's (or, for an exported
    network, which holds none, its first buffer's; else the CPU in float32)."""
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    return (tensor.device, tensor.dtype) if tensor is not None else (torch.device("cpu"), torch.float32)


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
    fixed = getattr(model, "fixed_precision", None)  # an exported network: its precision was chosen when made
    if fixed is not None:
        if dtype not in (None, torch.float32) and _NAMES.get(dtype) != fixed:
            raise ValueError(f"dtype: this {model.runtime} network runs in {fixed}; its precision is chosen when "
                             f"it is made (--runtime with --dtype)")
        return contextlib.nullcontext
    if dtype in (None, torch.float32):
        return contextlib.nullcontext
    if dtype == torch.qint8 and next(model.parameters()).device.type != "cpu":
        raise ValueError("dtype: int8 runs on the CPU only (PyTorch's quantized GEMMs); use bfloat16 on a GPU")
    weights = LowPrecision(model.blocks[:-1], dtype)
    if dtype == torch.bfloat16 and next(model.parameters()).device.type == "cpu":
        settle_bf16_attention(lambda: _one_pass(model, weights))
    return lambda: low_precision(weights)


def _one_pass(model, weights) -> None:
    """One bf16 inference pass at the model's input size (what the attention choice is timed on)."""
    short, long = input_size(model.config, "transformers")
    x = torch.zeros(1, model.config.num_channels, short, min(long, short * 4 // 3))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), low_precision(weights):
            model(x)
    finally:
        model.train(was_training)
