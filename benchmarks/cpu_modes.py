"""Batch-1 CPU latency of every compute mode: yolos against transformers' fastest, with the share
of the CPU's peak each reaches.

Both models hold the same random weights of the real shapes (benchmarks/common.model_pair).
Modes timed, alternating, medians:

* yolos fp32; yolos bf16 (``dtype="bfloat16"``: ``precision_for``, what ``predict``/``--dtype bf16``
  run, its weights cast once before the timing; the cast itself, paid once per ``predict`` call,
  is printed); yolos cast to bf16 as a whole (``model.to(torch.bfloat16)``, a lever measured, not
  a documented mode: LayerNorm, the residual stream and the heads then run in bf16 too);
* transformers eager and SDPA attention, each in fp32 and under ``torch.autocast("cpu", bfloat16)``.

Also printed: the largest logit and box difference of each bf16 mode from fp32 (random weights),
and each mode's share of the nominal peak (``common.peak_flops``; FLOPs from
``yolos.analysis.flops``, two per multiply-add).

The exported runtimes that are installed join as yolos modes, as ``--runtime`` runs them:
onnxruntime fp32, OpenVINO fp32 and OpenVINO bf16 (the any-size export, cached).

With ``--breakdown``, the time of yolos bf16 and transformers SDPA under bf16 autocast is also
split by operator kind (torch.profiler over 4 passes): attention, matrix products, GELU,
LayerNorm, casts and copies, the patch convolution, the rest.

    python -m benchmarks.cpu_modes                      # ti 512x672 and s 800x1056
    python -m benchmarks.cpu_modes --cases ti --repeats 7 --breakdown
"""
from __future__ import annotations

import argparse
import copy
import time

import torch

from benchmarks.common import environment, model_pair, peak_flops, table, time_alternating
from yolos.analysis.flops import detector_flops
from yolos.export.engines import compile_for, missing
from yolos.inference.precision import precision_for

CASES = {"ti": ("yolos-ti", 512, 672), "s": ("yolos-s", 800, 1056)}


def runtime_call(model, x: torch.Tensor, runtime: str, dtype=None):
    """A callable running ``model`` as ``--runtime runtime --dtype dtype`` does (the cached any-size
    export through :func:`yolos.export.engines.compile_for`)."""
    network = compile_for(model, runtime, dtype)
    return lambda: network(x)


def run_case(key: str, repeats: int, threads: int, split: bool = False) -> list[list[str]]:
    """The table rows of one case; with ``split``, the bf16 modes' time by operator kind is
    printed too (:func:`breakdown`)."""
    variant, h, w = CASES[key]
    ours, theirs = model_pair(variant, "sdpa")
    ours_bf16_weights = copy.deepcopy(ours).to(torch.bfloat16)
    x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(1))
    t0 = time.perf_counter()
    bf16 = precision_for(ours, "bfloat16")
    cast_ms = 1e3 * (time.perf_counter() - t0)

    def hf(mode: str, low: bool):
        def call():
            theirs.set_attn_implementation(mode)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
                out = theirs(pixel_values=x)
            return {"logits": out.logits, "pred_boxes": out.pred_boxes}
        return call

    def ours_in(ctx):
        def call():
            with ctx():
                return ours(x)
        return call

    fns = {
        "yolos fp32": ours_in(precision_for(ours, None)),
        "yolos bf16": ours_in(bf16),
        "yolos int8": ours_in(precision_for(ours, "int8")),
        "yolos whole model bf16": lambda: ours_bf16_weights(x.to(torch.bfloat16)),
        "transformers eager fp32": hf("eager", False),
        "transformers sdpa fp32": hf("sdpa", False),
        "transformers eager bf16": hf("eager", True),
        "transformers sdpa bf16": hf("sdpa", True),
    }
    for runtime, dtype in (("onnxruntime", None), ("openvino", None), ("openvino", "bfloat16")):
        if missing(runtime) is None:  # the exported runtimes that are installed
            fns[f"yolos --runtime {runtime}{' bf16' if dtype else ''}"] = runtime_call(ours, x, runtime, dtype)
    with torch.inference_mode():
        ref = fns["yolos fp32"]()
        diffs = {}
        for name, fn in fns.items():
            out = fn()
            diffs[name] = max((out["logits"].float() - ref["logits"]).abs().max().item(),
                              (out["pred_boxes"].float() - ref["pred_boxes"]).abs().max().item())
        times = time_alternating(fns, repeats=repeats, warmup=1)
    flops = 2 * detector_flops(ours.config, (h, w)).total
    best_ours = min((k for k in times if k.startswith("yolos") and k != "yolos whole model bf16"), key=times.get)
    best_theirs = min((k for k in times if k.startswith("transformers")), key=times.get)
    best_theirs_fp32 = min((k for k in times if k.startswith("transformers") and k.endswith("fp32")), key=times.get)
    rows = []
    for name, t in times.items():
        peak = peak_flops("bfloat16" if "bf16" in name else "int8" if "int8" in name else "float32", threads)
        note = []
        if name == best_ours:
            note.append(f"{times[best_theirs] / t:.2f}x transformers' fastest ({best_theirs})")
        if name == "yolos bf16":
            note.append(f"weights cast once in {cast_ms:.0f} ms")
        if name == "yolos fp32":
            note.append(f"{times[best_theirs_fp32] / t:.2f}x transformers' fastest fp32")
        rows.append([f"{variant} {h}x{w}", name, f"{t:.3f}", f"{flops / t / 1e9:.0f}", f"{100 * flops / t / peak:.1f}%",
                     f"{diffs[name]:.1e}", "; ".join(note)])
    if split:
        breakdown(f"{variant} {h}x{w}", {k: fns[k] for k in ("yolos bf16", "transformers sdpa bf16")})
    return rows


def _kind(op: str) -> str:
    if "attention" in op:
        return "attention"
    if any(k in op for k in ("linear_pointwise", "addmm", "mm")):
        return "matrix products"
    for kind in ("gelu", "layer_norm", "conv"):
        if kind in op:
            return kind
    return "casts/copies" if "copy" in op else "rest"


def breakdown(label: str, fns: dict) -> None:
    """Print each callable's time per pass split by operator kind (torch.profiler, 4 passes)."""
    from torch.profiler import ProfilerActivity, profile

    for name, fn in fns.items():
        with torch.inference_mode():
            fn()
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(4):
                    fn()
        kinds: dict[str, float] = {}
        for event in prof.key_averages():
            kinds[_kind(event.key)] = kinds.get(_kind(event.key), 0.0) + event.self_cpu_time_total / 4e3
        total = sum(kinds.values())
        ranked = sorted(kinds.items(), key=lambda kv: -kv[1])
        parts = ", ".join(f"{k} {v:.1f} ms ({100 * v / total:.0f}%)" for k, v in ranked)
        print(f"  {label} {name}: {total:.1f} ms per pass (profiled): {parts}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--breakdown", action="store_true", help="also split the bf16 modes' time by operator kind")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(environment(), flush=True)
    rows = []
    for key in args.cases:
        case_rows = run_case(key, args.repeats, args.threads, args.breakdown)
        rows += case_rows
        print("\n".join("  " + " | ".join(r) for r in case_rows), flush=True)
    print(table(rows, ["case", "mode", "s/img", "GFLOP/s", "of peak", "max |diff| vs yolos fp32", "speed-up"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
