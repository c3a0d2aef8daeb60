"""hustvl/YOLOS augmentation: box arithmetic by hand, sizes, and boxes that still frame the pixels."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from yolos.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RandomSizeCrop,
    ToTensorNormalize,
    crop,
    crop_branch_for_scales,
    hflip,
    make_transforms,
    resize,
    transforms_for_variant,
)


def target(boxes, labels=None):
    boxes = torch.tensor(boxes, dtype=torch.float32)
    n = len(boxes)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return {"boxes": boxes, "labels": torch.arange(n) if labels is None else torch.tensor(labels),
            "area": area, "iscrowd": torch.zeros(n, dtype=torch.int64)}


def test_hflip_box_by_hand():
    image = Image.new("RGB", (100, 50))
    _, t = hflip(image, target([[10, 5, 30, 25]]))
    assert t["boxes"].tolist() == [[70, 5, 90, 25]]


def test_resize_scales_boxes_and_floors_to_16():
    image = Image.new("RGB", (200, 100))  # w=200, h=100
    out, t = resize(image, target([[20, 10, 60, 50]]), 50)
    # short side 50 -> (50, 100) -> floored to (48, 96): ratio 0.48 on both axes
    assert out.size == (96, 48) and t["size"].tolist() == [48, 96]
    assert torch.allclose(t["boxes"], torch.tensor([[9.6, 4.8, 28.8, 24.0]]))
    assert t["area"].item() == pytest.approx(40 * 40 * 0.48 * 0.48)
    # long-side cap: 640x480 at 800 capped to 1000 -> short = round(1000*480/640) = 750 -> (750, 1000) -> (736, 992)
    out, _ = resize(Image.new("RGB", (640, 480)), target([[0, 0, 1, 1]]), 800, 1000)
    assert out.size == (992, 736)


def test_crop_shifts_clips_and_drops_boxes():
    image = Image.new("RGB", (100, 100))
    t = target([[10, 10, 50, 50], [80, 80, 95, 95], [0, 0, 5, 5]], labels=[3, 4, 5])
    out, t = crop(image, t, top=20, left=30, height=50, width=40)
    assert out.size == (40, 50)
    assert t["boxes"].tolist() == [[0, 0, 20, 30]]  # [-20,-10,20,30] clipped; the others empty
    assert t["labels"].tolist() == [3] and t["area"].tolist() == [600]
    assert t["size"].tolist() == [50, 40] and len(t["iscrowd"]) == 1


def test_random_size_crop_respects_bounds():
    rng = random.Random(0)
    op = RandomSizeCrop(30, 60, rng=rng)
    for _ in range(50):
        out, _ = op(Image.new("RGB", (80, 45)), target([[0, 0, 10, 10]]))
        assert 30 <= out.width <= 60 and 30 <= out.height <= 45


def test_to_tensor_normalize_by_hand():
    image = Image.new("RGB", (40, 20), (255, 128, 0))
    x, t = ToTensorNormalize()(image, target([[4, 2, 24, 12]]))
    expected = [(v / 255 - m) / s for v, m, s in zip((255, 128, 0), IMAGENET_MEAN, IMAGENET_STD)]
    assert x.shape == (3, 20, 40) and x.dtype == torch.float32
    assert torch.allclose(x[:, 7, 9], torch.tensor(expected))
    assert torch.allclose(t["boxes"], torch.tensor([[14 / 40, 7 / 20, 20 / 40, 10 / 20]]))


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P"])
def test_to_tensor_normalize_is_to_tensor_then_normalize_to_the_bit(mode):
    """Every uint8 level in every channel, against numpy's float32 /255 then torch's (x - mean) / std
    (hustvl/YOLOS's to_tensor and normalize), bit for bit; non-RGB images go through RGB first."""
    levels = np.arange(256, dtype=np.uint8)
    rgb = np.stack([levels, levels[::-1], np.roll(levels, 85)], -1).reshape(16, 16, 3)
    image = Image.fromarray(rgb).convert(mode)
    x, _ = ToTensorNormalize()(image, target([[1, 1, 5, 5]]))
    reference = np.asarray(image.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / np.float32(255)
    mean, std = (torch.tensor(v, dtype=torch.float32).view(3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    expected = (torch.from_numpy(np.ascontiguousarray(reference)) - mean) / std
    assert x.is_contiguous() and x.dtype == torch.float32 and torch.equal(x, expected)


def test_eval_sizes_per_variant():
    image = Image.new("RGB", (640, 480))
    sizes = {}
    for name in ("yolos-s", "yolos-ti", "micro"):
        x, t = transforms_for_variant(name, "val")(image, target([[0, 0, 10, 10]]))
        sizes[name] = tuple(x.shape[-2:])
    # COCO 000000039769 (640x480) -> 800x1056 (S/B), 512x672 (Ti)
    assert sizes == {"yolos-s": (800, 1056), "yolos-ti": (512, 672), "micro": (96, 128)}


def test_crop_branch_scaling():
    assert crop_branch_for_scales(range(480, 801, 16)) == ((400, 500, 600), (384, 600))
    assert crop_branch_for_scales(range(256, 609, 16)) == ((400, 500, 600), (384, 600))
    assert crop_branch_for_scales((96, 112, 128, 144, 160)) == ((80, 100, 120), (77, 120))


def _frame_of_bright_pixels(x):
    bright = (x > 0.5 * x.max()).all(0)  # white after normalization: every channel high
    ys, xs = torch.nonzero(bright, as_tuple=True)
    if len(ys) == 0:
        return None
    return [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


@pytest.mark.parametrize("variant", ["micro", "yolos-ti"])
def test_train_transform_keeps_boxes_on_their_pixels(variant):
    """A white rectangle on black, with its box as target: after every random train transform
    the box (cxcywh normalized -> pixels) must still frame the white pixels."""
    v_scales = {"micro": (96, 160), "yolos-ti": (256, 608)}[variant]
    arr = np.zeros((300, 400, 3), dtype=np.uint8)
    arr[60:180, 250:370] = 255  # box x 250..370, y 60..180
    image = Image.fromarray(arr)
    rng = random.Random(1)
    tf = transforms_for_variant(variant, "train", rng=rng)
    seen_flip = 0
    for _ in range(12 if variant != "micro" else 25):
        x, t = tf(image, target([[250, 60, 370, 180]]))
        h, w = x.shape[-2:]
        assert h % 16 == 0 and w % 16 == 0
        assert min(h, w) <= v_scales[1] and max(h, w) > 0
        frame = _frame_of_bright_pixels(x)
        if len(t["boxes"]) == 0:
            assert frame is None or (frame[2] - frame[0]) * (frame[3] - frame[1]) < 4
            continue
        cx, cy, bw, bh = t["boxes"][0].tolist()
        box = [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h]
        assert frame is not None
        assert max(abs(a - b) for a, b in zip(box, frame)) <= 2.0, (box, frame)
        seen_flip += box[0] < w / 2 - 1  # the box starts in the right half unless flipped
    assert seen_flip > 0


def test_seeded_transforms_are_reproducible():
    arr = (np.arange(200 * 300 * 3) % 251).astype(np.uint8).reshape(200, 300, 3)
    image = Image.fromarray(arr)

    def run(rng):
        tf = transforms_for_variant("micro", "train", rng=rng)
        return [tf(image, target([[10, 10, 200, 150]])) for _ in range(6)]

    for make in (lambda: random.Random(3), lambda: torch.Generator().manual_seed(3)):
        a, b = run(make()), run(make())
        for (xa, ta), (xb, tb) in zip(a, b):
            assert torch.equal(xa, xb) and torch.equal(ta["boxes"], tb["boxes"])
    shapes = {tuple(x.shape) for x, _ in run(random.Random(4))}
    assert len(shapes) > 1  # actually random


def test_make_transforms_rejects_unknown_split():
    with pytest.raises(ValueError):
        make_transforms("training", scales=[480])
