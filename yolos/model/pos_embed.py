"""The one position-embedding resampler (timm's ``resample_abs_pos_embed``, with a [DET] suffix).

It is used at load time (DeiT grid -> detection grid) and in every forward pass (stored grid ->
input grid), for the initial and the mid position embeddings alike.

The resampling is PyTorch's bicubic interpolation (``F.interpolate(mode="bicubic",
align_corners=False)``: cubic convolution with A = -0.75, border pixels repeated) written as two
interpolation matrices built from the target size (:func:`bicubic_matrix`), so the same code
runs eagerly and inside an exported graph whose input size is only known at run time (ONNX's own
cubic Resize differs from PyTorch's). It equals ``F.interpolate`` up to float32 rounding (a few
1e-6 on unit values; tests/test_model_core.py).
"""
from __future__ import annotations

import torch
from torch import Tensor, cat

CUBIC_A = -0.75  # PyTorch's (and OpenCV's) cubic convolution coefficient


def _near(d: Tensor) -> Tensor:  # weight of a tap at distance d <= 1
    return ((CUBIC_A + 2) * d - (CUBIC_A + 3)) * d * d + 1


def _far(d: Tensor) -> Tensor:  # weight of a tap at distance 1 < d < 2
    return ((CUBIC_A * d - 5 * CUBIC_A) * d + 8 * CUBIC_A) * d - 4 * CUBIC_A


def bicubic_matrix(src: int, dst, dtype=torch.float32, device=None) -> Tensor:
    """``[dst, src]``: row i holds the weights output i takes from each input (PyTorch's
    ``align_corners=False`` source coordinate ``(i + 0.5) * src / dst - 0.5``, four taps, indices
    clamped to the border). ``dst`` may be a 0-dim tensor (a traced size)."""
    dst = torch.as_tensor(dst, device=device)
    i = torch.arange(dst, device=device).to(dtype)
    x = (i + 0.5) * (torch.tensor(float(src), dtype=dtype, device=device) / dst.to(dtype)) - 0.5
    x0 = torch.floor(x)
    t = x - x0
    weights = torch.stack([_far(t + 1), _near(t), _near(1 - t), _far(2 - t)], dim=1)  # [dst, 4]
    taps = (x0.long()[:, None] + torch.arange(-1, 3, device=device)[None, :]).clamp(0, src - 1)  # [dst, 4]
    onehot = (taps[..., None] == torch.arange(src, device=device)[None, None, :]).to(dtype)  # [dst, 4, src]
    return (weights[..., None] * onehot).sum(1)


def resample_pos_embed(
    pos_embed: Tensor,
    src_grid: tuple[int, int],
    dst_grid,
    num_prefix: int = 1,
    num_suffix: int = 0,
) -> Tensor:
    """Bicubically resample the patch-grid part of a position embedding.

    Args:
        pos_embed: ``[N, num_prefix + src_h * src_w + num_suffix, D]``; ``N`` stacks independent
            embeddings (e.g. the ``L - 1`` mid embeddings) that are resampled in one call.
        src_grid: ``(src_h, src_w)``, the grid the patch part is laid out on (row-major).
        dst_grid: ``(dst_h, dst_w)``, the wanted grid (ints, or 0-dim tensors in a traced graph).
        num_prefix: tokens before the grid (the cls token), kept as they are.
        num_suffix: tokens after the grid (the [DET] tokens), kept as they are.

    Returns:
        ``[N, num_prefix + dst_h * dst_w + num_suffix, D]``. Always interpolates (as
        transformers does), so a same-count grid of another shape (32x54 vs 54x32) is laid out
        correctly; equal sizes are an exact identity.
    """
    n, length, dim = pos_embed.shape
    src_h, src_w = src_grid
    if length != num_prefix + src_h * src_w + num_suffix:
        raise ValueError(
            f"position embedding has {length} tokens, expected {num_prefix} + {src_h}x{src_w} "
            f"+ {num_suffix}"
        )
    prefix = pos_embed[:, :num_prefix]
    suffix = pos_embed[:, length - num_suffix:]
    grid = pos_embed[:, num_prefix:length - num_suffix].float()  # [N, src_h*src_w, D]
    grid = grid.transpose(1, 2).reshape(n, dim, src_h, src_w)  # [N, D, src_h, src_w]
    rows = bicubic_matrix(src_h, dst_grid[0], device=grid.device)  # [dst_h, src_h]
    cols = bicubic_matrix(src_w, dst_grid[1], device=grid.device)  # [dst_w, src_w]
    grid = rows @ grid @ cols.T  # [N, D, dst_h, dst_w]
    grid = grid.flatten(2).transpose(1, 2).to(pos_embed.dtype)  # [N, dst_h*dst_w, D]
    return cat([prefix, grid, suffix], dim=1)
