"""Batching variable-size images: zero padding at the bottom/right (hustvl/YOLOS / transformers)."""
from __future__ import annotations

from torch import Tensor


def pad_images(images: list[Tensor]) -> Tensor:
    """``[3, h_i, w_i]`` tensors -> ``[B, 3, Hmax, Wmax]`` with zeros (0 in normalized space)
    below and to the right of each image. Targets keep their unpadded normalization."""
    if not images:
        raise ValueError("cannot collate an empty batch")
    c = images[0].shape[0]
    h = max(im.shape[-2] for im in images)
    w = max(im.shape[-1] for im in images)
    out = images[0].new_zeros((len(images), c, h, w))
    for i, im in enumerate(images):
        out[i, :, : im.shape[-2], : im.shape[-1]].copy_(im)
    return out


def collate_fn(batch):
    """``[(image, target), ...] -> (pixel_values [B, 3, Hmax, Wmax], [target, ...])``."""
    images, targets = zip(*batch)
    return pad_images(list(images)), list(targets)
