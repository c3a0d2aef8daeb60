"""Shared helpers for the benchmark scripts: identical-weight model pairs, alternating timing,
environment lines for RESULTS.md.

Every script measures ``yolos`` against its peer (transformers, PIL processor, pycocotools) in
the same process, alternating the two so that load from other processes on the machine hits
both alike, and reports medians.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable

import torch

from benchmarks.shared_inputs import (
    random_weights_,  # noqa: F401 - re-exported
    shared_data_dir,
)
from yolos import create_model
from yolos.checkpoint.hf import save_hf_directory
from yolos.hardware import cpu_features, cpu_name, cpu_summary  # noqa: F401 - re-exported for the scripts

SHARED_DATA = shared_data_dir()


def model_pair(variant: str, attn_implementation: str = "sdpa", seed: int = 0, **overrides):
    """``(ours, theirs)``: our YOLOS and transformers' YolosForObjectDetection holding the very
    same random weights (through the transformers directory format), both in eval mode."""
    from transformers import YolosForObjectDetection

    ours = random_weights_(create_model(variant, **overrides), seed=seed).eval()
    with tempfile.TemporaryDirectory() as tmp:
        save_hf_directory(ours, tmp)
        theirs = YolosForObjectDetection.from_pretrained(
            tmp, attn_implementation=attn_implementation
        ).eval()
    return ours, theirs



def enable_hf_checkpointing(model) -> None:
    """Gradient checkpointing on a transformers model: ``activation_checkpointing_enable`` where it
    exists (5.x deprecates the old name, v6 removes it; the test extras do not pin transformers),
    else ``gradient_checkpointing_enable``."""
    (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()

def time_alternating(
    fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1
) -> dict[str, float]:
    """Median wall time (s) of each callable, calling them in turn ``repeats`` times."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def peak_flops(dtype: str, threads: int) -> float:
    """Nominal peak multiply-add rate x 2 (FLOP/s) of ``threads`` cores at the reported clock:
    fp32 with two AVX-512 FMA units 64 FLOP/cycle (AVX2: 32); bf16 with AMX 1024 FLOP/cycle
    (a 16x32 by 32x16 tile product every 16 cycles), with AVX-512-BF16 only 128; int8 with
    AMX-INT8 2048, with AVX-512 VNNI 256 (two 512-bit units, 64 multiply-adds each). Estimates for
    the share-of-peak column, not measurements."""
    f = cpu_features()
    if dtype == "bfloat16" and f["amx_bf16"]:
        per_cycle = 1024
    elif dtype == "bfloat16" and f["avx512_bf16"]:
        per_cycle = 128
    elif dtype == "int8" and f.get("amx_int8"):
        per_cycle = 2048
    elif dtype == "int8" and f.get("vnni"):
        per_cycle = 256
    else:
        per_cycle = 64 if f["avx512"] else 32
    return per_cycle * f["mhz"] * 1e6 * threads


def environment() -> str:
    """One line naming the machine and library versions, printed at the top of each script."""
    import os

    import transformers

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{time.strftime('%Y-%m-%d')} | {cpu_summary()}, "
        f"{os.cpu_count()} cores, "
        f"torch threads {torch.get_num_threads()} | {device} | torch {torch.__version__}, "
        f"transformers {transformers.__version__} | load avg {load:.2f}"
    )


def table(rows: list[list[str]], header: list[str]) -> str:
    """A markdown table."""
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])
