"""Model scaling (Dollar, Singh, Girshick 2021, "Fast and Accurate Model Scaling"), as used in
the YOLOS paper's Table 1 to grow DeiT-Ti (depth 12, width 192, resolution 224) to DeiT-S FLOPs.

Under the complexity model ``flops ∝ d * w^2 * r^2`` a FLOPs factor ``s`` is spread as
``d <- d * s^e_d``, ``w <- w * s^(e_w / 2)``, ``r <- r * s^(e_r / 2)`` with ``e_d + e_w + e_r = 1``:

* ``"w"``   width only: ``e_w = 1``;
* ``"dwr"`` uniform compound: ``e_d = e_w = e_r = 1/3`` (d * s^1/3, w and r * s^1/6);
* ``"dWr"`` fast scaling: ``e_w = alpha``, ``e_d = e_r = (1 - alpha) / 2``, ``alpha = 0.8``
  (d * s^0.1, w * s^0.4, r * s^0.05).

Rounding (the rule that reproduces Table 1, found by trying the alternatives):

1. depth to the nearest integer;
2. width to the nearest multiple of ``width_multiple``: the head count for the compound scalings
   (Table 1 keeps 6 heads, so multiples of 6), the head *dimension* 64 for width scaling (DeiT
   keeps 64 channels per head and adds heads: DeiT-S is 6 x 64);
3. resolution last: it absorbs the rounding of d and w (``r = r0 * sqrt(s / (d/d0 * (w/w0)^2))``)
   and is rounded to the nearest multiple of the patch size 16.

Plain nearest-multiple rounding of ``r`` gives 288 instead of 272 for dwr, flooring gives 224
instead of 240 for dWr; step 3 gives both. ``s`` is the ratio of the paper's quoted budgets,
4.6 / 1.2 = 3.83; with the exact count of DeiT-Ti (1.254 G, :mod:`.flops`) ``s`` is 3.67 and dWr's
width rounds to 324 instead of 330 (Table 1's width needs ``s`` in [3.79, 3.88]).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

STRATEGIES = ("w", "dwr", "dWr")


@dataclass(frozen=True)
class Shape:
    """A ViT backbone shape: depth, width (hidden size), input resolution, heads."""

    depth: int
    width: int
    resolution: int
    heads: int

    def flops(self, num_classes: int = 1000) -> float:
        """Classification FLOPs (multiply-adds) at ``resolution``, see :mod:`.flops`."""
        from .flops import classifier_flops

        return classifier_flops(self.depth, self.width, self.resolution, num_classes=num_classes).total


DEIT_TI = Shape(12, 192, 224, 3)
DEIT_S = Shape(12, 384, 224, 6)


def exponents(strategy: str, alpha: float = 0.8) -> tuple[float, float, float]:
    """``(e_d, e_w, e_r)``: the share of the log-FLOPs factor given to depth, width, resolution."""
    if strategy == "w":
        return 0.0, 1.0, 0.0
    if strategy == "dwr":
        return 1 / 3, 1 / 3, 1 / 3
    if strategy == "dWr":
        return (1 - alpha) / 2, alpha, (1 - alpha) / 2
    raise ValueError(f"unknown scaling strategy {strategy!r}; choose from {STRATEGIES}")


def _nearest_multiple(x: float, k: int) -> int:
    return max(k, int(math.floor(x / k + 0.5)) * k)


def scale(
    base: Shape, factor: float, strategy: str, *, heads: int | None = None, alpha: float = 0.8,
    patch_size: int = 16,
) -> Shape:
    """Scale ``base`` by a FLOPs ``factor`` with ``strategy`` in ``("w", "dwr", "dWr")``.

    ``heads`` fixes the head count of the result (compound scalings; width then rounds to a
    multiple of it). When None, the head dimension of ``base`` is kept (DeiT's width scaling)
    and the head count follows the width.
    """
    if factor <= 0:
        raise ValueError(f"scaling factor must be positive, got {factor}")
    e_d, e_w, e_r = exponents(strategy, alpha)
    depth = max(1, round(base.depth * factor**e_d))
    if heads is None:
        head_dim = base.width // base.heads
        width = _nearest_multiple(base.width * factor ** (e_w / 2), head_dim)
        heads = width // head_dim
    else:
        width = _nearest_multiple(base.width * factor ** (e_w / 2), heads)
    if e_r == 0:
        resolution = base.resolution
    else:
        # the resolution takes up what the rounding of d and w left of the FLOPs factor
        rest = factor / ((depth / base.depth) * (width / base.width) ** 2)
        resolution = _nearest_multiple(base.resolution * math.sqrt(rest), patch_size)
    return Shape(depth, width, resolution, heads)


def scale_to_flops(
    base: Shape, target_flops: float, strategy: str, *, base_flops: float | None = None,
    heads: int | None = None, alpha: float = 0.8,
) -> Shape:
    """Scale ``base`` to about ``target_flops``; ``base_flops`` defaults to the exact count of
    ``base`` (pass the paper's rounded figure to follow the paper, see the module docstring)."""
    if base_flops is None:
        base_flops = base.flops()
    return scale(base, target_flops / base_flops, strategy, heads=heads, alpha=alpha)
