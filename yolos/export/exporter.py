"""Export a YOLOS model for one input size to ONNX or TorchScript.

The position embeddings are resampled once to the export size and stored in the graph as
constants, so the exported graph holds no bicubic interpolation (ONNX Runtime's "Cubic" Resize
differs from PyTorch's, and the op is slow); the batch axis stays dynamic.

Graph contract: input ``pixel_values [B, 3, H, W]`` float32; outputs ``logits [B, T, C+1]`` and
``pred_boxes [B, T, 4]`` (normalized cx, cy, w, h), exactly as ``model(pixel_values)``.
"""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import YolosError
from ..model import kernels

FORMATS = ("onnx", "torchscript")


class ExportError(YolosError, ValueError):
    """An export request that cannot be honoured (size, format); the message names the value."""


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


def export_model(
    model: nn.Module,
    path,
    format: str = "onnx",
    size: tuple[int, int] | None = None,
    opset: int = 18,
) -> Path:
    """Write ``model`` for inputs of ``size = (H, W)`` (default: the variant's evaluation size
    rounded down to the patch size is *not* guessed: the model config's ``image_size``).

    Args:
        model: a :class:`yolos.YOLOS`; exported on CPU in fp32, in eval mode.
        path: output file (``.onnx`` or ``.pt``/``.torchscript``).
        format: ``"onnx"`` or ``"torchscript"``.
        size: ``(H, W)``, multiples of the patch size (16), else a YolosError.
        opset: ONNX opset.

    Returns:
        The path written. The graph has a dynamic batch axis; input ``pixel_values``, outputs
        ``logits`` and ``pred_boxes``.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    size = check_size(size if size is not None else model.config.image_size, model.config.patch_size)
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"--out: {path} is a folder; give a file name inside it")
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model = model.eval()
    baked = BakedYOLOS(model, size).eval().cpu().float()
    example = torch.zeros(2, model.config.num_channels, *size)
    try:
        with _portable_ops(), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer chatter about shape-dependent Python ints
            if format == "onnx":
                _export_onnx(baked, example, path, opset)
            else:
                traced = torch.jit.trace(baked, example, check_trace=False)
                traced = torch.jit.freeze(traced)
                torch.jit.save(traced, str(path))
    finally:
        model.train(was_training)
    return path


def _export_onnx(baked: nn.Module, example: Tensor, path: Path, opset: int) -> None:
    try:
        import onnx  # noqa: F401  (the exporter needs it; say so plainly)
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'yolos[export]'") from None
    torch.onnx.export(
        baked,
        (example,),
        str(path),
        input_names=["pixel_values"],
        output_names=["logits", "pred_boxes"],
        dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}, "pred_boxes": {0: "batch"}},
        opset_version=opset,
        dynamo=False,
    )
