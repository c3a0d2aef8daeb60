"""Training and evaluation transforms of the original YOLOS repository.

Every transform is a callable ``(image: PIL.Image, target: dict) -> (image, target)``. Until
:class:`ToTensorNormalize` runs, ``target["boxes"]`` is ``[N, 4]`` float32 **xyxy in absolute
pixels** of the current image, together with ``labels [N]``, ``area [N]``, ``iscrowd [N]`` and
``size`` (h, w). :class:`ToTensorNormalize` turns the image into a normalized ``[3, h, w]``
float32 tensor and the boxes into **cxcywh normalized by the unpadded (h, w)** (hustvl/YOLOS convention).

Randomness comes from an ``rng`` object with the ``random.Random`` interface: by default the
global :mod:`random` module (which torch's DataLoader seeds per worker), or a seeded
``random.Random`` / a :class:`TorchRandom` wrapping a ``torch.Generator`` for reproducible runs.
"""
from __future__ import annotations

import random as _random

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..box_ops import xyxy_to_cxcywh
from ..images import IMAGENET_MEAN, IMAGENET_STD
from ..resize import resize_shape

# The crop branch of hustvl/YOLOS (sizes for 480..800 px training); smaller variants scale these.
ORIG_CROP_RESIZE = (400, 500, 600)
ORIG_CROP_SIZE = (384, 600)


class TorchRandom:
    """The three ``random.Random`` methods the transforms use, drawn from a ``torch.Generator``."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def random(self) -> float:
        return torch.rand((), generator=self.generator).item()

    def randint(self, a: int, b: int) -> int:  # inclusive, like random.randint
        return int(torch.randint(a, b + 1, (), generator=self.generator))

    def choice(self, seq):
        return seq[self.randint(0, len(seq) - 1)]


def _as_rng(rng):
    if rng is None:
        return _random
    if isinstance(rng, torch.Generator):
        return TorchRandom(rng)
    return rng


def _filter(target: dict, keep: Tensor) -> None:
    for key in ("boxes", "labels", "area", "iscrowd"):
        if key in target:
            target[key] = target[key][keep]


# ---------------------------------------------------------------------------- functional
def hflip(image: Image.Image, target: dict) -> tuple[Image.Image, dict]:
    """Mirror the image; box x-coordinates become ``w - x`` (x0 and x1 swap roles)."""
    w = image.width
    target = dict(target)
    boxes = target["boxes"]
    target["boxes"] = torch.stack((w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]), -1)
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), target


def resize(image: Image.Image, target: dict, size: int, max_size: int | None = None):
    """Shortest side to ``size`` (long side capped at ``max_size``), sides floored to a multiple
    of 16 with the hustvl/YOLOS rule; boxes and areas scale with the per-axis ratios."""
    h, w = image.height, image.width
    new_h, new_w = resize_shape(h, w, size, max_size, rule="orig")
    if (new_h, new_w) != (h, w):
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    rw, rh = new_w / w, new_h / h
    target = dict(target)
    target["boxes"] = target["boxes"] * torch.tensor([rw, rh, rw, rh], dtype=torch.float32)
    if "area" in target:
        target["area"] = target["area"] * (rw * rh)
    target["size"] = torch.tensor([new_h, new_w])
    return image, target


def crop(image: Image.Image, target: dict, top: int, left: int, height: int, width: int):
    """Crop a region; boxes are shifted, clipped to it, and dropped when they become empty
    (zero width or height), as hustvl/YOLOS ``crop`` does. Areas are recomputed from the clipped boxes."""
    image = image.crop((left, top, left + width, top + height))
    target = dict(target)
    boxes = target["boxes"] - torch.tensor([left, top, left, top], dtype=torch.float32)
    corners = torch.min(boxes.reshape(-1, 2, 2), torch.tensor([width, height], dtype=torch.float32))
    corners = corners.clamp(min=0)
    target["boxes"] = corners.reshape(-1, 4)
    target["area"] = (corners[:, 1, :] - corners[:, 0, :]).prod(dim=1)
    target["size"] = torch.tensor([height, width])
    _filter(target, (corners[:, 1, :] > corners[:, 0, :]).all(dim=1))
    return image, target


# ---------------------------------------------------------------------------- random ops
class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5, rng=None):
        self.p, self.rng = p, _as_rng(rng)

    def __call__(self, image, target):
        if self.rng.random() < self.p:
            return hflip(image, target)
        return image, target


class RandomResize:
    """Resize to a shortest side drawn uniformly from ``sizes``."""

    def __init__(self, sizes, max_size: int | None = None, rng=None):
        self.sizes, self.max_size, self.rng = list(sizes), max_size, _as_rng(rng)

    def __call__(self, image, target):
        return resize(image, target, self.rng.choice(self.sizes), self.max_size)


class RandomSizeCrop:
    """Crop ``w ~ U{min_size..min(W, max_size)}``, ``h ~ U{min_size..min(H, max_size)}`` at a
    uniformly random position. An image smaller than ``min_size`` is cropped to its own size
    on that axis (hustvl/YOLOS would raise there)."""

    def __init__(self, min_size: int, max_size: int, rng=None):
        self.min_size, self.max_size, self.rng = min_size, max_size, _as_rng(rng)

    def __call__(self, image, target):
        W, H = image.width, image.height
        w = self.rng.randint(min(self.min_size, W), min(W, self.max_size))
        h = self.rng.randint(min(self.min_size, H), min(H, self.max_size))
        top = self.rng.randint(0, H - h)
        left = self.rng.randint(0, W - w)
        return crop(image, target, top, left, h, w)


class RandomSelect:
    """Apply ``first`` with probability ``p``, otherwise ``second``."""

    def __init__(self, first, second, p: float = 0.5, rng=None):
        self.first, self.second, self.p, self.rng = first, second, p, _as_rng(rng)

    def __call__(self, image, target):
        if self.rng.random() < self.p:
            return self.first(image, target)
        return self.second(image, target)


class ToTensorNormalize:
    """PIL RGB -> ``[3, h, w]`` float32 in [0, 1] -> ImageNet normalized; boxes xyxy pixels ->
    cxcywh normalized by this (unpadded) image size."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image, target):
        # /255 in float32 then (x - mean) / std, in hustvl/YOLOS's order (to_tensor, normalize),
        # in place on one [3, h, w] buffer: the same float32 operations with fewer copies
        # (tests/test_transforms.py checks every pixel level against numpy's)
        pixels = np.array(image if image.mode == "RGB" else image.convert("RGB"))  # [h, w, 3] uint8, writable
        x = torch.empty((3, *pixels.shape[:2]), dtype=torch.float32)
        x.copy_(torch.from_numpy(pixels).permute(2, 0, 1))
        x.div_(255).sub_(self.mean).div_(self.std)
        target = dict(target)
        h, w = x.shape[-2:]
        target["boxes"] = xyxy_to_cxcywh(target["boxes"]) / torch.tensor(
            [w, h, w, h], dtype=torch.float32)
        target["size"] = torch.tensor([h, w])
        return x, target


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, image, target):
        for t in self.transforms:
            image, target = t(image, target)
        return image, target

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(type(t).__name__ for t in self.transforms) + ")"


