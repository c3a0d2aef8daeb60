"""Model outputs -> per-image scores, labels and pixel boxes (transformers'
``post_process_object_detection`` for YOLOS, plus an optional top-k)."""
from __future__ import annotations

import torch
from torch import Tensor

from .. import defaults
from ..box_ops import cxcywh_to_xyxy


def _get(outputs, key: str) -> Tensor:
    return outputs[key] if isinstance(outputs, dict) else getattr(outputs, key)


def postprocess(
    outputs,
    target_sizes=None,
    threshold: float = defaults.THRESHOLD,
    top_k: int | None = None,
) -> list[dict[str, Tensor]]:
    """Decode ``{"logits": [B, T, C+1], "pred_boxes": [B, T, 4]}`` (a dict or an object with those
    attributes, e.g. transformers' output).

    Scores are a softmax over all ``C + 1`` logits with the last (no-object) column then left out;
    each token keeps its best real class. Tokens with ``score > threshold`` (strict) are kept in
    token order; with ``top_k`` only the ``k`` highest-scoring of those remain, sorted by score.

    Args:
        target_sizes: ``(h, w)`` per image (list of pairs or a ``[B, 2]`` tensor), the size the
            normalized boxes are scaled to: the *original* image when the input had no padding.
            ``None`` leaves boxes normalized.

    Returns:
        One ``{"scores": [N], "labels": [N] int64, "boxes": [N, 4] xyxy}`` per image.
    """
    logits, boxes = _get(outputs, "logits"), _get(outputs, "pred_boxes")
    if target_sizes is not None and len(target_sizes) != len(logits):
        raise ValueError(
            f"target_sizes has {len(target_sizes)} entries for a batch of {len(logits)} images"
        )
    prob = logits.float().softmax(-1)
    scores, labels = prob[..., :-1].max(-1)  # [B, T]
    boxes = cxcywh_to_xyxy(boxes.float())
    if target_sizes is not None:
        sizes = torch.as_tensor(target_sizes, dtype=torch.float32, device=boxes.device).reshape(-1, 2)
        h, w = sizes.unbind(1)
        boxes = boxes * torch.stack([w, h, w, h], dim=1)[:, None, :]
    results = []
    for s, c, b in zip(scores, labels, boxes):
        keep = keep_indices(s, threshold, top_k)
        results.append({"scores": s[keep], "labels": c[keep], "boxes": b[keep]})
    return results


def non_finite(outputs) -> list[int]:
    """Indices of the images whose logits or boxes hold NaN or infinity: numbers that cannot be
    right (broken weights, an overflowing low-precision pass), never to be written as boxes."""
    logits, boxes = _get(outputs, "logits"), _get(outputs, "pred_boxes")
    good = torch.isfinite(logits).flatten(1).all(1) & torch.isfinite(boxes).flatten(1).all(1)
    return (~good).nonzero().flatten().tolist()


def keep_indices(scores: Tensor, threshold: float | None = None, top_k: int | None = None) -> Tensor:
    """Indices of the detections kept: scores strictly above ``threshold`` in their order, then,
    when more than ``top_k`` remain, the ``top_k`` best sorted by score. The one rule of
    :func:`postprocess` and :meth:`yolos.Detections.select`."""
    keep = torch.arange(len(scores), device=scores.device)
    if threshold is not None:
        keep = keep[scores > threshold]
    if top_k is not None and len(keep) > top_k:
        keep = keep[scores[keep].argsort(descending=True)[:top_k]]
    return keep
