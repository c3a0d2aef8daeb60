"""Seeded shapes datasets: a detection task with exact answers, written to disk or rendered in memory.

For tests, demos, the bundled model, fine-tuning benchmarks and from-scratch training studies,
with no downloads. :func:`yolos.data.shapes.render_shapes` draws one image (the kinds of shape,
the ``classic`` and ``varied`` looks and outlines are described there); two ways to use it:

* :func:`write_synthetic_dataset` writes a COCO folder: ``out_dir/images/*.jpg`` and
  ``out_dir/annotations.json`` (categories = the shapes, ids from 1). The same arguments give a
  byte-identical json (and, with the same Pillow, identical JPEGs).
* :class:`SyntheticShapes` renders images in memory, fresh every epoch if asked (a training set
  that never repeats), with the same labels as the written folders (so a written folder is its
  validation set).

    python -m yolos.data.synthetic OUT --num-images 500 --image-size 128 --max-objects 8 \\
        --min-size 12 --max-size 64 --seed 1000 [--look varied] [--outline 0.5] [--shapes star cross ring]
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..files import atomic_path, atomic_write_text
from .shapes import CLASSIC_SHAPES, LOOKS, SHAPES, ShapesSpec, render_shapes
from .targets import raw_target

MAX_NUM_IMAGES = 10_000_000  # per epoch / per written folder: a bound checked before anything runs


def write_synthetic_dataset(out_dir, num_images: int = 200, image_size: int = 128,
                            min_objects: int = 1, max_objects: int = 3,
                            shapes=CLASSIC_SHAPES, seed: int = 0, min_size: int | None = None,
                            max_size: int | None = None, look: str = "classic",
                            outline: float = 0.0) -> Path:
    """Write the dataset and return the path of ``annotations.json``."""
    spec = ShapesSpec(image_size, min_objects, max_objects, tuple(shapes), min_size, max_size, look, outline)
    if not 1 <= num_images <= MAX_NUM_IMAGES:
        raise ValueError(f"num_images must be 1..{MAX_NUM_IMAGES}, got {num_images}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        pixels, objects = render_shapes(rng, spec)
        for obj in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "iscrowd": 0, **obj})
        file_name = f"{image_id:06d}.jpg"
        with atomic_path(out / "images" / file_name, suffix=".jpg") as tmp:
            Image.fromarray(pixels).save(tmp, quality=95)
        images.append({"id": image_id, "file_name": file_name, "height": image_size,
                       "width": image_size})
    spec_dict = asdict(spec)
    spec_dict["shapes"] = list(spec.shapes)
    if spec.look == "classic" and not spec.outline:  # the json of the classic look stays as it was
        del spec_dict["look"], spec_dict["outline"]
    data = {
        "info": {"description": "yolos synthetic shapes", "seed": seed, "spec": spec_dict},
        "images": images,
        "annotations": annotations,
        "categories": spec.categories(),
    }
    path = out / "annotations.json"
    atomic_write_text(path, json.dumps(data, sort_keys=True, indent=1) + "\n")
    return path


class SyntheticShapes(torch.utils.data.Dataset):
    """Shapes rendered in memory: ``dataset[i] -> (image [3, H, W] normalized, target)`` with
    the target layout of :class:`yolos.data.DetectionDataset` (labels contiguous ``0..K-1`` in the
    order of ``spec.shapes``, as DetectionDataset gives for a written folder).

    Image ``i`` is drawn from a generator seeded by ``(seed, epoch, i)`` when ``fresh`` (every
    epoch new images; the trainer calls :meth:`set_epoch`), by ``(seed, 0, i)`` otherwise (a
    fixed set of ``num_images``). ``transforms`` take ``(PIL image, raw target)`` as for
    DetectionDataset; None only converts and normalizes.
    """

    def __init__(self, spec: ShapesSpec, num_images: int, seed: int = 0, fresh: bool = True,
                 transforms=None):
        from .transforms import ToTensorNormalize

        if not 1 <= num_images <= MAX_NUM_IMAGES:
            raise ValueError(f"num_images must be 1..{MAX_NUM_IMAGES}, got {num_images}")
        self.spec, self.num_images, self.seed, self.fresh = spec, int(num_images), int(seed), bool(fresh)
        self.transforms = transforms if transforms is not None else ToTensorNormalize()
        self.epoch = 0
        self.num_classes = len(spec.shapes)
        self.class_names = dict(enumerate(spec.shapes))
        self.category_ids = list(range(1, self.num_classes + 1))  # as in a written folder's json
        self.keep_category_ids = False

    @property
    def categories(self) -> list[dict]:
        """``[{"id", "name"}]`` as a written folder's json has them (the dataset interface)."""
        return [{"id": cid, "name": self.class_names[label]} for label, cid in enumerate(self.category_ids)]

    @property
    def annotation_file(self) -> str:
        return f"rendered shapes ({', '.join(self.spec.shapes)})"

    def label_to_category_id(self, label: int) -> int:
        return self.category_ids[int(label)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_images

    def render(self, index: int) -> tuple[Image.Image, dict]:
        """The PIL image and its raw target (boxes xyxy in pixels) for item ``index``."""
        rng = np.random.default_rng([self.seed, self.epoch if self.fresh else 0, int(index)])
        pixels, objects = render_shapes(rng, self.spec)
        h, w = pixels.shape[:2]
        target = raw_target([o["bbox"] for o in objects], [o["category_id"] - 1 for o in objects],
                            [o["area"] for o in objects], index, w, h)
        return Image.fromarray(pixels), target

    def __getitem__(self, index: int):
        return self.transforms(*self.render(index))

    def __repr__(self) -> str:
        return (f"SyntheticShapes({self.spec}, num_images={self.num_images}, seed={self.seed}, "
                f"fresh={self.fresh})")


SPEC_KEYS = {"image_size", "min_objects", "max_objects", "shapes", "min_size", "max_size", "look", "outline"}
SYNTHETIC_KEYS = {"num_images", "seed", "fresh"} | SPEC_KEYS


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
    for key in SYNTHETIC_KEYS - {"shapes", "fresh", "look", "outline"}:
        value = options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise DatasetError(f"{source}: field 'train.synthetic.{key}' must be an integer, got {value!r}")
    outline = options.get("outline", 0.0)
    if isinstance(outline, bool) or not isinstance(outline, (int, float)):
        raise DatasetError(f"{source}: field 'train.synthetic.outline' must be a number 0..1, got {outline!r}")
    spec_fields = {k: v for k, v in options.items() if k in SPEC_KEYS}
    if "shapes" in spec_fields:
        shapes = spec_fields["shapes"]
        if not isinstance(shapes, (list, tuple)) or not all(isinstance(x, str) for x in shapes):
            raise DatasetError(f"{source}: field 'train.synthetic.shapes' must be a list of names from "
                               f"{', '.join(SHAPES)}, got {shapes!r}")
        spec_fields["shapes"] = tuple(shapes)
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
    p.add_argument("--shapes", nargs="+", default=list(CLASSIC_SHAPES), choices=SHAPES,
                   help="kinds, in label order (default: square circle triangle)")
    p.add_argument("--look", choices=LOOKS, default="classic",
                   help="classic: textured mid-tone backgrounds, 8 colours; varied: plain or textured backgrounds "
                        "and fills of any colour, rotated triangles and stars, sensor noise")
    p.add_argument("--outline", type=float, default=0.0, help="share of shapes drawn as outlines (0..1)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        path = write_synthetic_dataset(a.out_dir, a.num_images, a.image_size, a.min_objects,
                                       a.max_objects, a.shapes, a.seed, a.min_size, a.max_size,
                                       a.look, a.outline)
    except ValueError as e:
        p.error(str(e))
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
