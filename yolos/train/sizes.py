"""Input sizes for fine-tuning, chosen from the data (``--recipe finetune``, ``--sizes-from-data``).

A checkpoint comes with the input size it was trained at: the bundled model 128 pixels, YOLOS-Ti
512. Kept on 2048x1371 photos of chess pieces, 128 pixels makes every piece a few pixels wide and
AP collapses. The rule here sizes the input so that the small objects of the data (the first
quartile of box sides) span at least :data:`MIN_PATCHES` patches, and never beyond what the
images hold (their median short side) or :data:`MAX_SHORT_SIDE`; the checkpoint's own size is
the floor. Training scales run from 3/4 of that size up to it, in steps of 32; the long side
follows the images' aspect ratio. Boxes that stay below one patch even so are counted, so the
run can warn about them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

MIN_PATCHES = 2
MAX_SHORT_SIDE = 800  # what the released YOLOS-S/B evaluate at
MAX_LONG_SIDE = 1333
STEP = 32


@dataclass(frozen=True)
class DataSizes:
    """What :func:`choose_sizes` decided and why (for the run's log)."""

    train_sizes: list | None  # None: the checkpoint's own sizes are enough
    max_size: int
    eval_size: int
    eval_max_size: int
    median_image: tuple  # (short, long) sides
    box_quartile: float  # first quartile of box sides / the image's short side
    below_one_patch: float  # share of boxes under one patch at eval_size

    def describe(self, base: tuple[int, int]) -> str:
        size = f"short side {self.eval_size}, long side {self.eval_max_size}"
        why = (f"median image {self.median_image[1]}x{self.median_image[0]}, a quarter of the boxes under "
               f"{self.box_quartile:.1%} of the short side")
        if self.train_sizes is None:
            return f"input size from the data: the checkpoint's own, {size} ({why})"
        return (f"input size from the data: {size}, training scales {self.train_sizes[0]}..{self.train_sizes[-1]} "
                f"(the checkpoint's: {base[0]}/{base[1]}; {why}); --train-sizes/--eval-size override")

    def warning(self, patch: int) -> str | None:
        if self.below_one_patch < 0.05:
            return None
        return (f"warning: {self.below_one_patch:.0%} of the training boxes are smaller than one {patch}-pixel patch "
                f"at short side {self.eval_size}: expect them to be missed (a larger --eval-size and "
                f"--train-sizes cost time)")


def _round_up(v: float, step: int = STEP) -> int:
    return int(math.ceil(v / step) * step)


def _quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def choose_sizes(images: list[tuple[int, int]], boxes: list[tuple[float, int]], base: tuple[int, int],
                 patch: int = 16) -> DataSizes:
    """Sizes for training images ``images`` (``(width, height)`` each) and their ``boxes``
    (``(sqrt of the box's area in pixels, index of its image)``), for a checkpoint evaluated at
    ``base`` (short, long). See the module doc for the rule."""
    shorts = [min(w, h) for w, h in images]
    longs = [max(w, h) for w, h in images]
    median_short, median_long = int(_quantile(shorts, 0.5)), int(_quantile(longs, 0.5))
    relative = [side / shorts[i] for side, i in boxes if shorts[i] > 0]
    quartile = _quantile(relative, 0.25) if relative else 1.0
    wanted = MIN_PATCHES * patch / max(quartile, 1e-6)
    ceiling = max(base[0], min(MAX_SHORT_SIDE, median_short // STEP * STEP))
    short = max(base[0], min(ceiling, _round_up(wanted)))
    aspect = _quantile([lo / sh for lo, sh in zip(longs, shorts) if sh > 0], 0.9) or 1.0
    below = sum(r * short < patch for r in relative) / len(relative) if relative else 0.0
    if short == base[0]:  # the checkpoint's size is enough: nothing changes
        return DataSizes(None, base[1], base[0], base[1], (median_short, median_long), quartile, below)
    long = max(short, min(MAX_LONG_SIDE, _round_up(short * aspect)))
    return DataSizes(scales_up_to(short, patch), long, short, long, (median_short, median_long), quartile, below)


def scales_up_to(short: int, patch: int = 16) -> list[int]:
    """Multi-scale training short sides for an input of short side ``short``: from 3/4 of it up."""
    low = max(patch, _round_up(short * 0.75))
    return list(range(low, short, STEP)) + [short]


def sizes_of(dataset, sample: int = 2000) -> tuple[list, list]:
    """``(images, boxes)`` for :func:`choose_sizes` from a checked dataset's annotations (no
    image is decoded): the first ``sample`` images."""
    images, boxes = [], []
    for image_id in dataset.ids[:sample]:
        info = dataset.images[image_id]
        images.append((info["width"], info["height"]))
        for a in dataset.annotations[image_id]:
            if not a.get("iscrowd", 0):
                boxes.append((math.sqrt(max(a["bbox"][2] * a["bbox"][3], 0.0)), len(images) - 1))
    return images, boxes


__all__ = ["DataSizes", "choose_sizes", "sizes_of", "scales_up_to"]
