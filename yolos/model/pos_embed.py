"""The one position-embedding resampler (timm's ``resample_abs_pos_embed``, with a [DET] suffix).

It is used at load time (DeiT grid -> detection grid) and in every forward pass (stored grid ->
input grid), for the initial and the mid position embeddings alike.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, cat


def resample_pos_embed(
    pos_embed: Tensor,
    src_grid: tuple[int, int],
    dst_grid: tuple[int, int],
    num_prefix: int = 1,
    num_suffix: int = 0,
) -> Tensor:
    """Bicubically resample the patch-grid part of a position embedding.

    Args:
        pos_embed: ``[N, num_prefix + src_h * src_w + num_suffix, D]``; ``N`` stacks independent
            embeddings (e.g. the ``L - 1`` mid embeddings) that are resampled in one call.
        src_grid: ``(src_h, src_w)``, the grid the patch part is laid out on (row-major).
        dst_grid: ``(dst_h, dst_w)``, the wanted grid.
        num_prefix: tokens before the grid (the cls token), kept as they are.
        num_suffix: tokens after the grid (the [DET] tokens), kept as they are.

    Returns:
        ``[N, num_prefix + dst_h * dst_w + num_suffix, D]``. Always interpolates (as
        transformers does), so a same-count grid of another shape (32x54 vs 54x32) is laid out
        correctly; bicubic with equal sizes is an exact identity.
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
    grid = pos_embed[:, num_prefix:length - num_suffix]  # [N, src_h*src_w, D]
    grid = grid.transpose(1, 2).reshape(n, dim, src_h, src_w)  # [N, D, src_h, src_w]
    grid = F.interpolate(grid, size=tuple(dst_grid), mode="bicubic", align_corners=False)
    grid = grid.flatten(2).transpose(1, 2)  # [N, dst_h*dst_w, D]
    return cat([prefix, grid, suffix], dim=1)
