"""Inference latency: yolos vs transformers' YolosForObjectDetection (identical random weights of
the real shapes, identical inputs, same process, same thread count, alternating, medians), plus
onnxruntime on the exported graph.

    python -m benchmarks.inference                       # the four default cases
    python -m benchmarks.inference --cases ti:1 --repeats 7 --compile

The peer is transformers at its faster attention mode per case (eager and sdpa are both timed).
"""
from __future__ import annotations

import argparse
import tempfile

import torch

from benchmarks.common import environment, model_pair, table, time_alternating

CASES = {
    "ti:1": ("yolos-ti", 512, 672, 1),
    "ti:8": ("yolos-ti", 512, 672, 8),
    "s:1": ("yolos-s", 800, 1056, 1),
    "s:8": ("yolos-s", 800, 1056, 8),
}


def ort_session(model, size, threads):
    import onnxruntime as ort

    from yolos.export import export_model

    tmp = tempfile.mkdtemp()
    path = export_model(model, f"{tmp}/m.onnx", format="onnx", size=size)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_case(key, repeats, threads, with_onnx, with_compile):
    variant, h, w, batch = CASES[key]
    ours, theirs = model_pair(variant, "sdpa")
    x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = ours(x)
        eager = {}
        for mode in ("sdpa", "eager"):
            theirs.set_attn_implementation(mode)
            out = theirs(pixel_values=x)
            eager[mode] = max((out.logits - ref["logits"]).abs().max().item(),
                              (out.pred_boxes - ref["pred_boxes"]).abs().max().item())
        fns = {"ours": lambda: ours(x)}

        def hf(mode):
            def call():
                theirs.set_attn_implementation(mode)  # a config switch, no weight copy
                return theirs(pixel_values=x)
            return call

        fns["hf-sdpa"] = hf("sdpa")
        fns["hf-eager"] = hf("eager")
        compiled_diff = None
        if with_compile:
            compiled = torch.compile(ours, dynamic=False)
            compiled_diff = (compiled(x)["logits"] - ref["logits"]).abs().max().item()
            fns["ours-compiled"] = lambda: compiled(x)
        onnx_diff = None
        if with_onnx:
            session = ort_session(ours, (h, w), threads)
            xn = x.numpy()
            logits = session.run(None, {"pixel_values": xn})[0]
            onnx_diff = float(abs(torch.from_numpy(logits) - ref["logits"]).max())
            fns["onnxruntime"] = lambda: session.run(None, {"pixel_values": xn})
        times = time_alternating(fns, repeats=repeats, warmup=1)
    peer_mode = min(("hf-sdpa", "hf-eager"), key=times.get)
    return {
        "case": f"{variant} {h}x{w} b{batch}", "times": times, "peer": peer_mode,
        "diff": max(eager.values()), "onnx_diff": onnx_diff, "compiled_diff": compiled_diff,
        "batch": batch,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--no-onnx", action="store_true")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(ours)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(environment())
    rows = []
    for key in args.cases:
        r = run_case(key, args.repeats, args.threads, not args.no_onnx, args.compile)
        t, b = r["times"], r["batch"]
        peer = t[r["peer"]]
        row = [r["case"], f"{t['ours'] / b:.3f}", f"{t['hf-eager'] / b:.3f}", f"{t['hf-sdpa'] / b:.3f}",
               f"{peer / t['ours']:.2f}x vs {r['peer'][3:]}",
               f"{t['onnxruntime'] / b:.3f}" if "onnxruntime" in t else "-",
               f"{r['diff']:.1e}"]
        if args.compile:
            row.insert(2, f"{t['ours-compiled'] / b:.3f}")
        rows.append(row)
        print(f"  {r['case']}: {({k: round(v, 4) for k, v in t.items()})} onnx diff {r['onnx_diff']} "
              f"compiled diff {r['compiled_diff']}", flush=True)
    header = ["case", "yolos s/img", "transformers eager s/img", "transformers sdpa s/img",
              "speed-up vs faster peer", "onnxruntime s/img", "max |diff|"]
    if args.compile:
        header.insert(2, "yolos compiled s/img")
    print(table(rows, header))


if __name__ == "__main__":
    main()
