"""Peak memory of one training step (forward + loss + backward), yolos vs transformers, with and
without gradient checkpointing. No GPU here, so the figure is the process's peak RSS
(``resource.getrusage``), each case in a fresh subprocess, minus the RSS right before the step
(model, gradients, batch and libraries
already there after a warm-up step on a tiny input) -- i.e. the step's own activation memory.

    python -m benchmarks.memory [--variant yolos-s] [--size 800 1333] [--batch 1]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from benchmarks.common import environment, table

CHILD = r"""
import json, resource, sys, torch
sys.path.insert(0, {root!r})
from benchmarks.common import enable_hf_checkpointing, random_weights_
from benchmarks.train_step import make_targets
from yolos import create_model
impl, ckpt, variant, h, w, batch = {args!r}
torch.manual_seed(0)
ours = random_weights_(create_model(variant))  # only one model in this process: weights don't matter
x = torch.randn(batch, 3, h, w)
targets = make_targets(batch, ours.config.num_classes)
if impl == "yolos":
    from yolos.train.criterion import SetCriterion
    model, crit = ours.train(), SetCriterion(ours.config.num_classes)
    model.grad_checkpointing = ckpt
    step = lambda x: crit(model(x), targets)["loss"].backward()
else:
    from transformers import YolosConfig, YolosForObjectDetection
    from yolos.checkpoint.hf import config_to_hf
    cfg = YolosConfig(**config_to_hf(ours.config))
    cfg._attn_implementation = "sdpa"
    del ours
    model = YolosForObjectDetection(cfg).train()
    if ckpt:
        enable_hf_checkpointing(model)
    labels = [{{"class_labels": t["labels"], "boxes": t["boxes"]}} for t in targets]
    step = lambda x: model(pixel_values=x, labels=labels).loss.backward()
# warm-up on a tiny input: lazy imports (scipy), allocator and oneDNN set-up are not the step's
step(torch.randn(batch, 3, 64, 64))
model.zero_grad(set_to_none=False)  # gradients exist before the measured step, as in training
import gc; gc.collect()
before = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize() / 2**20
step(x)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
print(json.dumps({{"before_mib": before, "peak_mib": peak}}))
"""


def measure(impl, ckpt, variant, h, w, batch):
    root = str(Path(__file__).resolve().parents[1])  # the child imports benchmarks.* from the repository
    code = CHILD.format(root=root, args=(impl, ckpt, variant, h, w, batch))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"{impl} ckpt={ckpt} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="yolos-s")
    ap.add_argument("--size", type=int, nargs=2, default=(800, 1333))
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args()
    print(environment())
    h, w = args.size
    rows = []
    res = {}
    for ckpt in (False, True):
        for impl in ("yolos", "transformers"):
            r = measure(impl, ckpt, args.variant, h, w, args.batch)
            res[impl, ckpt] = r["peak_mib"] - r["before_mib"]
            print(f"  {impl} checkpointing={ckpt}: {r}", flush=True)
        ours, theirs = res["yolos", ckpt], res["transformers", ckpt]
        rows.append([f"{args.variant} {h}x{w} b{args.batch}, checkpointing {'on' if ckpt else 'off'}",
                     f"{ours:.0f}", f"{theirs:.0f}", f"{theirs / ours:.2f}x less"])
    print(table(rows, ["case", "yolos step MiB", "transformers step MiB", "yolos uses"]))


if __name__ == "__main__":
    main()
