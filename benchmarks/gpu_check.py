"""Every GPU path in one run: the GPU tests, CUDA parity with transformers, inference speed
(ours in each mode against transformers' fastest), FLOP utilization, and a training step with
its peak memory. Each part reports pass/fail with its error and the run goes on past a failure;
one JSON and one Markdown report are written.

    python -m benchmarks.gpu_check --out gpu_report          # on a CUDA machine (about 8 minutes)
    python -m benchmarks.gpu_check --dry-run --out /tmp/r    # the same code on the CPU, tiny sizes

Parts: ``tests`` (pytest -m gpu), ``parity`` (fp32 and bf16 against transformers with identical
weights), ``speed`` (batch-1 latency and batch-32 throughput: ours fp32, bf16, SDPA backends,
torch.compile, CUDA graphs; transformers eager and SDPA in fp32 and bf16 autocast; MFU against
the GPU's bf16 peak), ``train`` (forward, loss, backward, AdamW for yolos-s at 800x1333 batch 8,
ours and transformers', with and without gradient checkpointing), ``accelerators`` (the scratch
recipe's training step alone and with 3 [DET] groups or 2 denoising sets: whether issue 29's
training-only tokens pay on a GPU, where the extra tokens cost little). Goals are printed beside the
figures they concern: batch 1 at least 2x transformers' fastest mode, at least 40% MFU at batch
32 in bf16, a training step at least 1.3x faster than transformers' with no more memory.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.common import enable_hf_checkpointing, model_pair, time_alternating
from benchmarks.train_step import make_targets
from yolos.analysis.flops import detector_flops

# name -> (variant, H, W) for inference; the dry run swaps in micro at tiny sizes
INFERENCE_CASES = {"yolos-ti": ("yolos-ti", 512, 672), "yolos-s": ("yolos-s", 800, 1056)}
TRAIN_CASE = ("yolos-s", 800, 1333, 8)
# dense bf16 tensor-core peak (FLOP/s) by device name; unknown GPUs report MFU as n/a
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "L40S": 362e12, "A10": 125e12}


class Settings:
    def __init__(self, dry_run: bool):
        self.dry_run = dry_run
        self.device = torch.device("cpu" if dry_run else "cuda")
        self.inference = {"micro": ("micro", 64, 96)} if dry_run else INFERENCE_CASES
        self.train = ("micro", 64, 96, 2) if dry_run else TRAIN_CASE
        self.big_batch = 2 if dry_run else 32
        self.repeats = 2 if dry_run else 10


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable, device, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ----------------------------------------------------------------------------- parts
def part_tests(s: Settings) -> dict:
    """pytest -m gpu (in the dry run: collected only, since the CPU skips them)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests", "-p", "no:cacheprovider"]
    if s.dry_run:
        cmd.append("--collect-only")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    tail = out.stdout.strip().splitlines()[-1:] or [out.stderr.strip()[-300:]]
    if out.returncode not in (0, 5):
        raise RuntimeError(f"pytest -m gpu exited {out.returncode}: {tail[0]}\n{out.stdout[-3000:]}")
    return {"summary": tail[0], "gpus": torch.cuda.device_count()}


def part_parity(s: Settings) -> dict:
    """Largest output differences from transformers with the same weights: fp32 (goal 1e-4)
    and under bf16 (ours: our bf16 mode; theirs: bf16 autocast), both against transformers fp32."""
    from yolos.inference.precision import precision_for

    result = {}
    for name, (variant, h, w) in s.inference.items():
        ours, theirs = model_pair(variant, "sdpa")
        ours, theirs = ours.to(s.device), theirs.to(s.device)
        x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(0)).to(s.device)
        with torch.inference_mode():
            ref = theirs(pixel_values=x)
            mine = ours(x)
            with precision_for(ours, "bfloat16")():
                half = ours(x)
        fp32 = max(float((mine["logits"] - ref.logits).abs().max()),
                   float((mine["pred_boxes"] - ref.pred_boxes).abs().max()))
        bf16 = float((half["logits"].float() - ref.logits).abs().max())
        result[name] = {"fp32_max_diff": fp32, "bf16_max_logit_diff": bf16, "fp32_ok": fp32 <= 1e-4}
        del ours, theirs
    if not all(r["fp32_ok"] for r in result.values()):
        raise AssertionError(f"fp32 parity above 1e-4: {result}")
    return result


