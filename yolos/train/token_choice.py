"""Which of a checkpoint's [DET] tokens a fine-tune keeps when it asks for fewer
(``--num-det-tokens K`` with ``--init``): the ``K`` the checkpoint itself matches most often to
the training data's boxes.

Why fewer: every [DET] token is a row of every attention and MLP, so a checkpoint made for 100
objects an image (or the bundled model's 36) pays for tokens a dataset of a few objects never
uses; the step and the inference get cheaper with the sequence (docs/training.md).

Why by matches: each token of a trained YOLOS answers for a region and a size of object (the
paper's [DET]-token analysis), so the tokens that the Hungarian matcher picks for this data's
boxes are the ones that already do its job. Only the box costs match (L1 and GIoU): a fine-tune's
class head is often new, and where the classes are new its scores say nothing yet.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.collate import collate_fn
from .matcher import HungarianMatcher


@dataclass(frozen=True)
class TokenChoice:
    """The kept token indices (ascending), their share of all matches, the images sampled, and
    how many of those hold more objects than the kept tokens can answer for."""

    keep: list[int]
    share: float
    images: int
    crowded: int

    def describe(self, total: int) -> str:
        line = (f"[DET] tokens: keeping {len(self.keep)} of the checkpoint's {total}, those it matched most often "
                f"to the boxes of {self.images} training images ({self.share:.0%} of the matches)")
        if self.crowded:
            line += (f"; {self.crowded} of those images hold more than {len(self.keep)} objects, which cannot all "
                     f"be detected: give a larger --num-det-tokens")
        return line


@torch.no_grad()
def most_matched_tokens(model, dataset, k: int, device="cpu", images: int = 256, batch: int = 16) -> TokenChoice:
    """The ``k`` [DET] tokens of ``model`` matched most often (box costs only) to the targets of
    up to ``images`` items of ``dataset`` spread evenly over it; ties go to the lower index.

    ``dataset[i]`` gives ``(image [3, H, W], target)`` as a training split does (its transforms
    are used as they are). The model runs in eval mode and is put back as it was."""
    t = model.config.num_det_tokens
    if not 0 < k <= t:
        raise ValueError(f"--num-det-tokens {k}: the checkpoint has {t} [DET] tokens; a fine-tune can keep "
                         f"1 to {t} of them, not add new ones")
    n = min(images, len(dataset))
    picks = torch.linspace(0, len(dataset) - 1, n).round().long().unique().tolist()
    matcher = HungarianMatcher(cost_class=0, cost_bbox=5, cost_giou=2)
    counts = torch.zeros(t, dtype=torch.long)
    crowded = 0
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(picks), batch):
            pixels, targets = collate_fn([dataset[i] for i in picks[start:start + batch]])
            crowded += sum(len(tg["labels"]) > k for tg in targets)
            out = model(pixels.to(device))
            for pred, _ in matcher(out, targets):
                counts[pred] += 1
    finally:
        model.train(was_training)
    order = sorted(range(t), key=lambda i: (-int(counts[i]), i))
    keep = sorted(order[:k])
    total = int(counts.sum())
    share = float(counts[keep].sum()) / total if total else 0.0
    return TokenChoice(keep, share, len(picks), crowded)


__all__ = ["TokenChoice", "most_matched_tokens"]
