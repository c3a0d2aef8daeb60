"""What the input size does to a fine-tune on real photos: the checkpoint's own size against the
size ``--recipe finetune`` chooses from the data (``yolos.train.sizes``).

The bundled model (128-pixel synthetic shapes) is fine-tuned on real COCO photos: the shared
coco128 images as the train split, coco-val80 as the val split, both restricted to a few classes
common to both (person, car, chair, cup by default; the rest of their boxes are dropped). Two
``yolos train --init bundled --recipe finetune`` runs with the same epochs, seed and batch, one
with ``--no-sizes-from-data`` (128/128, the checkpoint's) and one with the recipe's choice.
Printed: the chosen size, each run's training time, and the held-out AP / AP50 per evaluation.

With ``--synthetic``, the data is instead the bundled model's own classes on large images
(1024x1024, shapes of 40-80 px, the varied look; 100 training and 50 held-out images of other
seeds): at the checkpoint's 128 pixels the shapes shrink to 5-10 px, under one patch; at the
size the recipe chooses they keep two patches or more. A task the model can learn, where only the
input size differs.

    python -m benchmarks.finetune_sizes --epochs 100 --eval-every 10 --classes person --json docs/finetune_sizes.json
    python -m benchmarks.finetune_sizes --synthetic --epochs 40 --eval-every 10 --batch 4 \
        --json docs/finetune_sizes_synthetic.json
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import environment
from benchmarks.shared_inputs import shared_data_dir
from yolos.data.synthetic import write_synthetic_dataset
from yolos.train.config import TrainConfig
from yolos.train.loop import fit

CLASSES = ("person", "car", "chair", "cup")


def restricted(source: Path, out: Path, classes) -> Path:
    """A copy of a COCO json with only ``classes`` (and their boxes)."""
    data = json.loads(source.read_text())
    keep = {c["id"] for c in data["categories"] if c["name"] in classes}
    data["categories"] = [c for c in data["categories"] if c["id"] in keep]
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] in keep]
    out.write_text(json.dumps(data))
    return out


def curve(out: Path) -> list[dict]:
    rows = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines() if ln.strip()]
    seconds, points = 0.0, []
    for r in (r for r in rows if r.get("type") == "epoch"):
        seconds += r["train"]["time_s"]
        if r.get("val"):
            points.append({"epoch": r["epoch"] + 1, "seconds": round(seconds, 1), "AP": round(r["val"]["AP"], 4),
                           "AP50": round(r["val"]["AP50"], 4)})
    return points


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--classes", nargs="+", default=list(CLASSES))
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--json", default=None, help="write the curves here")
    ap.add_argument("--synthetic", action="store_true", help="small shapes on large images instead of COCO photos")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    train, val = shared_data_dir() / "coco128", shared_data_dir() / "coco-val80"
    print(environment(), flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.synthetic:
            look = dict(min_size=40, max_size=80, look="varied")
            write_synthetic_dataset(root / "train", 100, 1024, 2, 6, seed=31, **look)
            write_synthetic_dataset(root / "val", 50, 1024, 2, 6, seed=32, **look)
            (root / "data.yaml").write_text("train: {images: train/images, annotations: train/annotations.json}\n"
                                            "val: {images: val/images, annotations: val/annotations.json}\n")
        else:
            train_json = restricted(train / "annotations" / "instances_train2017.json", root / "train.json",
                                    args.classes)
            val_json = restricted(val / "annotations" / "instances_val2017.json", root / "val.json", args.classes)
            (root / "data.yaml").write_text(f"train: {{images: {train / 'train2017'}, annotations: {train_json}}}\n"
                                            f"val: {{images: {val / 'val2017'}, annotations: {val_json}}}\n")
        for name, from_data in (("checkpoint size", False), ("sizes from the data", True)):
            said = []
            cfg = TrainConfig(data=str(root / "data.yaml"), out=str(root / name.replace(" ", "-")), init="bundled",
                              recipe="finetune", sizes_from_data=from_data, epochs=args.epochs,
                              batch_size=args.batch, workers=0, eval_every=args.eval_every, progress=False, seed=1)
            t0 = time.perf_counter()
            summary = fit(cfg, log=said.append)
            chosen = next((s for s in said if s.startswith("input size from the data")), "input size 128/128")
            config = json.loads((Path(summary["out"]) / "log.jsonl").read_text().splitlines()[0])["config"]
            results[name] = {"size": [config["eval_size"], config["eval_max_size"]], "note": chosen,
                             "wall_s": round(time.perf_counter() - t0), "curve": curve(Path(summary["out"]))}
            print(f"{name}: {chosen}; {results[name]['wall_s']} s wall; {results[name]['curve']}", flush=True)
    what = "40-80 px shapes on 1024 px images" if args.synthetic else \
        f"classes {', '.join(args.classes)} of coco128, held-out coco-val80"
    print(f"\n{what}; {args.epochs} epochs\n")
    print("| input size | training time | final AP | final AP50 |\n|---|---|---|---|")
    for name, r in results.items():
        last = r["curve"][-1]
        print(f"| {name}: {r['size'][0]}/{r['size'][1]} | {last['seconds']:.0f} s | {last['AP']:.3f} | "
              f"{last['AP50']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"data": "synthetic" if args.synthetic else args.classes,
                                               "epochs": args.epochs,
                                               "environment": environment(), "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
