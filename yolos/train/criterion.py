"""The set prediction loss of DETR/YOLOS (hustvl/YOLOS ``SetCriterion``, transformers ``ImageLoss``).

With ``indices`` from the Hungarian matcher:
* ``loss_ce``: cross-entropy over all T predictions, unmatched ones target the no-object index
  ``num_classes`` whose class weight is ``eos_coef`` (a weighted mean, i.e. divided by the sum
  of the weights of the targets);
* ``loss_bbox``: ``sum |pred - tgt|`` over matched cxcywh boxes / ``num_boxes``;
* ``loss_giou``: ``sum (1 - GIoU)`` over matched xyxy boxes / ``num_boxes``;
* ``loss = weight_ce * loss_ce + weight_bbox * loss_bbox + weight_giou * loss_giou``;
* ``class_loss="iou"`` (training only; issue 29's IoU-aware classification, in the softmax form
  YOLOS's no-object class allows): a matched token's target is a distribution, its object's class
  with probability q = IoU of its box with the object's (no gradient through q) and no-object
  with 1 - q, so a score learns to say how well its box fits (Stable-DINO, DEIM, VFL use the same
  idea with sigmoid scores); unmatched tokens and the weights are as in ``loss_ce``. With
  ``iou_power`` p < 1 the class's share is q^p instead (Stable-DINO's and DEIM's power of the
  IoU): still a strong positive target while the boxes fit poorly early in training;
* logged only (no gradient): ``class_error`` (100 - top-1 accuracy of matched predictions, %)
  and ``cardinality_error`` (mean |#non-no-object predictions - #targets|).

``num_boxes`` is the number of target boxes in the batch, summed over ranks and divided by the
world size when torch.distributed is initialized, clamped to >= 1 (DETR; transformers only does
this under Accelerate); the class loss's weight sum is reduced the same way, so several
processes (and accumulated micro-batches) take exactly the step of one large batch
(:func:`loss_normalizers`). The loss terms are computed in fp32 whatever the autocast dtype.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .. import validate
from ..box_ops import cxcywh_to_xyxy, generalized_box_iou
from .config import CLASS_LOSSES
from .matcher import HungarianMatcher


def loss_normalizers(targets: list[dict], num_tokens: int, eos_coef: float, device) -> dict[str, float]:
    """The divisors of one optimizer step's losses, from every target it trains on (all its
    micro-batches when gradients are accumulated): ``num_boxes``, the target boxes, and
    ``class_weight``, the sum of the class loss's weights (1 per matched [DET] token, ``eos_coef``
    per unmatched one). Each is summed over ranks and divided by the world size, because DDP
    averages gradients over ranks; so N processes, or N accumulated micro-batches, of batch B
    take the step of one batch of N x B. ``num_boxes`` is at least 1 (DETR)."""
    boxes = sum(len(t["labels"]) for t in targets)
    matched = sum(min(len(t["labels"]), num_tokens) for t in targets)
    weight = matched + eos_coef * (len(targets) * num_tokens - matched)
    values = torch.tensor([float(boxes), float(weight)], device=device, dtype=torch.float64)
    world = 1
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values)
        world = dist.get_world_size()
    boxes, weight = (values / world).tolist()
    return {"num_boxes": max(boxes, 1.0), "class_weight": max(weight, 1e-12)}


class SetCriterion(nn.Module):
    def __init__(self, num_classes: int, matcher: HungarianMatcher | None = None,
                 eos_coef: float = 0.1, weight_ce: float = 1.0, weight_bbox: float = 5.0,
                 weight_giou: float = 2.0, class_loss: str = "ce", iou_power: float = 1.0):
        super().__init__()
        if class_loss not in CLASS_LOSSES:
            raise ValueError(f"class_loss: expected one of {', '.join(CLASS_LOSSES)}, got {class_loss!r}")
        self.class_loss = class_loss
        self.iou_power = validate.positive_float(iou_power, "iou_power")
        self.num_classes = num_classes
        self.matcher = matcher if matcher is not None else HungarianMatcher()
        self.eos_coef = eos_coef
        self.weights = {"loss_ce": weight_ce, "loss_bbox": weight_bbox, "loss_giou": weight_giou}
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight, persistent=False)

    def normalizers(self, targets: list[dict], num_tokens: int, device) -> dict[str, float]:
        """:func:`loss_normalizers` of ``targets`` under this criterion's no-object weight: those
        of a whole optimizer step when it takes several micro-batches (gradient accumulation)."""
        return loss_normalizers(targets, num_tokens, self.eos_coef, device)

    def forward(self, outputs: dict, targets: list[dict], normalizers: dict | None = None) -> dict[str, Tensor]:
        """``outputs``: ``logits [B, T, num_classes+1]``, ``pred_boxes [B, T, 4]`` (cxcywh);
        ``targets``: per image ``labels [N_i]`` int64 and ``boxes [N_i, 4]`` (cxcywh, normalized
        by the unpadded image). Returns scalar tensors (``loss`` carries the gradient).

        ``normalizers``: :func:`loss_normalizers` of the whole optimizer step when these targets
        are one of its micro-batches (the losses of the micro-batches then add up to the loss of
        the whole batch); by default those of ``targets`` alone."""
        logits, pred_boxes = outputs["logits"], outputs["pred_boxes"]
        if logits.shape[-1] != self.num_classes + 1:
            raise ValueError(f"logits have {logits.shape[-1]} classes, the criterion expects "
                             f"num_classes + 1 = {self.num_classes + 1}")
        device = logits.device
        indices = self.matcher(outputs, targets)
        if normalizers is None:
            normalizers = loss_normalizers(targets, logits.shape[1], self.eos_coef, device)
        num_boxes = normalizers["num_boxes"]

        batch_idx = torch.cat([torch.full_like(p, i) for i, (p, _) in enumerate(indices)]).to(device)
        pred_idx = torch.cat([p for p, _ in indices]).to(device)
        tgt_labels = torch.cat([t["labels"].to(device)[j.to(device)]
                                for t, (_, j) in zip(targets, indices)])
        tgt_boxes = torch.cat([t["boxes"].to(device)[j.to(device)]
                               for t, (_, j) in zip(targets, indices)]).float()

        with torch.autocast(device_type=device.type, enabled=False):
            logits32 = logits.float()
            target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64,
                                        device=device)
            target_classes[batch_idx, pred_idx] = tgt_labels
            src_boxes = pred_boxes[batch_idx, pred_idx].float()
            loss_bbox = F.l1_loss(src_boxes, tgt_boxes, reduction="sum") / num_boxes
            giou, iou = generalized_box_iou(cxcywh_to_xyxy(src_boxes)[:, None],
                                            cxcywh_to_xyxy(tgt_boxes)[:, None], with_iou=True)
            loss_giou = (1 - giou.reshape(-1)).sum() / num_boxes
            quality = iou.reshape(-1).detach().clamp(0, 1) ** self.iou_power if self.class_loss == "iou" else None
            loss_ce = self._class_loss(logits32, target_classes, (batch_idx, pred_idx), quality) \
                / normalizers["class_weight"]

        losses = {"loss_ce": loss_ce, "loss_bbox": loss_bbox, "loss_giou": loss_giou}
        losses["loss"] = sum(self.weights[k] * v for k, v in losses.items())

        with torch.no_grad():
            if len(tgt_labels):
                correct = (logits32[batch_idx, pred_idx].argmax(-1) == tgt_labels).float().mean()
                losses["class_error"] = 100 - 100 * correct
            else:
                losses["class_error"] = torch.tensor(100.0, device=device)
            n_pred = (logits.argmax(-1) != logits.shape[-1] - 1).sum(1).float()
            n_tgt = torch.tensor([float(len(t["labels"])) for t in targets], device=device)
            losses["cardinality_error"] = F.l1_loss(n_pred, n_tgt)
        return losses

    def _class_loss(self, logits: Tensor, target_classes: Tensor, matched: tuple[Tensor, Tensor],
                    quality: Tensor | None) -> Tensor:
        """The weighted sum of the class loss over all ``[B, T]`` tokens (``logits [B, T, C+1]``
        fp32): cross-entropy with ``target_classes``, or, with ``quality`` (one q per matched
        token, in ``matched`` order), against the soft targets of ``class_loss="iou"``."""
        weight = self.empty_weight.to(logits.device)
        if quality is None:
            return F.cross_entropy(logits.transpose(1, 2), target_classes, weight=weight, reduction="sum")
        target = F.one_hot(target_classes, logits.shape[-1]).to(logits.dtype)
        target[matched] = target[matched] * quality[:, None]
        target[matched[0], matched[1], -1] = 1 - quality  # the rest of the mass on no-object
        token_weight = weight[target_classes]  # 1 for a matched token, eos_coef for the others
        return -(token_weight * (target * F.log_softmax(logits, -1)).sum(-1)).sum()
