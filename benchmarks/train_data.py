"""What the training data costs per image before the model sees it, on the fine-tune or the study task.

The fine-tune benchmark's task by default; ``--task study``: the convergence study's images.

``benchmarks/finetune.py`` renders its training images fresh every epoch, in the training
process (``--workers 0``: on 2 cores a worker only takes a core from the step). This times the
stages one image goes through there, each in milliseconds per image (the median of
``--repeats`` passes over ``--images`` images, the stages alternating within each pass):

* ``render``: ``render_shapes`` (background, shapes, outlines, sensor noise);
* ``item``: ``SyntheticShapes[i]`` (render, raw target, to a normalized tensor);
* ``seeded item``: the same through ``SeededDataset``, which seeds the random streams per item as
  ``yolos train`` does (so a resumed run sees the same data);
* ``batch``: a DataLoader batch of 32 seeded items with the training collate, per image;
* ``file batch``: the same from the same number of images written once as JPEG files and read as
  a user's dataset is (``--train-images`` of the fine-tune benchmark): decode, target, tensor.

    python -m benchmarks.train_data
    python -m benchmarks.train_data --images 256 --repeats 7
    python -m benchmarks.train_data --task study   # the convergence study's images (no files)
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import environment
from benchmarks.convergence_study import SPEC as STUDY_SPEC
from benchmarks.finetune import TASK, write_task
from yolos.data import transforms as T
from yolos.data.collate import collate_fn
from yolos.data.dataset_config import resolve_dataset
from yolos.data.shapes import ShapesSpec, render_shapes
from yolos.data.synthetic import SyntheticShapes
from yolos.train.data_order import SeededDataset

BATCH = 32


def stages(images: int, folder: Path, task: str = "finetune") -> dict:
    spec = ShapesSpec(**TASK) if task == "finetune" else STUDY_SPEC
    dataset = SyntheticShapes(spec, images, seed=11)
    seeded = SeededDataset(dataset, seed=1)
    loader = torch.utils.data.DataLoader(seeded, batch_size=BATCH, collate_fn=collate_fn, num_workers=0)
    runs = {
        "render": lambda: [render_shapes(np.random.default_rng([11, 0, i]), spec) for i in range(images)],
        "item": lambda: [dataset[i] for i in range(images)],
        "seeded item": lambda: [seeded[i] for i in range(images)],
        "batch": lambda: list(loader),
    }
    if task == "finetune":  # the study only renders
        files = resolve_dataset(write_task(folder, 1, BATCH, 1, train_images=images)).dataset(
            "train", transforms=T.make_transforms("val", eval_size=(TASK["image_size"], TASK["image_size"])))
        file_loader = torch.utils.data.DataLoader(SeededDataset(files, seed=1), batch_size=BATCH,
                                                  collate_fn=collate_fn, num_workers=0)
        runs["file batch"] = lambda: list(file_loader)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=128, help="images per pass (a multiple of 32)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--task", choices=("finetune", "study"), default="finetune",
                    help="the fine-tune benchmark's task, or the convergence study's (classic look, rendered)")
    args = ap.parse_args()
    if args.images < BATCH or args.images % BATCH:
        ap.error(f"--images must be a positive multiple of {BATCH}, got {args.images}")
    torch.set_num_threads(args.threads)
    print(environment())
    with tempfile.TemporaryDirectory() as tmp:
        measure(stages(args.images, Path(tmp), args.task), args)


def measure(runs: dict, args) -> None:
    times = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm-up
    for _ in range(args.repeats):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - t0) / args.images * 1e3)
    print(f"task: {TASK if args.task == 'finetune' else STUDY_SPEC}; {args.images} images, median of {args.repeats}")
    print("| stage | ms per image | ms per batch of 32 |\n|---|---|---|")
    for name, values in times.items():
        ms = statistics.median(values)
        print(f"| {name} | {ms:.2f} | {ms * BATCH:.0f} |")


if __name__ == "__main__":
    main()
