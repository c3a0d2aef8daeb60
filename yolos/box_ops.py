"""Pure box geometry. Every box format conversion in the project goes through here.

Formats: ``cxcywh`` (centre, size), ``xyxy`` (corners), ``xywh`` (COCO: top-left corner, size).
All functions work on ``[..., 4]`` tensors and keep the dtype.
"""
from __future__ import annotations

import torch
from torch import Tensor


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack(((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), dim=-1)


def xyxy_to_xywh(boxes: Tensor) -> Tensor:
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack((x0, y0, x1 - x0, y1 - y0), dim=-1)


def xywh_to_xyxy(boxes: Tensor) -> Tensor:
    x, y, w, h = boxes.unbind(-1)
    return torch.stack((x, y, x + w, y + h), dim=-1)


def clip_boxes(boxes: Tensor, width: float, height: float) -> Tensor:
    """``[..., 4]`` xyxy boxes clipped to an image of ``width x height`` (a new tensor)."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack((x0.clamp(0, width), y0.clamp(0, height), x1.clamp(0, width), y1.clamp(0, height)), dim=-1)


def exif_transpose_boxes(boxes: Tensor, orientation: int, width: float, height: float) -> Tensor:
    """``[N, 4]`` xyxy boxes drawn on an image as stored (``width x height``, before its EXIF
    ``orientation`` 1..8 is applied), in the frame of the image as displayed (after PIL's
    ``ImageOps.exif_transpose``, which :func:`yolos.load_image` applies)."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    w, h = width, height
    corners = {  # where the stored corners (x0, y0) and (x1, y1) land
        1: (x0, y0, x1, y1),
        2: (w - x0, y0, w - x1, y1),          # mirrored left-right
        3: (w - x0, h - y0, w - x1, h - y1),  # rotated 180
        4: (x0, h - y0, x1, h - y1),          # mirrored top-bottom
        5: (y0, x0, y1, x1),                  # transposed
        6: (h - y0, x0, h - y1, x1),          # rotated 90 clockwise
        7: (h - y0, w - x0, h - y1, w - x1),  # transversed
        8: (y0, w - x0, y1, w - x1),          # rotated 90 counter-clockwise
    }[orientation if orientation in range(1, 9) else 1]
    a, b, c, d = corners
    return torch.stack((torch.min(a, c), torch.min(b, d), torch.max(a, c), torch.max(b, d)), dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """Area of ``xyxy`` boxes, ``[...]``."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """Pairwise IoU and union of ``xyxy`` boxes: ``[..., N, 4] x [..., M, 4] -> ([..., N, M],
    [..., N, M])``; leading dimensions broadcast (a batch of images at once)."""
    a, b = boxes1[..., :, None, :], boxes2[..., None, :, :]
    inter = (torch.min(a[..., 2:], b[..., 2:]) - torch.max(a[..., :2], b[..., :2])).clamp(min=0).prod(-1)
    union = box_area(boxes1)[..., :, None] + box_area(boxes2)[..., None, :] - inter
    return inter / union, union


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor, with_iou: bool = False):
    """Pairwise generalized IoU (Rezatofighi et al. 2019) of ``xyxy`` boxes:
    ``[..., N, 4] x [..., M, 4] -> [..., N, M]`` (the matcher's cost and the loss's term);
    ``with_iou``: ``(giou, iou)``.

    Degenerate boxes (x1 < x0) are not rejected here: the matcher must survive whatever a
    diverging model predicts; ground truth is validated when the dataset is read.
    """
    iou, union = box_iou(boxes1, boxes2)
    a, b = boxes1[..., :, None, :], boxes2[..., None, :, :]
    enclosing = (torch.max(a[..., 2:], b[..., 2:]) - torch.min(a[..., :2], b[..., :2])).clamp(min=0).prod(-1)
    giou = iou - (enclosing - union) / enclosing
    return (giou, iou) if with_iou else giou
