"""A seeded COCO-format dataset of coloured shapes on textured backgrounds.

For tests, demos and overfitting checks without downloads. Layout: ``out_dir/images/*.jpg`` and
``out_dir/annotations.json`` (categories = the shapes, ids from 1). Every box is the exact tight
box of the shape's drawn pixels (computed from its mask, ``[x, y, w, h]`` with integer pixel
edges), ``area`` is its pixel count; shapes never overlap, so no box is occluded. The same
arguments give a byte-identical json (and, with the same Pillow, identical JPEGs).

    python -m yolos.data.synthetic OUT --num-images 200 --image-size 128 --shapes square circle
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("square", "circle", "triangle")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Mid-tone noise, gradient or stripes (float [size, size, 3] in 0..255)."""
    base = rng.uniform(70, 150, size=3)
    kind = rng.integers(3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    if kind == 0:  # noise
        img = base + rng.normal(0, 18, size=(size, size, 3))
    elif kind == 1:  # linear gradient
        other = rng.uniform(70, 150, size=3)
        angle = rng.uniform(0, 2 * np.pi)
        t = (np.cos(angle) * xx + np.sin(angle) * yy)
        t = (t - t.min()) / max(t.max() - t.min(), 1e-9)
        img = base + (other - base) * t[..., None]
    else:  # stripes
        period = rng.uniform(0.05, 0.25)
        angle = rng.uniform(0, np.pi)
        wave = np.sin(2 * np.pi * (np.cos(angle) * xx + np.sin(angle) * yy) / period)
        img = base + 25 * wave[..., None] * rng.uniform(0.5, 1.0, size=3)
    return np.clip(img, 0, 255)


def _shape_mask(shape: str, size: int, x0: int, y0: int, s: int, rng) -> np.ndarray:
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    box = (x0, y0, x0 + s - 1, y0 + s - 1)
    if shape == "square":
        draw.rectangle(box, fill=255)
    elif shape == "circle":
        draw.ellipse(box, fill=255)
    elif shape == "triangle":
        apex = x0 + int(rng.integers(0, s))
        draw.polygon([(apex, y0), (x0, y0 + s - 1), (x0 + s - 1, y0 + s - 1)], fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    return np.asarray(mask) > 0


def _colour(rng, background_mean: np.ndarray) -> np.ndarray:
    """A saturated colour far (L1 > 200) from the background's mean colour."""
    while True:
        c = rng.choice([0.0, 255.0], size=3) * rng.uniform(0.85, 1.0, size=3)
        if np.abs(c - background_mean).sum() > 200:
            return c


def write_synthetic_dataset(out_dir, num_images: int = 200, image_size: int = 128,
                            min_objects: int = 1, max_objects: int = 3,
                            shapes=SHAPES, seed: int = 0) -> Path:
    """Write the dataset and return the path of ``annotations.json``."""
    shapes = tuple(shapes)
    if not shapes or any(s not in SHAPES for s in shapes):
        raise ValueError(f"shapes must be a non-empty subset of {SHAPES}, got {shapes}")
    if not 1 <= min_objects <= max_objects:
        raise ValueError("need 1 <= min_objects <= max_objects")
    if image_size < 32:
        raise ValueError("image_size must be at least 32")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        canvas = _background(rng, image_size)
        bg_mean = canvas.reshape(-1, 3).mean(0)
        occupied = np.zeros((image_size, image_size), dtype=bool)
        for _ in range(int(rng.integers(min_objects, max_objects + 1))):
            for _attempt in range(20):  # rejection-sample a free spot; give up quietly
                s = int(rng.integers(max(8, image_size // 7), max(9, int(image_size * 0.45))))
                x0 = int(rng.integers(0, image_size - s + 1))
                y0 = int(rng.integers(0, image_size - s + 1))
                # one pixel of margin keeps the boxes of neighbours from touching
                if not occupied[max(0, y0 - 1): y0 + s + 1, max(0, x0 - 1): x0 + s + 1].any():
                    break
            else:
                continue
            shape_index = int(rng.integers(len(shapes)))
            mask = _shape_mask(shapes[shape_index], image_size, x0, y0, s, rng)
            occupied[y0: y0 + s, x0: x0 + s] = True
            canvas[mask] = _colour(rng, bg_mean)
            ys, xs = np.nonzero(mask)
            bx, by = int(xs.min()), int(ys.min())
            bw, bh = int(xs.max()) + 1 - bx, int(ys.max()) + 1 - by
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": shape_index + 1,
                "bbox": [bx, by, bw, bh], "area": int(mask.sum()), "iscrowd": 0,
            })
        file_name = f"{image_id:06d}.jpg"
        Image.fromarray(canvas.round().astype(np.uint8)).save(out / "images" / file_name, quality=95)
        images.append({"id": image_id, "file_name": file_name, "height": image_size,
                       "width": image_size})
    data = {
        "info": {"description": "yolos synthetic shapes", "seed": seed},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": s, "supercategory": "shape"}
                       for i, s in enumerate(shapes)],
    }
    path = out / "annotations.json"
    path.write_text(json.dumps(data, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m yolos.data.synthetic",
                                description="Write a seeded COCO-format shapes dataset.")
    p.add_argument("out_dir")
    p.add_argument("--num-images", type=int, default=200)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--min-objects", type=int, default=1)
    p.add_argument("--max-objects", type=int, default=3)
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=SHAPES)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    path = write_synthetic_dataset(a.out_dir, a.num_images, a.image_size, a.min_objects,
                                   a.max_objects, a.shapes, a.seed)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
