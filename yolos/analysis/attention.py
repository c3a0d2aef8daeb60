"""Last-layer attention of chosen [DET] tokens over the image patches."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


@torch.no_grad()
def det_attention_maps(model, pixel_values: Tensor, tokens: list[int]) -> dict:
    """Attention of [DET] tokens ``tokens`` to the patch tokens in the last layer.

    Args:
        pixel_values: ``[1, 3, H, W]`` one unpadded image (H, W multiples of the patch size).
        tokens: [DET] indices in ``0..T-1``.

    Returns:
        ``{"maps": [K, heads, gh, gw]`` (each head's softmax row restricted to the patches, so a
        map sums to 1 minus the mass on the cls/[DET] tokens), ``"mean": [K, gh, gw]`` over heads,
        ``"boxes": [K, 4]`` the tokens' predicted cxcywh, ``"scores"``/``"labels"``: ``[K]``}.
    """
    if pixel_values.shape[0] != 1:
        raise ValueError("det_attention_maps takes one image at a time (no padding)")
    t = model.config.num_det_tokens
    bad = [k for k in tokens if not 0 <= k < t]
    if bad:
        raise ValueError(f"[DET] token indices {bad} out of range 0..{t - 1}")
    p = model.config.patch_size
    gh, gw = pixel_values.shape[-2] // p, pixel_values.shape[-1] // p
    out = model(pixel_values, output_attentions=True)
    att = out["attentions"][0]  # [heads, S, S], S = 1 + gh*gw + T
    rows = att[:, [att.shape[-1] - t + k for k in tokens], 1:1 + gh * gw]  # [heads, K, N]
    maps = rows.permute(1, 0, 2).reshape(len(tokens), -1, gh, gw).float()
    probs = out["logits"][0, tokens].float().softmax(-1)
    scores, labels = probs[:, :-1].max(-1)
    return {"maps": maps, "mean": maps.mean(1), "boxes": out["pred_boxes"][0, tokens].float(),
            "scores": scores, "labels": labels}


def upsample(grid_map: Tensor, size: tuple[int, int]) -> Tensor:
    """``[..., gh, gw] -> [..., H, W]`` bilinear, for drawing over the image."""
    lead = grid_map.shape[:-2]
    x = grid_map.reshape(-1, 1, *grid_map.shape[-2:])
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x.reshape(*lead, *size)
