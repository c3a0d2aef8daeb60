"""Inspecting the [DET] tokens (paper section 3.5): what each token predicts over a dataset, and
how the similarity of two tokens relates to where and what they predict.

Everything runs image by image (batch 1), so no image is padded and the predicted boxes are
relative to the image itself.

Correlations (per image, over all ``T (T - 1) / 2`` pairs of [DET] tokens, every token being one
predicted object; then averaged over images):

* ``rho_distance``: Pearson between the cosine similarity of the two tokens' output features
  (``det_features``: after the final LayerNorm, what the heads read) and the L2 distance of their
  predicted box centres (normalized image coordinates). Paper: -0.80.
* ``rho_class``: Pearson between the same cosine similarity and the cosine similarity of the two
  tokens' class-head outputs. We use the **logits** (all ``C + 1`` raw outputs of the classifier,
  no-object included): they are the classifier's output features before any normalization;
  ``class_feature="probs"`` uses the softmax instead. Paper: -0.07.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .. import defaults

SMALL, MEDIUM = 32**2, 96**2  # COCO area thresholds, in original-image pixels
PAPER = {"rho_distance": -0.80, "rho_class": -0.07}


def pearson(x: Tensor, y: Tensor) -> float:
    """Pearson correlation of two 1-D samples (nan when either is constant)."""
    x, y = x.double().flatten(), y.double().flatten()
    if x.numel() != y.numel() or x.numel() < 2:
        raise ValueError(f"pearson needs two samples of the same size >= 2, got {x.numel()} and {y.numel()}")
    x, y = x - x.mean(), y - y.mean()
    den = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return float((x * y).sum()) / den if den > 0 else float("nan")


def _pairwise_cosine(f: Tensor) -> Tensor:
    f = torch.nn.functional.normalize(f.double(), dim=-1)
    return f @ f.T


def pair_correlations(features: Tensor, centres: Tensor, class_features: Tensor) -> tuple[float, float]:
    """The two section-3.5 correlations for one image.

    Args:
        features: ``[T, D]`` [DET] output features.
        centres: ``[T, 2]`` predicted box centres (normalized x, y).
        class_features: ``[T, K]`` classifier outputs (logits or probabilities).

    Returns:
        ``(rho(cos_feat, centre distance), rho(cos_feat, cos_class))`` over all pairs ``i < j``.
    """
    t = features.shape[0]
    if t < 3:
        raise ValueError(f"need at least 3 tokens for a correlation over pairs, got {t}")
    i, j = torch.triu_indices(t, t, offset=1)
    cos_feat = _pairwise_cosine(features)[i, j]
    dist = (centres.double()[i] - centres.double()[j]).norm(dim=-1)
    cos_cls = _pairwise_cosine(class_features)[i, j]
    return pearson(cos_feat, dist), pearson(cos_feat, cos_cls)


def size_class(area: Tensor) -> Tensor:
    """0 small / 1 medium / 2 large by COCO's thresholds (area in original pixels)."""
    return (area >= SMALL).long() + (area >= MEDIUM).long()


@dataclass
class TokenStats:
    """What the [DET] tokens predicted over a dataset (I images, T tokens).

    centres ``[I, T, 2]`` normalized (x, y); areas ``[I, T]`` predicted box area in original
    pixels; labels ``[I, T]`` argmax over the real classes (no-object excluded); scores ``[I, T]``
    the softmax probability of that label; rho_distance / rho_class ``[I]`` per image;
    gt_labels: the labels of all non-crowd ground-truth objects.
    """

    centres: Tensor
    areas: Tensor
    labels: Tensor
    scores: Tensor
    rho_distance: Tensor
    rho_class: Tensor
    gt_labels: Tensor
    image_ids: list = field(default_factory=list)
    class_feature: str = "logits"

    def category_counts(self, num_classes: int, threshold: float = defaults.THRESHOLD) -> Tensor:
        """``[T, num_classes]``: per token, how many of its predictions (argmax label with score
        >= threshold) fall in each category."""
        t = self.labels.shape[1]
        counts = torch.zeros(t, num_classes, dtype=torch.long)
        keep = self.scores >= threshold
        token = torch.arange(t).expand_as(self.labels)
        counts.index_put_((token[keep], self.labels[keep]), torch.ones(int(keep.sum()), dtype=torch.long),
                          accumulate=True)
        return counts

    def summary(self) -> dict:
        def stats(v: Tensor) -> dict:
            v = v[~v.isnan()]
            return {"mean": float(v.mean()) if v.numel() else None,
                    "std": float(v.std()) if v.numel() > 1 else None, "images": int(v.numel())}

        return {
            "images": int(self.centres.shape[0]), "tokens": int(self.centres.shape[1]),
            "class_feature": self.class_feature,
            "rho_cosine_vs_centre_distance": stats(self.rho_distance),
            "rho_cosine_vs_class_cosine": stats(self.rho_class),
            "paper": {"rho_cosine_vs_centre_distance": PAPER["rho_distance"],
                      "rho_cosine_vs_class_cosine": PAPER["rho_class"],
                      "note": "YOLOS-S on all 5000 COCO val2017 images"},
        }


