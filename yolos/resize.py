"""The resize rule shared by inference, training augmentation and FLOPs averaging.

Shortest side to ``short_side`` with the longest side capped at ``long_side`` (aspect kept),
then both sides floored to a multiple of 16 (what transformers and hustvl/YOLOS both do).
"""
from __future__ import annotations


def resize_shape(
    height: int,
    width: int,
    short_side: int,
    long_side: int | None = None,
    multiple: int = 16,
    rule: str = "hf",
) -> tuple[int, int]:
    """Output ``(height, width)`` for an image of ``(height, width)``.

    ``rule="hf"`` reproduces transformers' ``YolosImageProcessor`` (the uncapped short side is
    used for the long side when the cap applies); ``rule="orig"`` the hustvl/YOLOS training
    transforms (the rounded short side is used, and an already-right image is kept first).
    The two almost always agree after the multiple-of-16 floor. A side is never below one
    ``multiple`` (an image thinner than the cap allows, say 4000 x 16, would floor to 0 pixels,
    where transformers fails): such an image is stretched to one patch across.
    """
    if rule not in ("hf", "orig"):
        raise ValueError(f"rule must be 'hf' or 'orig', not {rule!r}")
    size = float(short_side)
    raw = None
    short, long = min(height, width), max(height, width)
    if long_side is not None and long / short * size > long_side:
        raw = long_side * short / long
        size = float(int(round(raw)))
    scale_base = raw if (raw is not None and rule == "hf") else size
    already = (height <= width and height == size) or (width <= height and width == size)
    if rule == "orig" and already:
        out_h, out_w = height, width
    elif width < height:
        out_w, out_h = int(size), int(scale_base * height / width)
    elif already:
        out_h, out_w = height, width
    else:
        out_h, out_w = int(size), int(scale_base * width / height)
    return max(multiple, out_h - out_h % multiple), max(multiple, out_w - out_w % multiple)