def _inference_modes(ours, theirs, x, s: Settings) -> dict[str, Callable]:
    """name -> callable running one forward pass on ``x``."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from yolos.inference.precision import precision_for

    bf16 = precision_for(ours, "bfloat16")
    autocast = lambda: torch.autocast(s.device.type, dtype=torch.bfloat16)  # noqa: E731

    def ours_with(ctx_factory):
        def run():
            with torch.inference_mode(), ctx_factory():
                return ours(x)
        return run

    def theirs_with(mode, ctx_factory):
        def run():
            theirs.set_attn_implementation(mode)
            with torch.inference_mode(), ctx_factory():
                return theirs(pixel_values=x)
        return run

    modes = {
        "ours fp32": ours_with(contextlib.nullcontext),
        "ours bf16": ours_with(bf16),
        # the last block stays fp32 (precision_for), which flash cannot run: math is its fallback
        "ours bf16 flash": ours_with(lambda: _both(bf16(), sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.MATH]))),
        "ours bf16 mem-efficient": ours_with(lambda: _both(bf16(), sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]))),
        "hf eager fp32": theirs_with("eager", contextlib.nullcontext),
        "hf sdpa fp32": theirs_with("sdpa", contextlib.nullcontext),
        "hf eager bf16": theirs_with("eager", autocast),
        "hf sdpa bf16": theirs_with("sdpa", autocast),
    }
    if s.device.type == "cuda":
        compiled = torch.compile(ours, dynamic=False)

        def run_compiled():
            with torch.inference_mode(), bf16():
                return compiled(x)
        modes["ours bf16 compile"] = run_compiled
        modes["ours bf16 cuda graph"] = _cuda_graph(ours, x, bf16)
    return modes


@contextlib.contextmanager
def _both(a, b):
    with a, b:
        yield


def _cuda_graph(model, x, bf16) -> Callable:
    """One forward pass captured as a CUDA graph and replayed (static shapes, static input)."""
    static = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode(), bf16():
        for _ in range(3):
            model(static)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode(), bf16():
        out = model(static)

    def replay():
        graph.replay()
        return out
    return replay


def part_speed(s: Settings) -> dict:
    peak = next((v for k, v in BF16_PEAK.items() if s.device.type == "cuda" and k in torch.cuda.get_device_name()),
                None)
    result = {}
    for name, (variant, h, w) in s.inference.items():
        ours, theirs = model_pair(variant, "sdpa")
        ours, theirs = ours.to(s.device), theirs.to(s.device)
        flops = 2 * detector_flops(ours.config, (h, w)).total  # FLOPs per image (2 per multiply-add)
        rows = {}
        for batch in (1, s.big_batch):
            x = torch.randn(batch, 3, h, w, device=s.device)
            for mode, fn in _inference_modes(ours, theirs, x, s).items():
                try:
                    t = median_time(fn, s.device, s.repeats)
                except Exception as err:  # a backend this GPU lacks: reported, the rest goes on
                    rows.setdefault(mode, {})[f"b{batch}"] = f"failed: {type(err).__name__}: {str(err)[:120]}"
                    continue
                row = rows.setdefault(mode, {})
                row[f"b{batch}_ms" if batch == 1 else f"b{batch}_images_per_s"] = \
                    t * 1e3 if batch == 1 else batch / t
                if batch > 1 and peak:
                    row["mfu"] = batch * flops / t / peak
        ours_best = min(v["b1_ms"] for k, v in rows.items() if k.startswith("ours") and "b1_ms" in v)
        theirs_best = min(v["b1_ms"] for k, v in rows.items() if k.startswith("hf") and "b1_ms" in v)
        mfu = max((v.get("mfu", 0) for k, v in rows.items() if k.startswith("ours")), default=0)
        result[name] = {"size": [h, w], "modes": rows, "batch1_speedup_vs_fastest_hf": theirs_best / ours_best,
                        "goal_batch1_2x": theirs_best / ours_best >= 2,
                        "best_mfu_bf16": mfu if peak else None, "goal_mfu_40": (mfu >= 0.4) if peak else None}
        del ours, theirs
    return result


def part_train(s: Settings) -> dict:
    """One training step (forward, loss, backward, AdamW): ours with our set loss against
    transformers' model with its own loss, bf16 autocast, with and without checkpointing."""
    from yolos.train.criterion import SetCriterion

    variant, h, w, batch = s.train
    ours, theirs = model_pair(variant, "sdpa")
    ours, theirs = ours.to(s.device).train(), theirs.to(s.device).train()
    criterion = SetCriterion(ours.config.num_classes)
    x = torch.randn(batch, 3, h, w, device=s.device)
    targets = [{k: v.to(s.device) for k, v in t.items()} for t in make_targets(batch, ours.config.num_classes)]
    hf_labels = [{"class_labels": t["labels"], "boxes": t["boxes"]} for t in targets]
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-5)
    opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=1e-5)

    def step_ours():
        opt_ours.zero_grad(set_to_none=True)
        with torch.autocast(s.device.type, dtype=torch.bfloat16):
            out = ours(x)
        criterion({k: v.float() for k, v in out.items()}, targets)["loss"].backward()
        opt_ours.step()

    def step_theirs():
        opt_theirs.zero_grad(set_to_none=True)
        with torch.autocast(s.device.type, dtype=torch.bfloat16):
            loss = theirs(pixel_values=x, labels=hf_labels).loss
        loss.backward()
        opt_theirs.step()

    rows = {}
    for checkpointing in (False, True):
        ours.grad_checkpointing = checkpointing
        if checkpointing:
            enable_hf_checkpointing(theirs)
        for name, fn in (("ours", step_ours), ("hf", step_theirs)):
            if s.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(s.device)
            t = median_time(fn, s.device, max(2, s.repeats // 2), warmup=1)
            peak = torch.cuda.max_memory_allocated(s.device) / 2**30 if s.device.type == "cuda" else None
            rows[f"{name}{' checkpointed' if checkpointing else ''}"] = {"images_per_s": batch / t, "peak_gib": peak}
    speedup = rows["ours"]["images_per_s"] / rows["hf"]["images_per_s"]
    memory_ok = None if rows["ours"]["peak_gib"] is None else rows["ours"]["peak_gib"] <= rows["hf"]["peak_gib"]
    return {"case": f"{variant} {h}x{w} batch {batch}", "steps": rows, "speedup": speedup,
            "goal_1_3x_no_more_memory": speedup >= 1.3 and memory_ok is not False}


# the scratch recipe (issue 29) alone and with each training-only accelerator it left out on 2 CPU cores
ACCELERATOR_RUNS = {
    "recipe (dense head)": "scratch, anchor matching 50, lr 2e-3, dense aux 1",
    "+ 3 groups": "scratch, anchor matching 50, 3 groups, lr 2e-3, dense aux 1",
    "+ denoising 2": "scratch, anchor matching 50, denoising 2, lr 2e-3, dense aux 1",
}


def part_accelerators(s: Settings) -> dict:
    """One training step of the convergence study's scratch recipe (batch 32 at 128 px, bf16
    autocast: loss with matching, backward, clip, AdamW) alone and with 3 [DET] groups or 2
    denoising sets on, alternating. On 2 CPU cores groups reached AP50 0.9 in 0.90-0.95x the steps
    for 1.26-1.34x the seconds (docs/training.md); a step ratio under ~1.05 here means they pay on
    this device."""
    from benchmarks.convergence_study import RUNS, one_step

    def synced(step):
        return lambda: (step(), sync(s.device))

    # bf16 autocast on the GPU; fp32 in the dry run (a CPU without bf16 units takes 10x as long)
    steps = {label: synced(one_step(RUNS[name], 0, not s.dry_run, s.device))
             for label, name in ACCELERATOR_RUNS.items()}
    # alternating, so that the device's clocks treat them alike
    medians = time_alternating(steps, repeats=3 * s.repeats, warmup=1)
    base = medians["recipe (dense head)"]
    rows = {label: {"s_per_step": m, "ratio": m / base} for label, m in medians.items()}
    return {"case": "micro-scale study model, batch 32, 128x128, bf16 autocast", "steps": rows}


PARTS = {"tests": part_tests, "parity": part_parity, "speed": part_speed, "train": part_train,
         "accelerators": part_accelerators}


# ----------------------------------------------------------------------------- report
def run_parts(names, s: Settings, out: Path) -> dict:
    """Runs each part in turn; the reports are rewritten after every part, so a run stopped by
    a time limit still leaves what it measured."""
    report = {"device": torch.cuda.get_device_name() if s.device.type == "cuda" else "cpu (dry run)",
              "torch": torch.__version__, "dry_run": s.dry_run, "date": time.strftime("%Y-%m-%d %H:%M"),
              "parts": {}}
    for name in names:
        t0 = time.perf_counter()
        try:
            entry = {"status": "pass", "result": PARTS[name](s)}
        except Exception as err:  # every part runs whatever the one before did
            entry = {"status": "fail", "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        report["parts"][name] = entry
        error = "" if entry["status"] == "pass" else " " + entry["error"]
        print(f"{name}: {entry['status']} ({entry['seconds']} s){error}", flush=True)
        write_reports(report, out)
        if s.device.type == "cuda":
            torch.cuda.empty_cache()
    return report


def markdown(report: dict) -> str:
    lines = [f"# GPU check: {report['device']}, torch {report['torch']}, {report['date']}"
             f"{' (dry run on the CPU: tiny sizes, figures mean nothing)' if report['dry_run'] else ''}", ""]
    for name, entry in report["parts"].items():
        lines.append(f"## {name}: {entry['status']} ({entry['seconds']} s)")
        if entry["status"] == "fail":
            lines += ["", "```", entry["error"][:2000], "```", ""]
            continue
        result = entry["result"]
        if name == "speed":
            for case, r in result.items():
                lines += ["", f"{case} at {r['size'][0]}x{r['size'][1]}: batch-1 speed-up over transformers' "
                          f"fastest {r['batch1_speedup_vs_fastest_hf']:.2f}x (goal 2x); best bf16 MFU "
                          f"{'n/a' if r['best_mfu_bf16'] is None else format(r['best_mfu_bf16'], '.1%')} (goal 40%)",
                          "", "| mode | batch 1 ms | batch N images/s | MFU |", "|---|---|---|---|"]
                for mode, row in r["modes"].items():
                    big = next((v for k, v in row.items() if k.endswith("images_per_s")), None)
                    lines.append(f"| {mode} | {_fmt(row.get('b1_ms', row.get('b1')))} | {_fmt(big)} | "
                                 f"{_fmt(row.get('mfu'), '.1%')} |")
        elif name == "train":
            lines += ["", f"{result['case']}: {result['speedup']:.2f}x transformers (goal 1.3x, no more memory)",
                      "", "| step | images/s | peak GiB |", "|---|---|---|"]
            lines += [f"| {k} | {_fmt(v['images_per_s'])} | {_fmt(v['peak_gib'])} |"
                      for k, v in result["steps"].items()]
        elif name == "accelerators":
            lines += ["", f"{result['case']}: the scratch recipe's step with each training-only accelerator",
                      "", "| run | s / step | ratio |", "|---|---|---|"]
            lines += [f"| {k} | {v['s_per_step']:.4f} | {v['ratio']:.2f}x |" for k, v in result["steps"].items()]
        else:
            lines += ["", "```", json.dumps(result, indent=1)[:3000], "```"]
        lines.append("")
    return "\n".join(lines) + "\n"


def write_reports(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "gpu_check.md").write_text(markdown(report))


def _fmt(value, spec: str = ".2f") -> str:
    if value is None:
        return "n/a"
    return value if isinstance(value, str) else format(value, spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="run every part on the CPU at tiny sizes")
    ap.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    ap.add_argument("--out", default="gpu_report", help="folder for gpu_check.json and gpu_check.md")
    args = ap.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; use --dry-run to exercise the script on the CPU", file=sys.stderr)
        return 2
    out = Path(args.out)
    report = run_parts(args.parts, Settings(args.dry_run), out)
    print(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    return 0 if all(e["status"] == "pass" for e in report["parts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
