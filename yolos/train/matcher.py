"""Hungarian matching between the T [DET] predictions and the ground-truth boxes of each image.

Cost (hustvl/YOLOS / DETR / transformers ``HungarianMatcher``):
``C = cost_bbox * L1(cxcywh) - cost_class * softmax(logits)[label] - cost_giou * GIoU(xyxy)``,
plus, with ``cost_anchor > 0`` (ours, for training from scratch), ``cost_anchor * L1`` between
the object's centre and the fixed anchor cell of each [DET] token (:func:`anchor_centres`): with
a large weight each object goes to the token whose cell is nearest to it, whatever the tokens
predict, so the assignment stops changing from step to step (see docs/training.md).

Unlike the reference, which builds a ``(B*T) x sum(N_i)`` matrix and copies all of it to the
host, the cost is built **block-diagonally** as ``[B, T, max N_i]`` (each image only against its
own targets), in fp32 even under autocast, with non-finite entries replaced by a large finite
value (a diverging model's NaN boxes must not crash scipy), and copied to the host in **one**
transfer per step. scipy's ``linear_sum_assignment`` then runs per image on its block.
"""
from __future__ import annotations

import math

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from ..box_ops import cxcywh_to_xyxy, generalized_box_iou

# Replaces NaN/inf in the cost: larger than any real cost (|C| <= 5*4 + 1 + 2*2 with default weights).
_BIG = 1e6


def anchor_centres(t: int) -> torch.Tensor:
    """``[t, 2]`` (cx, cy) cell centres of the most square grid with at least ``t`` cells, row
    by row (the first ``t`` cells; the unused ones are at the bottom right): [DET] token ``i``'s
    anchor, in normalized image coordinates."""
    cols = math.ceil(math.sqrt(t))
    rows = math.ceil(t / cols)
    i = torch.arange(t, dtype=torch.float64)
    return torch.stack([(i % cols + 0.5) / cols, (i // cols + 0.5) / rows], dim=1)


class HungarianMatcher(nn.Module):
    def __init__(self, cost_class: float = 1.0, cost_bbox: float = 5.0, cost_giou: float = 2.0,
                 cost_anchor: float = 0.0):
        super().__init__()
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0 and cost_anchor == 0:
            raise ValueError("all matcher costs are 0")
        self.cost_class, self.cost_bbox, self.cost_giou = cost_class, cost_bbox, cost_giou
        self.cost_anchor = cost_anchor

    def cost_matrix(self, outputs: dict, targets: list[dict]) -> Tensor:
        """``[B, T, max N_i]`` fp32 cost, finite; columns beyond ``N_i`` are padding (cost 0)."""
        logits, pred_boxes = outputs["logits"], outputs["pred_boxes"]
        B, T = logits.shape[:2]
        device = logits.device
        n_max = max(len(t["labels"]) for t in targets)
        with torch.autocast(device_type=device.type, enabled=False):
            prob = logits.float().softmax(-1)  # [B, T, C+1]
            pred = pred_boxes.float()
            tgt_boxes = torch.zeros(B, n_max, 4, device=device)
            tgt_labels = torch.zeros(B, n_max, dtype=torch.int64, device=device)
            for i, t in enumerate(targets):
                n = len(t["labels"])
                tgt_boxes[i, :n] = t["boxes"].to(device=device, dtype=torch.float32)
                tgt_labels[i, :n] = t["labels"].to(device)
                # Padding boxes are harmless unit boxes so GIoU stays finite there.
                tgt_boxes[i, n:] = torch.tensor([0.5, 0.5, 1.0, 1.0], device=device)
            cost_class = -prob.gather(2, tgt_labels[:, None, :].expand(B, T, n_max))
            cost_bbox = torch.cdist(pred, tgt_boxes, p=1)
            cost_giou = -generalized_box_iou(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(tgt_boxes))
            cost = self.cost_bbox * cost_bbox + self.cost_class * cost_class + self.cost_giou * cost_giou
            if self.cost_anchor:
                anchors = anchor_centres(T).to(device=device, dtype=torch.float32)
                cost = cost + self.cost_anchor * torch.cdist(anchors.expand(B, T, 2), tgt_boxes[..., :2], p=1)
            return torch.nan_to_num(cost, nan=_BIG, posinf=_BIG, neginf=-_BIG)

    @torch.no_grad()
    def forward(self, outputs: dict, targets: list[dict]) -> list[tuple[Tensor, Tensor]]:
        """``outputs``: ``logits [B, T, C+1]``, ``pred_boxes [B, T, 4]`` (cxcywh, normalized);
        ``targets``: per image ``labels [N_i]``, ``boxes [N_i, 4]`` (cxcywh, normalized).

        Returns per image ``(pred_idx, tgt_idx)``, int64 CPU tensors of length ``min(T, N_i)``:
        prediction ``pred_idx[k]`` is matched to target ``tgt_idx[k]``.
        """
        sizes = [len(t["labels"]) for t in targets]
        empty = torch.empty(0, dtype=torch.int64)
        if max(sizes, default=0) == 0:
            return [(empty, empty.clone()) for _ in sizes]
        cost = self.cost_matrix(outputs, targets).cpu()  # the one device-to-host copy
        indices = []
        for i, n in enumerate(sizes):
            if n == 0:
                indices.append((empty, empty.clone()))
                continue
            rows, cols = linear_sum_assignment(cost[i, :, :n].numpy())
            indices.append((torch.as_tensor(rows, dtype=torch.int64),
                            torch.as_tensor(cols, dtype=torch.int64)))
        return indices
