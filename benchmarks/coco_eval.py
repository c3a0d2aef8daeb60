"""COCO bbox evaluation time: faster-coco-eval (what yolos uses) vs pycocotools on the same
detections, same AP.

    python -m benchmarks.coco_eval [--per-image 100] [--repeats 3]

Ground truth: ../shared/data/coco-val80 (80 val2017 images, 815 annotations). Detections are
synthesized, seeded: each ground-truth box jittered (a true positive of varying IoU) plus random
boxes, ``--per-image`` per image with random scores and categories, as a detector's top-100 output.
Timed: load detections + evaluate + accumulate + summarize (stdout of summarize suppressed).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import time

import numpy as np

from benchmarks.common import SHARED_DATA, environment, table


def synth_detections(gt: dict, per_image: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    cats = [c["id"] for c in gt["categories"]]
    by_image: dict[int, list] = {im["id"]: [] for im in gt["images"]}
    for a in gt["annotations"]:
        by_image[a["image_id"]].append(a)
    sizes = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    dets = []
    for image_id, anns in by_image.items():
        w, h = sizes[image_id]
        for a in anns[:per_image]:
            x, y, bw, bh = a["bbox"]
            jit = rng.normal(0, 0.1, 4) * [bw, bh, bw, bh]
            dets.append({"image_id": image_id, "category_id": a["category_id"],
                         "bbox": [float(x + jit[0]), float(y + jit[1]), float(max(1, bw + jit[2])),
                                  float(max(1, bh + jit[3]))], "score": float(rng.uniform(0.3, 1))})
        for _ in range(per_image - min(len(anns), per_image)):
            bw, bh = rng.uniform(5, w / 2), rng.uniform(5, h / 2)
            dets.append({"image_id": image_id, "category_id": int(rng.choice(cats)),
                         "bbox": [float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh)),
                                  float(bw), float(bh)], "score": float(rng.uniform(0, 0.5))})
    return dets


def evaluate(lib: str, gt_file: str, dets: list[dict]) -> tuple[float, list[float]]:
    if lib == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval as Eval
    else:
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as Eval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_file)
        t0 = time.perf_counter()
        dt = gt.loadRes(dets)
        ev = Eval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        elapsed = time.perf_counter() - t0
    return elapsed, [float(s) for s in ev.stats[:12]]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-image", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(environment())
    gt_file = str(SHARED_DATA / "coco-val80" / "annotations" / "instances_val2017.json")
    gt = json.loads(open(gt_file).read())
    dets = synth_detections(gt, args.per_image)
    times = {"faster-coco-eval": [], "pycocotools": []}
    stats = {}
    for _ in range(args.repeats):
        for lib in times:
            t, s = evaluate(lib, gt_file, dets)
            times[lib].append(t)
            stats[lib] = s
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    diff = max(abs(a - b) for a, b in zip(stats["faster-coco-eval"], stats["pycocotools"]))
    print(table(
        [[f"coco-val80, {len(gt['images'])} images, {len(dets)} detections",
          f"{med['faster-coco-eval']:.3f}", f"{med['pycocotools']:.3f}",
          f"{med['pycocotools'] / med['faster-coco-eval']:.1f}x",
          f"{stats['faster-coco-eval'][0]:.4f} / {stats['pycocotools'][0]:.4f}", f"{diff:.1e}"]],
        ["case", "faster-coco-eval s", "pycocotools s", "speed-up", "AP (fast / pycocotools)",
         "max |diff| of the 12 stats"],
    ))


if __name__ == "__main__":
    main()