@torch.no_grad()
def inspect_image(model, pixel_values: Tensor, original_size: tuple[int, int],
                  class_feature: str = "logits") -> dict:
    """Run one image (``pixel_values [1, 3, H, W]``, unpadded) and return per-token records:
    ``centres [T, 2]``, ``areas [T]``, ``labels [T]``, ``scores [T]``, ``features [T, D]``,
    ``rho_distance``, ``rho_class``."""
    if pixel_values.shape[0] != 1:
        raise ValueError("inspect_image takes one image at a time (no padding)")
    if class_feature not in ("logits", "probs"):
        raise ValueError(f"class_feature must be 'logits' or 'probs', not {class_feature!r}")
    out = model(pixel_values, output_det_features=True)
    logits, boxes, feats = out["logits"][0], out["pred_boxes"][0], out["det_features"][0]
    probs = logits.float().softmax(-1)
    scores, labels = probs[:, :-1].max(-1)
    h, w = original_size
    areas = boxes[:, 2] * w * boxes[:, 3] * h
    cls = logits if class_feature == "logits" else probs
    rho_d, rho_c = pair_correlations(feats, boxes[:, :2], cls)
    return {"centres": boxes[:, :2].float(), "areas": areas.float(), "labels": labels,
            "scores": scores, "features": feats, "rho_distance": rho_d, "rho_class": rho_c}


def collect(model, dataset, short_side: int, long_side: int | None, max_images: int | None = None,
            class_feature: str = "logits", progress: bool = True) -> TokenStats:
    """Run ``model`` over a :class:`yolos.data.coco.DetectionDataset` (batch 1, eval resize) and
    gather :class:`TokenStats`."""
    from tqdm import tqdm

    from ..inference.preprocess import preprocess

    ids = dataset.ids[:max_images] if max_images else dataset.ids
    device = next(model.parameters()).device
    rec = {k: [] for k in ("centres", "areas", "labels", "scores", "rho_distance", "rho_class")}
    gt = []
    model.eval()
    for image_id in tqdm(ids, desc="[DET] tokens", unit="img", disable=not progress):
        image = dataset.load_image(image_id)
        batch = preprocess(image, short_side=short_side, long_side=long_side)
        r = inspect_image(model, batch["pixel_values"].to(device), batch["original_sizes"][0],
                          class_feature)
        for k in rec:
            v = r[k]
            rec[k].append(v.cpu() if isinstance(v, Tensor) else torch.tensor(v))
        anns = [a for a in dataset.annotations[image_id] if not a.get("iscrowd", 0)]
        gt.extend(dataset.category_id_to_label[a["category_id"]] for a in anns)
    if not ids:
        from ..errors import DatasetError

        raise DatasetError(f"{dataset.annotation_file}: no images to analyze")
    return TokenStats(
        centres=torch.stack(rec["centres"]), areas=torch.stack(rec["areas"]),
        labels=torch.stack(rec["labels"]), scores=torch.stack(rec["scores"]),
        rho_distance=torch.stack(rec["rho_distance"]).double(),
        rho_class=torch.stack(rec["rho_class"]).double(),
        gt_labels=torch.tensor(gt, dtype=torch.long), image_ids=list(ids), class_feature=class_feature,
    )
