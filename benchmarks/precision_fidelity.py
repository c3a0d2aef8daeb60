"""How close each reduced-precision mode and runtime stays to PyTorch fp32, on held-out images.

Every mode of ``yolos.export.runtimes`` (PyTorch bf16 and int8; onnxruntime fp32, fp16 and int8 on
the any-size export; OpenVINO fp32, bf16 and int8 calibrated by NNCF on 100 images of another
seed, when installed) runs a trained model on held-out synthetic sets it never saw, alongside
PyTorch fp32. Per mode: COCO AP, AP50 and AP75 and their change from fp32; the share of images
whose detections at threshold 0.5 are fp32's (same labels in the same order, every box within
``--box-tolerance`` pixels); the largest raw logit and box difference. With ``--random`` it also
gives the raw error of random-weight yolos-ti and yolos-s at their evaluation-size input.

    python -m benchmarks.precision_fidelity                                 # the bundled model, seed 2000
    python -m benchmarks.precision_fidelity --seeds 2000 3000 --model runs/x/best.safetensors \
        --shapes star cross ring --outline 0.5                              # a model fine-tuned on other shapes
    python -m benchmarks.precision_fidelity --random yolos-ti yolos-s --seeds
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import environment, random_weights_
from yolos import create_model, from_pretrained
from yolos.data.shapes import SHAPES
from yolos.data.synthetic import write_synthetic_dataset
from yolos.defaults import DEFAULT_MODEL
from yolos.evaluation.coco_eval import coco_evaluate
from yolos.export.runtimes import available, make_runtime, same_detections
from yolos.images import load_image
from yolos.inference.detections import coco_records
from yolos.inference.postprocess import postprocess
from yolos.inference.preprocess import preprocess

MODES = ["torch-fp32", "torch-bf16", "torch-int8", "onnxruntime-fp32", "onnxruntime-fp16", "onnxruntime-int8",
         "openvino-fp32", "openvino-bf16", "openvino-int8"]


def held_out(model, runtimes: dict, root: Path, tolerance: float) -> dict:
    """Per mode: AP, AP50, AP75, identical images, largest raw differences, over ``root``'s set."""
    files = sorted((root / "images").iterdir())
    short = long = model.config.image_size[0]
    ids = sorted(c["id"] for c in json.loads((root / "annotations.json").read_text())["categories"])
    to_category = ids.__getitem__  # labels 0..K-1 are the set's sorted category ids, as in training
    results = {name: [] for name in runtimes}
    same = dict.fromkeys(runtimes, 0)
    diff = {name: [0.0, 0.0] for name in runtimes}
    for image_id, path in enumerate(files, start=1):  # write_synthetic_dataset numbers images from 1
        batch = preprocess(load_image(path), short_side=short, long_side=long)
        x = batch["pixel_values"].numpy()
        found = {}
        for name, run in runtimes.items():
            logits, boxes = (torch.from_numpy(np.asarray(v, dtype=np.float32)) for v in run(x))
            out = {"logits": logits, "pred_boxes": boxes}
            found[name] = (postprocess(out, batch["original_sizes"], threshold=0.5)[0], logits, boxes)
            every = postprocess(out, batch["original_sizes"], threshold=-1.0)[0]
            results[name] += coco_records(image_id, every["boxes"], every["scores"], every["labels"], to_category)
        ref, ref_logits, ref_boxes = found["torch-fp32"]
        for name, (det, logits, boxes) in found.items():
            same[name] += same_detections(det, ref, tolerance)
            diff[name][0] = max(diff[name][0], float((logits - ref_logits).abs().max()))
            diff[name][1] = max(diff[name][1], float((boxes - ref_boxes).abs().max()))
    table = {}
    for name in runtimes:
        stats = coco_evaluate(root / "annotations.json", results[name])
        table[name] = {"AP": stats["AP"], "AP50": stats["AP50"], "AP75": stats["AP75"], "identical": same[name],
                       "images": len(files), "logits": diff[name][0], "boxes": diff[name][1]}
    return table


def print_held_out(label: str, table: dict) -> None:
    ref = table["torch-fp32"]
    print(f"\n{label}")
    print("| mode | AP | ΔAP | ΔAP50 | ΔAP75 | identical detections | max |logit diff| | max |box diff| |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in table.items():
        print(f"| {name} | {r['AP']:.4f} | {r['AP'] - ref['AP']:+.4f} | {r['AP50'] - ref['AP50']:+.4f} | "
              f"{r['AP75'] - ref['AP75']:+.4f} | {r['identical']}/{r['images']} "
              f"({100 * r['identical'] / r['images']:.1f}%) | {r['logits']:.1e} | {r['boxes']:.1e} |", flush=True)


def random_error(variant: str, runtimes_for, size) -> dict:
    """Largest logit and box difference from fp32 of random-weight ``variant`` on one random input."""
    model = random_weights_(create_model(variant)).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, *size), dtype=np.float32)
    runtimes = runtimes_for(model)
    ref = runtimes["torch-fp32"](x)
    return {name: (float(np.abs(run(x)[0] - ref[0]).max()), float(np.abs(run(x)[1] - ref[1]).max()))
            for name, run in runtimes.items() if name != "torch-fp32"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--seeds", type=int, nargs="*", default=[2000])
    ap.add_argument("--num-images", type=int, default=500)
    ap.add_argument("--look", default="varied", choices=["classic", "varied"])
    ap.add_argument("--shapes", nargs="+", default=None, choices=SHAPES, help="default: the look's shapes")
    ap.add_argument("--outline", type=float, default=0.0)
    ap.add_argument("--modes", nargs="+", default=MODES, choices=MODES)
    ap.add_argument("--random", nargs="*", default=[], help="random-weight variants for the raw-error table")
    ap.add_argument("--box-tolerance", type=float, default=2.0, help="pixels")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(environment(), flush=True)
    modes = [m for m in args.modes if available(m) is None]
    with tempfile.TemporaryDirectory() as tmp:
        # OpenVINO's int8 is calibrated on 100 images of another seed than any held-out set
        write_synthetic_dataset(Path(tmp) / "calibration", 100, 128, 1, 8, seed=77, min_size=12, max_size=64,
                                look=args.look, outline=args.outline,
                                **({"shapes": tuple(args.shapes)} if args.shapes else {}))
        calibration = sorted((Path(tmp) / "calibration" / "images").iterdir())

        def runtimes_for(model):
            return {m: make_runtime(m, model, args.threads, calibration)
                    for m in dict.fromkeys(["torch-fp32"] + modes)}
        if args.seeds:
            model = from_pretrained(args.model)
            runtimes = runtimes_for(model)
            for seed in args.seeds:
                root = Path(tmp) / f"set{seed}"
                extra = {"shapes": tuple(args.shapes)} if args.shapes else {}
                write_synthetic_dataset(root, args.num_images, 128, 1, 8, seed=seed, min_size=12, max_size=64,
                                        look=args.look, outline=args.outline, **extra)
                print_held_out(f"{args.model}: {args.num_images} held-out images (seed {seed}, look {args.look})",
                               held_out(model, runtimes, root, args.box_tolerance))
        sizes = {"yolos-ti": (512, 672), "yolos-s": (800, 1056)}
        for variant in args.random:
            errors = random_error(variant, runtimes_for, sizes.get(variant, (128, 128)))
            print(f"\nrandom-weight {variant} at {sizes.get(variant)}: max |logit diff|, max |box diff| from fp32")
            for name, (dl, db) in errors.items():
                print(f"| {name} | {dl:.1e} | {db:.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
