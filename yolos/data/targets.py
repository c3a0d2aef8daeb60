"""The training target of one image, built in one place for every dataset (COCO, YOLO, VOC,
synthetic), before the transforms.

Contract: ``boxes [N, 4]`` xyxy in pixels of the decoded image (clipped to it, empty boxes
dropped), ``labels [N]`` int64 model labels, ``area [N]``, ``iscrowd [N]`` zeros, ``image_id``,
``orig_size`` and ``size`` as ``(h, w)``. The transforms turn boxes into normalized cxcywh.
"""
from __future__ import annotations

import numpy as np
import torch

from ..box_ops import xywh_to_xyxy


def raw_target(bboxes_xywh, labels, areas, image_id: int, width: int, height: int) -> dict:
    """``bboxes_xywh``: COCO boxes (x, y, w, h) in pixels; ``labels``: model labels; ``areas``:
    COCO areas (one per box)."""
    # Lists go through numpy (torch.tensor of a list costs more than the rest of an item's
    # target), and a mask that keeps every box is not applied: the same tensors, fewer calls.
    boxes = xywh_to_xyxy(torch.from_numpy(np.asarray(bboxes_xywh, dtype=np.float32).reshape(-1, 4)))
    boxes[:, 0::2].clamp_(min=0, max=width)  # a file may have changed since it was checked
    boxes[:, 1::2].clamp_(min=0, max=height)
    labels = torch.from_numpy(np.asarray(list(labels), dtype=np.int64).reshape(-1))
    area = torch.from_numpy(np.asarray([float(a) for a in areas], dtype=np.float32).reshape(-1))
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    if not bool(keep.all()):
        boxes, labels, area = boxes[keep], labels[keep], area[keep]
    size = torch.tensor([height, width])
    return {
        "boxes": boxes, "labels": labels, "area": area, "iscrowd": torch.zeros(len(labels), dtype=torch.int64),
        "image_id": int(image_id), "orig_size": size, "size": size.clone(),
    }
