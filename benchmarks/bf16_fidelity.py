"""How close the bf16 inference mode stays to fp32 on the bundled model, on held-out images.

Renders the held-out synthetic set of the bundled model's README section (seed 2000, never used
for training or for choosing the checkpoint; 500 images of 128 px with up to 8 shapes of 12-64
px), then compares ``model.predict(files)`` with ``model.predict(files, dtype="bfloat16")`` and
the COCO AP of ``evaluate`` in both dtypes. An image counts as identical when both modes keep
the same labels at threshold 0.5, in the same order, with every box within ``--box-tolerance``
pixels. Also printed: the largest logit and box difference over those images' raw outputs.

    python -m benchmarks.bf16_fidelity                   # 500 images, seed 2000
    python -m benchmarks.bf16_fidelity --seeds 2000 3000 4000 5000 --num-images 500
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from benchmarks.common import environment
from yolos import from_pretrained
from yolos.data.coco import CocoDetection
from yolos.data.synthetic import write_synthetic_dataset
from yolos.data.transforms import make_transforms
from yolos.evaluation.evaluate import evaluate
from yolos.inference.defaults import DEFAULT_MODEL
from yolos.inference.precision import precision_for
from yolos.inference.preprocess import preprocess


def same_detections(a, b, box_tolerance: float) -> bool:
    """Same labels in the same order and every box within ``box_tolerance`` pixels."""
    if a.label_names != b.label_names:
        return False
    return len(a) == 0 or float((a.boxes - b.boxes).abs().max()) <= box_tolerance


def compare(model, num_images: int, seed: int, box_tolerance: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_synthetic_dataset(root, num_images, 128, 1, 8, seed=seed, min_size=12, max_size=64)
        files = sorted((root / "images").iterdir())
        fp32 = model.predict(files)
        bf16 = model.predict(files, dtype="bfloat16")
        same = sum(same_detections(a, b, box_tolerance) for a, b in zip(fp32, bf16))
        pixels = preprocess([str(f) for f in files[:64]], short_side=128, long_side=128)["pixel_values"]
        with torch.inference_mode():
            ref = model(pixels)
            with precision_for(model, "bfloat16")():
                low = model(pixels)
        d_logits = (low["logits"] - ref["logits"]).abs().max().item()
        d_boxes = (low["pred_boxes"] - ref["pred_boxes"]).abs().max().item()
        data = CocoDetection(root / "images", root / "annotations.json",
                             transforms=make_transforms("val", eval_size=(128, 128)))
        stats = {dtype: evaluate(model, data, batch_size=16, progress=False, dtype=dtype)[0]
                 for dtype in ("float32", "bfloat16")}
    print(f"bundled model, {len(files)} held-out images (seed {seed}), threshold 0.5:")
    print(f"  identical detections: {same} / {len(files)} ({100 * same / len(files):.1f}%)")
    print(f"  detections: fp32 {sum(len(d) for d in fp32)}, bf16 {sum(len(d) for d in bf16)}")
    print(f"  largest difference on 64 images: logits {d_logits:.1e}, normalized boxes {d_boxes:.1e}")
    for name in ("AP", "AP50", "AP75"):
        a, b = stats["float32"][name], stats["bfloat16"][name]
        print(f"  {name:5s} fp32 {a:.4f}  bf16 {b:.4f}  difference {b - a:+.4f}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-images", type=int, default=500)
    ap.add_argument("--seeds", type=int, nargs="+", default=[2000])
    ap.add_argument("--box-tolerance", type=float, default=2.0, help="pixels")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(environment(), flush=True)
    model = from_pretrained(DEFAULT_MODEL)
    for seed in args.seeds:
        compare(model, args.num_images, seed, args.box_tolerance)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
