"""Any-size ONNX against a fixed-size one: what the in-graph position-embedding resampling costs.

Exports the same random-weight model twice (``yolos export`` without and with ``--size``) and runs
both in onnxruntime on the same input, alternating, batch 1; prints the medians, their ratio and
the largest output difference between the two files and from PyTorch.

    python -m benchmarks.export_sizes                       # yolos-ti at 512x672
    python -m benchmarks.export_sizes --variant yolos-s --size 800 1056 --repeats 5
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import environment, random_weights_, time_alternating
from yolos import create_model
from yolos.export import export_model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="yolos-ti")
    ap.add_argument("--size", type=int, nargs=2, default=[512, 672])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args(argv)
    import onnxruntime as ort

    torch.set_num_threads(args.threads)
    print(environment(), flush=True)
    model = random_weights_(create_model(args.variant)).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, *args.size), dtype=np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    with tempfile.TemporaryDirectory() as tmp:
        files = {"any size": export_model(model, Path(tmp) / "any.onnx"),
                 "fixed size": export_model(model, Path(tmp) / "fixed.onnx", size=tuple(args.size))}
        sessions = {k: ort.InferenceSession(str(v), options, providers=["CPUExecutionProvider"])
                    for k, v in files.items()}
        outs = {k: s.run(None, {"pixel_values": x}) for k, s in sessions.items()}
        times = time_alternating({k: (lambda s=s: s.run(None, {"pixel_values": x})) for k, s in sessions.items()},
                                 repeats=args.repeats, warmup=1)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x))["logits"].numpy()
    print(f"{args.variant} {args.size[0]}x{args.size[1]}, onnxruntime, batch 1, median of {args.repeats}:")
    for name, t in times.items():
        print(f"  {name:10s} {t * 1e3:8.1f} ms   max |logit diff| from PyTorch {np.abs(outs[name][0] - ref).max():.1e}")
    print(f"  fixed size is {times['any size'] / times['fixed size']:.3f}x the speed of any size; the two files "
          f"differ by {np.abs(outs['any size'][0] - outs['fixed size'][0]).max():.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
