"""Export a YOLOS model to ONNX or TorchScript: one file for every input size, or one fixed size.

Any size (the default): the graph takes ``pixel_values [B, 3, H, W]`` with H and W any multiples
of the patch size, and resamples the position embeddings from the input's shape inside the
graph, with PyTorch's own bicubic interpolation written as two interpolation matrices
(:mod:`yolos.model.pos_embed`; ONNX's cubic Resize differs from PyTorch's), so its outputs are
``model(pixel_values)``'s at every size. Fixed size (``size=(H, W)``): the embeddings are
resampled once and stored as constants. Both keep a dynamic batch axis.

Precision (ONNX): ``fp32``; ``fp16`` (weights and activations in half precision, with the
LayerNorms, softmaxes and the resampling kept in fp32 by onnxconverter-common's converter;
inputs and outputs stay fp32); ``int8`` (onnxruntime's dynamic quantization of the weight
matrix products: int8 weights per output channel, activations quantized per tensor at run time).

Graph contract: input ``pixel_values`` float32; outputs ``logits [B, T, C+1]`` and
``pred_boxes [B, T, 4]`` (normalized cx, cy, w, h), exactly as ``model(pixel_values)``.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import YolosError
from ..files import atomic_path
from ..model import kernels


@dataclass(frozen=True)
class Format:
    """A row of the export-format table: the file suffix, the precisions it is written in, and
    its writer ``write(graph, example input, path, opset, any_size, precision)``."""

    suffix: str
    precisions: tuple
    write: Callable


def _write_torchscript(graph: nn.Module, example: Tensor, path: Path, opset: int, any_size: bool, dtype: str) -> None:
    traced = torch.jit.freeze(torch.jit.trace(graph, example, check_trace=False))
    with atomic_path(path, suffix=".pt") as tmp:
        torch.jit.save(traced, str(tmp))


def _write_onnx(graph: nn.Module, example: Tensor, path: Path, opset: int, any_size: bool, dtype: str) -> None:
    _export_onnx(graph, example, path, opset, dynamic_size=any_size, dtype=dtype)


FORMATS: dict[str, Format] = {
    "onnx": Format(".onnx", ("fp32", "fp16", "int8"), _write_onnx),
    "torchscript": Format(".pt", ("fp32",), _write_torchscript),
}
PRECISIONS = ("fp32", "fp16", "int8")
# Kept in fp32 in an fp16 graph: normalisation and softmax accumulate there; the position-
# embedding resampling builds its matrices from integer ranges.
FP16_KEEP_FP32 = ["LayerNormalization", "Softmax", "Range", "Floor", "Equal", "Sigmoid"]


class ExportError(YolosError, ValueError):
    """An export request that cannot be honoured (size, format, file); the message names the value."""


class Detector(nn.Module):
    """``pixel_values [B, 3, H, W] -> (logits, pred_boxes)`` at any size (what the graph is)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: Tensor) -> tuple[Tensor, Tensor]:
        out = self.model(pixel_values)
        return out["logits"], out["pred_boxes"]