# ---------------------------------------------------------------------------- recipes
def make_transforms(
    split: str,
    scales=None,
    max_size: int | None = None,
    eval_size: tuple[int, int] = (800, 1333),
    crop_resize=ORIG_CROP_RESIZE,
    crop_size=ORIG_CROP_SIZE,
    rng=None,
) -> Compose:
    """hustvl/YOLOS ``make_coco_transforms``.

    train: RandomHorizontalFlip(0.5) -> RandomSelect(p=0.5) of
    (A) RandomResize(scales, max_size) or
    (B) RandomResize(crop_resize) -> RandomSizeCrop(*crop_size) -> RandomResize(scales, max_size);
    then ToTensorNormalize. ``val``/``test``/``eval``: resize to ``eval_size = (short, long)``.
    ``rng``: None (global ``random``), a ``random.Random`` or a ``torch.Generator``.
    """
    rng = _as_rng(rng)
    if split == "train":
        if not scales:
            raise ValueError("make_transforms('train') needs the training scales")
        return Compose([
            RandomHorizontalFlip(0.5, rng=rng),
            RandomSelect(
                RandomResize(scales, max_size=max_size, rng=rng),
                Compose([
                    RandomResize(crop_resize, rng=rng),
                    RandomSizeCrop(crop_size[0], crop_size[1], rng=rng),
                    RandomResize(scales, max_size=max_size, rng=rng),
                ]),
                p=0.5, rng=rng,
            ),
            ToTensorNormalize(),
        ])
    if split in ("val", "test", "eval"):
        short, long = eval_size
        return Compose([RandomResize([short], max_size=long, rng=rng), ToTensorNormalize()])
    raise ValueError(f"split must be 'train' or 'val', not {split!r}")


def crop_branch_for_scales(scales) -> tuple[tuple[int, ...], tuple[int, int]]:
    """Crop-branch sizes for a training scale range.

    hustvl/YOLOS uses resize (400, 500, 600) then crop 384..600 for both Ti (256..608) and S/B
    (480..800). Variants whose largest scale is below 480 px (``micro``: 96..160) would get
    crops larger than the images they train on, so there the hustvl/YOLOS values are scaled by
    ``max(scales) / 800`` (micro: resize (80, 100, 120), crop 77..120) - the same proportion
    to the largest training scale as in the S/B recipe.
    """
    top = max(scales)
    if top >= 480:
        return ORIG_CROP_RESIZE, ORIG_CROP_SIZE
    f = top / 800
    resize_sizes = tuple(max(16, int(round(s * f))) for s in ORIG_CROP_RESIZE)
    sizes = tuple(max(16, int(round(s * f))) for s in ORIG_CROP_SIZE)
    return resize_sizes, (sizes[0], sizes[1])


def transforms_for_variant(name: str, split: str, rng=None) -> Compose:
    """The hustvl/YOLOS recipe of a variant (``yolos.model.get_variant``): its training scales and
    max size, its evaluation size under the paper's protocol (Ti 512/853, S/B 800/1333, micro 128/128)."""
    from ..model.variants import eval_sizes, get_variant

    v = get_variant(name)
    crop_resize, crop_size = crop_branch_for_scales(v.train_scales)
    return make_transforms(
        split, scales=v.train_scales, max_size=v.train_max_size,
        eval_size=eval_sizes(name, "paper"),
        crop_resize=crop_resize, crop_size=crop_size, rng=rng,
    )
