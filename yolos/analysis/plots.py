"""PNG figures for the [DET]-token analyses (matplotlib's Agg canvas, no pyplot state)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .. import defaults
from ..files import atomic_path
from .det_tokens import TokenStats, size_class

SIZE_COLOURS = ("tab:red", "tab:green", "tab:blue")  # small, medium, large
SIZE_NAMES = ("small", "medium", "large")


def _figure(w: float, h: float):
    from matplotlib.figure import Figure  # Agg canvas; never touches the pyplot backend

    return Figure(figsize=(w, h), dpi=100)


def _save(fig, path) -> Path:
    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, bbox_inches="tight")
    return path


def plot_box_centres(stats: TokenStats, path, tokens=range(10), score_threshold: float | None = None,
                     title: str = "") -> Path:
    """Figure 2: for each token, the centre of every box it predicted (one per image; with
    ``score_threshold``, only those scoring at least that), in normalized image coordinates
    (y down), coloured by the predicted box's COCO size class."""
    tokens = [k for k in tokens if k < stats.centres.shape[1]]
    cols = min(5, len(tokens))
    rows = math.ceil(len(tokens) / cols)
    fig = _figure(2.4 * cols, 2.5 * rows + 0.4)
    sizes = size_class(stats.areas)
    for n, k in enumerate(tokens):
        ax = fig.add_subplot(rows, cols, n + 1)
        keep = torch.ones(stats.centres.shape[0], dtype=torch.bool)
        if score_threshold is not None:
            keep = stats.scores[:, k] >= score_threshold
        for s in range(3):
            m = keep & (sizes[:, k] == s)
            c = stats.centres[m, k]
            ax.scatter(c[:, 0], c[:, 1], s=4, c=SIZE_COLOURS[s], alpha=0.6, linewidths=0,
                       label=SIZE_NAMES[s])
        ax.set_xlim(0, 1)
        ax.set_ylim(1, 0)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"[DET] {k}", fontsize=9)
    fig.axes[0].legend(loc="lower left", fontsize=6, markerscale=2, frameon=True)
    fig.suptitle(title or f"box centres predicted by each [DET] token over {stats.centres.shape[0]} images",
                 fontsize=10)
    return _save(fig, path)


def category_fractions(stats: TokenStats, num_classes: int, threshold: float = defaults.THRESHOLD) -> dict:
    """Figure 3's numbers. ``gt``: fraction of ground-truth objects in each category;
    ``mean``/``std``: per token, the fraction of its predictions (argmax label, score >=
    threshold) in each category, then mean and std over the tokens that predicted anything."""
    counts = stats.category_counts(num_classes, threshold).double()  # [T, C]
    per_token = counts.sum(1, keepdim=True)
    active = per_token[:, 0] > 0
    frac = counts[active] / per_token[active]
    gt = torch.bincount(stats.gt_labels, minlength=num_classes).double()
    gt = gt / gt.sum().clamp(min=1)
    return {"gt": gt, "mean": frac.mean(0) if active.any() else torch.zeros(num_classes),
            "std": frac.std(0) if int(active.sum()) > 1 else torch.zeros(num_classes),
            "tokens_used": int(active.sum()), "counts": counts}


def plot_category_counts(stats: TokenStats, path, class_names: dict[int, str], threshold: float = defaults.THRESHOLD,
                         title: str = "") -> tuple[Path, dict]:
    """Figure 3: per category, the ground-truth share vs the share of each token's predictions,
    bars = mean over tokens, error bars = std over tokens (see :func:`category_fractions`).
    Only categories present in ``class_names`` are drawn."""
    labels = sorted(class_names)
    num = max(labels) + 1 if labels else 1
    f = category_fractions(stats, num, threshold)
    x = np.arange(len(labels))
    fig = _figure(max(4.0, 0.28 * len(labels) + 2), 3.2)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(x - 0.2, f["gt"][labels].numpy(), width=0.4, label="ground truth", color="tab:gray")
    ax.bar(x + 0.2, f["mean"][labels].numpy(), width=0.4, yerr=f["std"][labels].numpy(),
           capsize=2, label=f"[DET] tokens (mean ± std over {f['tokens_used']})", color="tab:orange")
    ax.set_xticks(x)
    ax.set_xticklabels([class_names[k] for k in labels], rotation=90 if len(labels) > 8 else 0,
                       fontsize=7)
    ax.set_ylabel("fraction of objects")
    ax.legend(fontsize=7)
    ax.set_title(title or f"categories: ground truth vs per-token predictions (score ≥ {threshold})",
                 fontsize=9)
    return _save(fig, path), f


def plot_attention(image, maps: dict, tokens: list[int], path, class_names=None) -> Path:
    """Attention of each token (rows): each head and their mean (columns), drawn over the
    image (``image``: PIL or ``[H, W, 3]`` uint8, the resized model input) with the token's
    predicted box."""
    from matplotlib.patches import Rectangle

    from .attention import upsample

    img = np.asarray(image)
    h, w = img.shape[:2]
    heads = maps["maps"].shape[1]
    ncol = heads + 1
    fig = _figure(2.2 * ncol, 2.2 * h / w * len(tokens) + 0.5)
    up = upsample(torch.cat([maps["maps"], maps["mean"][:, None]], 1), (h, w))  # [K, heads+1, h, w]
    for r, k in enumerate(tokens):
        cx, cy, bw, bh = maps["boxes"][r].tolist()
        label = int(maps["labels"][r])
        name = class_names.get(label, str(label)) if class_names else str(label)
        for c in range(ncol):
            ax = fig.add_subplot(len(tokens), ncol, r * ncol + c + 1)
            ax.imshow(img)
            ax.imshow(up[r, c].numpy(), cmap="jet", alpha=0.5)
            ax.add_patch(Rectangle(((cx - bw / 2) * w, (cy - bh / 2) * h), bw * w, bh * h,
                                   fill=False, edgecolor="white", linewidth=1.2))
            ax.set_xticks([])
            ax.set_yticks([])
            head = "mean" if c == heads else f"head {c}"
            ax.set_title(f"[DET] {k} {head}" + (f"\n{name} {float(maps['scores'][r]):.2f}" if c == heads else ""),
                         fontsize=7)
    return _save(fig, path)