class BakedYOLOS(nn.Module):
    """``pixel_values [B, 3, H, W] -> (logits, pred_boxes)`` for one fixed ``(H, W)``, with the
    position embeddings for that size held as buffers (constants in an exported graph)."""

    def __init__(self, model: nn.Module, size: tuple[int, int]):
        super().__init__()
        self.model = model
        self.size = tuple(size)
        p = model.config.patch_size
        with torch.no_grad():
            pos, mid = model.position_embeddings((size[0] // p, size[1] // p))
        self.register_buffer("pos", pos.detach().clone(), persistent=False)
        self.register_buffer("mid", None if mid is None else mid.detach().clone(), persistent=False)

    def forward(self, pixel_values: Tensor) -> tuple[Tensor, Tensor]:
        out = self.model.forward_with_pos_embed(pixel_values, self.pos, self.mid)
        return out["logits"], out["pred_boxes"]


MAX_EXPORT_SIDE = 8192
MAX_EXPORT_PIXELS = 2048 * 2048  # 16,384 tokens at patch 16: 1 GB per attention map in fp32


def check_size(size, patch_size: int) -> tuple[int, int]:
    """``(H, W)`` as ints, or a YolosError naming the size when it is not a multiple of the patch."""
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ExportError(f"export size must be two integers (H, W), got {size!r}") from None
    if not (0 < h <= MAX_EXPORT_SIDE and 0 < w <= MAX_EXPORT_SIDE) or h * w > MAX_EXPORT_PIXELS:
        raise ExportError(
            f"--size {h} {w}: each side must be 1..{MAX_EXPORT_SIDE} and H x W at most "
            f"{MAX_EXPORT_PIXELS:,} pixels (YOLOS-S at 800x1333 is 1,066,400); tracing a larger "
            f"input needs memory quadratic in its token count")
    if h % patch_size or w % patch_size:
        fh, fw = max(patch_size, h // patch_size * patch_size), max(patch_size, w // patch_size * patch_size)
        raise ExportError(
            f"export size {h}x{w} is not a multiple of the patch size {patch_size}: the model would "
            f"drop the leftover pixels; pad or resize your inputs to e.g. {fh}x{fw} and export that"
        )
    return h, w


@contextlib.contextmanager
def _portable_ops():
    """Graph export records standard ops only (no oneDNN inference shortcut)."""
    previous = kernels.ONEDNN_LINEAR
    kernels.ONEDNN_LINEAR = False
    try:
        yield
    finally:
        kernels.ONEDNN_LINEAR = previous


def check_export(format: str, dtype: str, path) -> Path:
    """Refuse, before anything runs, a format or precision we do not write, and a path that
    exists: an export never writes over a file (a checkpoint given as --out, say)."""
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if dtype not in PRECISIONS:
        raise ExportError(f"--dtype: expected one of {', '.join(PRECISIONS)}, got {dtype!r}")
    if dtype not in FORMATS[format].precisions:
        raise ExportError(f"--dtype {dtype}: {format} is written in {', '.join(FORMATS[format].precisions)} only")
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"--out: {path} is a folder; give a file name inside it")
    if path.exists() or path.is_symlink():
        raise ExportError(f"--out: {path} exists; an export never writes over a file (choose another name)")
    return path


def export_model(model: nn.Module, path, format: str = "onnx", size: tuple[int, int] | None = None,
                 dtype: str = "fp32", opset: int = 18) -> Path:
    """Write ``model`` to ``path`` (which must not exist).

    Args:
        model: a :class:`yolos.YOLOS`; exported on CPU, in eval mode.
        path: output file (``.onnx`` or ``.pt``).
        format: a name of :data:`FORMATS` (``"onnx"``, ``"torchscript"``).
        size: ``None`` for any input size (multiples of the patch size), or ``(H, W)`` for a
            graph of that size only, with the position embeddings stored as constants.
        dtype: ``"fp32"``, ``"fp16"`` or ``"int8"`` (ONNX only; see the module doc).
        opset: ONNX opset.

    Returns:
        The path written. Input ``pixel_values``, outputs ``logits`` and ``pred_boxes``.
    """
    path = check_export(format, dtype, path)
    if size is not None:
        size = check_size(size, model.config.patch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    if any(t.device.type != "cpu" for t in model.parameters()):
        model = copy.deepcopy(model).cpu()  # exported on the CPU; the caller's model stays where it is
    was_training = model.training
    model = model.eval()
    p = model.config.patch_size
    graph = (BakedYOLOS(model, size) if size is not None else Detector(model)).eval().cpu().float()
    example = torch.zeros(2, model.config.num_channels, *(size or (4 * p, 6 * p)))
    try:
        with _portable_ops(), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer chatter about shape-dependent Python ints
            FORMATS[format].write(graph, example, path, opset, size is None, dtype)
    finally:
        model.train(was_training)
    return path


def _weight_products(model) -> list[str]:
    """Names of the matrix products by a 2-D weight: the linear layers that int8 quantizes. The
    position-embedding resampling multiplies by 3-D constants, which stay fp32 (onnxruntime's
    per-channel int8 product takes 2-D weights only)."""
    shapes = {t.name: len(t.dims) for t in model.graph.initializer}
    return [n.name for n in model.graph.node
            if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and shapes.get(n.input[1]) == 2]


def _unshared_weights(model):
    """The graph with no weight shared between a kept-fp32 node and an fp16 one. The exporter
    folds equal weights into one (a random model's zero biases, say), aliased through Identity
    nodes; the fp16 converter then gives one consumer the wrong type, which onnxruntime refuses.
    Each aliased use gets its own copy, and kept-fp32 consumers their own."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    for node in [n for n in graph.node if n.op_type == "Identity"]:
        if node.input[0] in inits and node.output[0] not in outputs:
            copy = _onnx_copy(inits[node.input[0]], node.output[0])
            graph.initializer.append(copy)
            inits[copy.name] = copy
            graph.node.remove(node)
    converted_users = {name for n in graph.node if n.op_type not in FP16_KEEP_FP32 for name in n.input}
    for node in graph.node:
        if node.op_type not in FP16_KEEP_FP32:
            continue
        for i, name in enumerate(node.input):
            if name in inits and name in converted_users:  # also read by a node made fp16
                copy = _onnx_copy(inits[name], f"{name}__fp32_{node.name}")
                graph.initializer.append(copy)
                node.input[i] = copy.name
    return model


def _onnx_copy(tensor, name: str):
    copy = type(tensor)()
    copy.CopyFrom(tensor)
    copy.name = name
    return copy


def _export_onnx(graph: nn.Module, example: Tensor, path: Path, opset: int, dynamic_size: bool, dtype: str) -> None:
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'yolos[export]'") from None
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"}
    try:  # beside the output, so that the final move is a rename; named by the output if it fails
        workdir = tempfile.TemporaryDirectory(dir=path.parent)
    except OSError as err:
        raise ExportError(f"--out: cannot write into {path.parent} ({err.strerror or err})") from None
    with workdir as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        torch.onnx.export(graph, (example,), str(fp32), input_names=["pixel_values"],
                          output_names=["logits", "pred_boxes"], opset_version=opset, dynamo=False,
                          dynamic_axes={"pixel_values": axes, "logits": {0: "batch"}, "pred_boxes": {0: "batch"}})
        result = Path(tmp) / "out.onnx"
        if dtype == "fp32":
            result = fp32
        elif dtype == "fp16":
            try:
                from onnxconverter_common import float16
            except ImportError:
                raise ExportError("fp16 ONNX needs onnxconverter-common: pip install 'yolos[export]'") from None
            full = _unshared_weights(onnx.load(str(fp32)))
            # the graph's own casts to float32 stay so (the converter would retype their outputs
            # to fp16 but not their target, which onnxruntime refuses)
            casts = [n.name for n in full.graph.node if n.op_type == "Cast"
                     and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in n.attribute)]
            half = float16.convert_float_to_float16(full, keep_io_types=True, op_block_list=FP16_KEEP_FP32,
                                                    node_block_list=casts)
            onnx.save(half, str(result))
        else:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            root = logging.getLogger()
            level = root.level
            root.setLevel(logging.ERROR)  # onnxruntime's advice to pre-process, logged on the root logger
            try:
                quantize_dynamic(str(fp32), str(result), weight_type=QuantType.QInt8, per_channel=True,
                                 nodes_to_quantize=_weight_products(onnx.load(str(fp32))),
                                 op_types_to_quantize=["MatMul", "Gemm"], extra_options={"MatMulConstBOnly": True})
            finally:
                root.setLevel(level)
        result.replace(path)
