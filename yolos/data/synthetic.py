"""Seeded coloured shapes on textured backgrounds: a detection task with exact answers.

For tests, demos, the bundled model and from-scratch training studies, with no downloads.
:func:`render_shapes` draws one image; two ways to use it:

* :func:`write_synthetic_dataset` writes a COCO folder: ``out_dir/images/*.jpg`` and
  ``out_dir/annotations.json`` (categories = the shapes, ids from 1). The same arguments give a
  byte-identical json (and, with the same Pillow, identical JPEGs).
* :class:`SyntheticShapes` renders images in memory, fresh every epoch if asked (a training set
  that never repeats), with the same labels as the written folders (so a written folder is its
  validation set).

Every box is the exact tight box of the shape's drawn pixels (``[x, y, w, h]`` with integer pixel
edges), ``area`` is its pixel count; shapes never overlap (one free pixel between neighbours), so
no box is occluded. Side lengths are drawn log-uniformly from ``[min_size, max_size]``, so small
shapes are as common per octave as large ones.

    python -m yolos.data.synthetic OUT --num-images 500 --image-size 128 --max-objects 8 \\
        --min-size 12 --max-size 64 --seed 1000
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

SHAPES = ("square", "circle", "triangle")


@dataclass(frozen=True)
class ShapesSpec:
    """What one image holds. ``min_size``/``max_size`` (side length in pixels) default to the
    original rule: ``image_size // 7`` to ``0.45 * image_size``."""

    image_size: int = 128
    min_objects: int = 1
    max_objects: int = 3
    shapes: tuple[str, ...] = SHAPES
    min_size: int | None = None
    max_size: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "shapes", tuple(self.shapes))
        if not self.shapes or any(s not in SHAPES for s in self.shapes):
            raise ValueError(f"shapes must be a non-empty subset of {SHAPES}, got {self.shapes}")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError("need 1 <= min_objects <= max_objects")
        if self.image_size < 32:
            raise ValueError("image_size must be at least 32")
        lo, hi = self.size_range
        if not 3 <= lo <= hi <= self.image_size:
            raise ValueError(f"need 3 <= min_size <= max_size <= image_size, got {lo}..{hi}")

    @property
    def size_range(self) -> tuple[int, int]:
        lo = self.min_size if self.min_size is not None else max(8, self.image_size // 7)
        hi = self.max_size if self.max_size is not None else max(lo, int(self.image_size * 0.45) - 1)
        return int(lo), int(hi)

    def categories(self) -> list[dict]:
        return [{"id": i + 1, "name": s, "supercategory": "shape"} for i, s in enumerate(self.shapes)]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Mid-tone noise, gradient or stripes (float32 [size, size, 3] in 0..255)."""
    base = rng.uniform(70, 150, size=3).astype(np.float32)
    kind = rng.integers(3)
    ramp = np.arange(size, dtype=np.float32) / size
    if kind == 0:  # noise
        img = base + 18 * rng.standard_normal((size, size, 3), dtype=np.float32)
    else:
        angle = rng.uniform(0, 2 * np.pi if kind == 1 else np.pi)
        # (cos a) x + (sin a) y over the grid, by broadcasting a row against a column
        t = np.float32(np.cos(angle)) * ramp[None, :] + np.float32(np.sin(angle)) * ramp[:, None]
        if kind == 1:  # linear gradient towards a second colour
            other = rng.uniform(70, 150, size=3).astype(np.float32)
            t = (t - t.min()) / max(float(t.max() - t.min()), 1e-9)
            img = base + (other - base) * t[..., None]
        else:  # stripes
            period = rng.uniform(0.05, 0.25)
            wave = np.sin(np.float32(2 * np.pi / period) * t)
            img = base + 25 * wave[..., None] * rng.uniform(0.5, 1.0, size=3).astype(np.float32)
    return np.clip(img, 0, 255)


def _shape_mask(shape: str, s: int, rng) -> np.ndarray:
    """Boolean ``[s, s]`` mask of a shape that touches all four sides of its square."""
    mask = Image.new("L", (s, s), 0)
    draw = ImageDraw.Draw(mask)
    if shape == "square":
        draw.rectangle((0, 0, s - 1, s - 1), fill=255)
    elif shape == "circle":
        draw.ellipse((0, 0, s - 1, s - 1), fill=255)
    else:  # triangle with its apex anywhere on the top edge
        apex = int(rng.integers(0, s))
        draw.polygon([(apex, 0), (0, s - 1), (s - 1, s - 1)], fill=255)
    return np.asarray(mask) > 0


def _colour(rng, background_mean: np.ndarray) -> np.ndarray:
    """A saturated colour (a corner of the RGB cube: 8 hues incl. black and white) far
    (L1 > 200) from the background's mean colour."""
    while True:
        c = rng.choice([0.0, 255.0], size=3) * rng.uniform(0.85, 1.0, size=3)
        if np.abs(c - background_mean).sum() > 200:
            return c


def render_shapes(rng: np.random.Generator, spec: ShapesSpec) -> tuple[np.ndarray, list[dict]]:
    """One image: ``(uint8 [H, W, 3], [{"bbox": [x, y, w, h], "category_id", "area"}, ...])``.

    Places ``min_objects..max_objects`` shapes by rejection sampling (20 tries each; a shape
    that finds no free spot is skipped, so crowded images may hold fewer)."""
    size = spec.image_size
    lo, hi = spec.size_range
    canvas = _background(rng, size)
    bg_mean = canvas.reshape(-1, 3).mean(0)
    occupied = np.zeros((size, size), dtype=bool)
    objects = []
    for _ in range(int(rng.integers(spec.min_objects, spec.max_objects + 1))):
        for _attempt in range(20):
            s = int(round(math.exp(rng.uniform(math.log(lo), math.log(hi + 0.5)))))
            s = min(max(s, lo), hi)
            x0 = int(rng.integers(0, size - s + 1))
            y0 = int(rng.integers(0, size - s + 1))
            # one pixel of margin keeps the boxes of neighbours from touching
            if not occupied[max(0, y0 - 1): y0 + s + 1, max(0, x0 - 1): x0 + s + 1].any():
                break
        else:
            continue
        shape_index = int(rng.integers(len(spec.shapes)))
        mask = _shape_mask(spec.shapes[shape_index], s, rng)
        occupied[y0: y0 + s, x0: x0 + s] = True
        canvas[y0: y0 + s, x0: x0 + s][mask] = _colour(rng, bg_mean)
        ys, xs = np.nonzero(mask)
        bx, by = x0 + int(xs.min()), y0 + int(ys.min())
        bw, bh = x0 + int(xs.max()) + 1 - bx, y0 + int(ys.max()) + 1 - by
        objects.append({"bbox": [bx, by, bw, bh], "category_id": shape_index + 1,
                        "area": int(mask.sum())})
    return canvas.round().astype(np.uint8), objects


def write_synthetic_dataset(out_dir, num_images: int = 200, image_size: int = 128,
                            min_objects: int = 1, max_objects: int = 3,
                            shapes=SHAPES, seed: int = 0, min_size: int | None = None,
                            max_size: int | None = None) -> Path:
    """Write the dataset and return the path of ``annotations.json``."""
    spec = ShapesSpec(image_size, min_objects, max_objects, tuple(shapes), min_size, max_size)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        pixels, objects = render_shapes(rng, spec)
        for obj in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "iscrowd": 0, **obj})
        file_name = f"{image_id:06d}.jpg"
        Image.fromarray(pixels).save(out / "images" / file_name, quality=95)
        images.append({"id": image_id, "file_name": file_name, "height": image_size,
                       "width": image_size})
    spec_dict = asdict(spec)
    spec_dict["shapes"] = list(spec.shapes)
    data = {
        "info": {"description": "yolos synthetic shapes", "seed": seed, "spec": spec_dict},
        "images": images,
        "annotations": annotations,
        "categories": spec.categories(),
    }
    path = out / "annotations.json"
    path.write_text(json.dumps(data, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    return path


class SyntheticShapes(torch.utils.data.Dataset):
    """Shapes rendered in memory: ``dataset[i] -> (image [3, H, W] normalized, target)`` with
    the target layout of :class:`yolos.data.CocoDetection` (labels contiguous ``0..K-1`` in the
    order of ``spec.shapes``, as CocoDetection gives for a written folder).

    Image ``i`` is drawn from a generator seeded by ``(seed, epoch, i)`` when ``fresh`` (every
    epoch new images; the trainer calls :meth:`set_epoch`), by ``(seed, 0, i)`` otherwise (a
    fixed set of ``num_images``). ``transforms`` take ``(PIL image, raw target)`` as for
    CocoDetection; None only converts and normalizes.
    """

    def __init__(self, spec: ShapesSpec, num_images: int, seed: int = 0, fresh: bool = True,
                 transforms=None):
        from .transforms import ToTensorNormalize

        if num_images < 1:
            raise ValueError(f"num_images must be at least 1, got {num_images}")
        self.spec, self.num_images, self.seed, self.fresh = spec, int(num_images), int(seed), bool(fresh)
        self.transforms = transforms if transforms is not None else ToTensorNormalize()
        self.epoch = 0
        self.num_classes = len(spec.shapes)
        self.class_names = dict(enumerate(spec.shapes))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_images

    def render(self, index: int) -> tuple[Image.Image, dict]:
        """The PIL image and its raw target (boxes xyxy in pixels) for item ``index``."""
        rng = np.random.default_rng([self.seed, self.epoch if self.fresh else 0, int(index)])
        pixels, objects = render_shapes(rng, self.spec)
        boxes = torch.tensor([o["bbox"] for o in objects], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        h, w = pixels.shape[:2]
        target = {
            "boxes": boxes,
            "labels": torch.tensor([o["category_id"] - 1 for o in objects], dtype=torch.int64),
            "area": torch.tensor([float(o["area"]) for o in objects], dtype=torch.float32),
            "iscrowd": torch.zeros(len(objects), dtype=torch.int64),
            "image_id": int(index),
            "orig_size": torch.tensor([h, w]), "size": torch.tensor([h, w]),
        }
        return Image.fromarray(pixels), target

    def __getitem__(self, index: int):
        return self.transforms(*self.render(index))

    def __repr__(self) -> str:
        return (f"SyntheticShapes({self.spec}, num_images={self.num_images}, seed={self.seed}, "
                f"fresh={self.fresh})")


SYNTHETIC_KEYS = {"num_images", "seed", "fresh", "image_size", "min_objects", "max_objects", "shapes",
                  "min_size", "max_size"}


def synthetic_from_config(options: dict, source: str = "<dataset>", transforms=None) -> SyntheticShapes:
    """A :class:`SyntheticShapes` from the mapping under ``train: synthetic:`` of a dataset YAML
    (keys: ``num_images`` (per epoch, required), ``seed``, ``fresh``, and the
    :class:`ShapesSpec` fields); errors name the field."""
    from ..errors import DatasetError

    unknown = sorted(set(options) - SYNTHETIC_KEYS)
    if unknown:
        raise DatasetError(f"{source}: unknown field(s) train.synthetic.{', '.join(unknown)}; "
                           f"known: {', '.join(sorted(SYNTHETIC_KEYS))}")
    if "num_images" not in options:
        raise DatasetError(f"{source}: field 'train.synthetic.num_images' (images per epoch) is missing")
    for key in SYNTHETIC_KEYS - {"shapes", "fresh"}:
        value = options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise DatasetError(f"{source}: field 'train.synthetic.{key}' must be an integer, got {value!r}")
    spec_fields = {k: v for k, v in options.items() if k in {"image_size", "min_objects", "max_objects",
                                                              "shapes", "min_size", "max_size"}}
    if "shapes" in spec_fields:
        spec_fields["shapes"] = tuple(spec_fields["shapes"] or ())
    try:
        spec = ShapesSpec(**spec_fields)
        return SyntheticShapes(spec, options["num_images"], seed=options.get("seed", 0),
                               fresh=bool(options.get("fresh", True)), transforms=transforms)
    except (TypeError, ValueError) as e:
        raise DatasetError(f"{source}: field 'train.synthetic': {e}") from None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m yolos.data.synthetic",
                                description="Write a seeded COCO-format shapes dataset.")
    p.add_argument("out_dir")
    p.add_argument("--num-images", type=int, default=200)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--min-objects", type=int, default=1)
    p.add_argument("--max-objects", type=int, default=3)
    p.add_argument("--min-size", type=int, default=None, help="smallest side in pixels (default: image-size/7)")
    p.add_argument("--max-size", type=int, default=None, help="largest side in pixels (default: 0.45 x image-size)")
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=SHAPES)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        path = write_synthetic_dataset(a.out_dir, a.num_images, a.image_size, a.min_objects,
                                       a.max_objects, a.shapes, a.seed, a.min_size, a.max_size)
    except ValueError as e:
        p.error(str(e))
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
