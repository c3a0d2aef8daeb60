"""Preprocessing speed: ``yolos.preprocess`` vs transformers' ``YolosImageProcessorPil`` on the real
images of ../shared/data (coco-val80 + the cats image), one image per call (the inference case)
and whole batches of 8, identical outputs (max |diff| of pixel_values).

    python -m benchmarks.preprocess [--short-side 800 --long-side 1333] [--repeats 3]

Images are decoded once beforehand (PIL, RGB): both sides get the same in-memory images, so the
figure is resize + normalize + pad, not JPEG decoding.
"""
from __future__ import annotations

import argparse
import time

from PIL import Image

from benchmarks.common import SHARED_DATA, environment, table


def load_images() -> list[Image.Image]:
    files = sorted((SHARED_DATA / "coco-val80").rglob("*.jpg"))
    files += sorted((SHARED_DATA / "cats-39769").glob("*.png"))
    if not files:
        raise SystemExit(f"no images under {SHARED_DATA} (coco-val80, cats-39769)")
    images = []
    for f in files:
        with Image.open(f) as im:
            images.append(im.convert("RGB"))
    return images


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short-side", type=int, default=800)
    ap.add_argument("--long-side", type=int, default=1333)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from transformers.models.yolos.image_processing_pil_yolos import YolosImageProcessorPil

    from yolos import preprocess

    print(environment())
    images = load_images()
    theirs = YolosImageProcessorPil(size={"shortest_edge": args.short_side, "longest_edge": args.long_side})

    def ours_fn(batch):
        return preprocess(batch, short_side=args.short_side, long_side=args.long_side)["pixel_values"]

    def theirs_fn(batch):
        return theirs(images=batch, return_tensors="pt")["pixel_values"]

    rows = []
    for bs in (1, 8):
        batches = [images[i:i + bs] for i in range(0, len(images) - bs + 1, bs)]
        diff = max((ours_fn(b) - theirs_fn(b)).abs().max().item() for b in batches)
        totals = {"ours": [], "theirs": []}
        for _ in range(args.repeats):  # alternate whole passes over the image set
            for name, fn in (("ours", ours_fn), ("theirs", theirs_fn)):
                t0 = time.perf_counter()
                for b in batches:
                    fn(b)
                totals[name].append(time.perf_counter() - t0)
        n = len(batches) * bs
        med = {k: sorted(v)[len(v) // 2] / n * 1e3 for k, v in totals.items()}
        rows.append([f"batch {bs} ({n} images)", f"{med['ours']:.1f}", f"{med['theirs']:.1f}",
                     f"{med['theirs'] / med['ours']:.1f}x", f"{diff:.1e}"])
        print(f"  batch {bs}: {med} diff {diff}", flush=True)
    print(table(rows, ["case", "yolos ms/img", "YolosImageProcessorPil ms/img", "speed-up",
                       "max |diff|"]))


if __name__ == "__main__":
    main()
