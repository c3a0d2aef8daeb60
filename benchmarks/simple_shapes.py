"""Does the bundled model detect shapes drawn the simple way? Precision and recall at a threshold.

The images are drawn here with PIL, independently of the project's generator: one plain
background colour (uniform over RGB), 2-6 non-overlapping filled squares, circles and
isosceles apex-up triangles of 18-48 px on a 128 px canvas, each fill either saturated (HSV
saturation and value 1) or pale (saturation 0.2-0.45, value 1), at least ``--min-contrast`` (L1
over RGB) from the background. What a user draws in a paint program to try the demo model.

A detection is a true positive when it has the right label and IoU >= 0.5 with a still
unmatched object (greedy, highest score first); precision and recall are pooled over all images.

    python -m benchmarks.simple_shapes                          # the bundled model, 500 images
    python -m benchmarks.simple_shapes --model run/last.safetensors --seed 7 --save-examples out/
"""
from __future__ import annotations

import argparse
import colorsys
import random
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from yolos import from_pretrained
from yolos.box_ops import box_iou
from yolos.defaults import DEFAULT_MODEL

KINDS = ("square", "circle", "triangle")


def draw_image(rnd: random.Random, size: int = 128, min_contrast: float = 60.0):
    """``(PIL image, [(kind, (x0, y0, x1, y1)), ...])`` with exclusive pixel edges."""
    background = tuple(rnd.randrange(256) for _ in range(3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    objects, taken = [], []
    for _ in range(rnd.randint(2, 6)):
        for _attempt in range(50):
            s = rnd.randint(18, 48)
            x, y = rnd.randrange(size - s + 1), rnd.randrange(size - s + 1)
            box = (x, y, x + s, y + s)
            if all(box[2] + 1 < o[0] or o[2] + 1 < box[0] or box[3] + 1 < o[1] or o[3] + 1 < box[1] for o in taken):
                break
        else:
            continue
        while True:
            pale = rnd.random() < 0.5
            rgb = colorsys.hsv_to_rgb(rnd.random(), rnd.uniform(0.2, 0.45) if pale else 1.0, 1.0)
            fill = tuple(round(255 * c) for c in rgb)
            if sum(abs(a - b) for a, b in zip(fill, background)) >= min_contrast:
                break
        kind = rnd.choice(KINDS)
        x0, y0, x1, y1 = box[0], box[1], box[2] - 1, box[3] - 1
        if kind == "square":
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        elif kind == "circle":
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        else:
            draw.polygon([((x0 + x1) / 2, y0), (x0, y1), (x1, y1)], fill=fill)
        taken.append(box)
        objects.append((kind, box))
    return image, objects


def score(detections, objects, names: dict[int, str]) -> tuple[int, int, int]:
    """(true positives, detections, objects) of one image."""
    if not objects:
        return 0, len(detections), 0
    truth = torch.tensor([box for _, box in objects], dtype=torch.float32)
    kinds = [kind for kind, _ in objects]
    iou = box_iou(detections.boxes.float(), truth)[0] if len(detections) else torch.zeros(0, len(objects))
    matched, tp = set(), 0
    for i in detections.scores.argsort(descending=True).tolist():
        for j in iou[i].argsort(descending=True).tolist():
            if iou[i, j] < 0.5:
                break
            if j not in matched and detections.label_names[i] == kinds[j]:
                matched.add(j)
                tp += 1
                break
    return tp, len(detections), len(objects)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--num-images", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--min-contrast", type=float, default=60.0)
    ap.add_argument("--save-examples", default=None, help="folder for the first 8 images with their detections")
    args = ap.parse_args(argv)
    model = from_pretrained(args.model)
    rnd = random.Random(args.seed)
    drawn = [draw_image(rnd, min_contrast=args.min_contrast) for _ in range(args.num_images)]
    found = model.predict([im for im, _ in drawn], threshold=args.threshold, batch_size=32)
    tp = dets = objs = 0
    for det, (_, objects) in zip(found, drawn):
        a, b, c = score(det, objects, model.config.class_names or {})
        tp, dets, objs = tp + a, dets + b, objs + c
    if args.save_examples:
        out = Path(args.save_examples)
        out.mkdir(parents=True, exist_ok=True)
        for i, (det, (image, _)) in enumerate(zip(found[:8], drawn)):
            det.plot(image).resize((384, 384), Image.Resampling.NEAREST).save(out / f"simple_{i}.png")
    print(f"{args.model}: {args.num_images} simple images (seed {args.seed}), {objs} shapes, threshold "
          f"{args.threshold}: precision {tp / max(dets, 1):.3f} ({tp}/{dets}), recall {tp / max(objs, 1):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
