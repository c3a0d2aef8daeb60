"""The training target of one image, built in one place for every dataset (COCO, YOLO, VOC,
synthetic), before the transforms.

Contract: ``boxes [N, 4]`` xyxy in pixels of the decoded image (clipped to it, empty boxes
dropped), ``labels [N]`` int64 model labels, ``area [N]``, ``iscrowd [N]`` zeros, ``image_id``,
``orig_size`` and ``size`` as ``(h, w)``. The transforms turn boxes into normalized cxcywh.
"""
from __future__ import annotations

import torch

from ..box_ops import xywh_to_xyxy


def raw_target(bboxes_xywh, labels, areas, image_id: int, width: int, height: int) -> dict:
    """``bboxes_xywh``: COCO boxes (x, y, w, h) in pixels; ``labels``: model labels; ``areas``:
    COCO areas (one per box)."""
    boxes = xywh_to_xyxy(torch.tensor(bboxes_xywh, dtype=torch.float32).reshape(-1, 4))
    boxes[:, 0::2].clamp_(min=0, max=width)  # a file may have changed since it was checked
    boxes[:, 1::2].clamp_(min=0, max=height)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    labels = torch.tensor(list(labels), dtype=torch.int64).reshape(-1)
    area = torch.tensor([float(a) for a in areas], dtype=torch.float32).reshape(-1)
    return {
        "boxes": boxes[keep], "labels": labels[keep], "area": area[keep],
        "iscrowd": torch.zeros(int(keep.sum()), dtype=torch.int64), "image_id": int(image_id),
        "orig_size": torch.tensor([height, width]), "size": torch.tensor([height, width]),
    }
