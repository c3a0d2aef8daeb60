"""``--runtime auto``: the fastest runtime on this machine whose detections equal PyTorch fp32's.

Candidates (:func:`candidates`, from the runtime table): PyTorch fp32, bf16 (on CPUs with
AVX512-BF16 or AMX) and int8 (VNNI or AMX-INT8); onnxruntime fp32; OpenVINO fp32 and bf16, when
installed. Never onnxruntime int8 (it lost 0.015 AP on a fine-tuned model, docs/benchmarks.md),
OpenVINO's calibrated int8 (0.016), nor fp16 (no CPU gain).

Each candidate must give PyTorch fp32's detections on the check images (the bundled example and
three rendered scenes at the model's input size; :func:`check_inputs`): the same labels in the
same order at score 0.1, boxes within 2 pixels, scores within 0.01; and every [DET] token's class
probabilities within 0.01 and box within 1% of the image (so a model whose scores are all low,
random weights say, is held to the same standard). The fastest of those that do,
timed at batch 1 on the model's input size (medians of alternating rounds, a pause between
runtimes so that one's spinning threads do not slow the next), is the choice. It is measured once
per machine kind, model weights and package versions, kept in ``~/.cache/yolos/auto.json``, and
said in one line with the figures behind it.
"""
from __future__ import annotations

import importlib.metadata
import json
import statistics
import time

import numpy as np
import torch

from .. import validate
from ..defaults import DEFAULT_IMAGE
from ..files import atomic_write_text
from ..hardware import cache_dir, cpu_features, machine_key
from ..images import load_image
from ..inference.postprocess import postprocess
from ..inference.precision import precision_for
from ..inference.preprocess import preprocess
from ..model.variants import input_size

CHECK_THRESHOLD = 0.1
DTYPE_OF = {"fp32": None, "bf16": "bfloat16", "int8": "int8", "fp16": "float16"}
BOX_TOLERANCE = 2.0  # pixels
SCORE_TOLERANCE = 0.01


# What a precision needs of the CPU to be worth trying.
NEEDS = {"bf16": ("avx512_bf16", "amx_bf16"), "int8": ("vnni", "amx_int8")}


def candidates() -> list[tuple[str, str | None]]:
    """``(runtime, dtype)`` pairs worth trying here: every runtime installed, in the precisions its
    table row lets auto try (:data:`yolos.export.engines.RUNTIMES`), where the CPU has what they need."""
    from .engines import RUNTIMES

    f = cpu_features()
    found = []
    for name, row in RUNTIMES.items():
        if row.missing() is not None:
            continue
        for precision in row.auto:
            if precision not in NEEDS or any(f[flag] for flag in NEEDS[precision]):
                found.append((name, DTYPE_OF[precision]))
    return found


def check_inputs(model, count: int = 3) -> list[torch.Tensor]:
    """``pixel_values`` of the bundled example and ``count`` rendered scenes, at the model's input size."""
    from ..data.shapes import ShapesSpec, render_shapes

    short, long = input_size(model.config, "transformers")
    images = [load_image(DEFAULT_IMAGE)]
    rng = np.random.default_rng(7)
    for _ in range(count):
        pixels, _ = render_shapes(rng, ShapesSpec(image_size=max(short, 64), max_objects=8, look="varied"))
        images.append(load_image(pixels))
    return [preprocess(im, short_side=short, long_side=long)["pixel_values"] for im in images]


def _versions() -> str:
    names = ("torch", "onnxruntime", "openvino")
    out = []
    for name in names:
        try:
            out.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(out)


def _label(runtime: str, dtype) -> str:
    return f"{runtime} {next(p for p, d in DTYPE_OF.items() if d == dtype)}"


def _agree(a: dict, b: dict) -> bool:
    if not torch.equal(a["labels"], b["labels"]):
        return False
    if len(a["boxes"]) == 0:
        return True
    return float((a["boxes"] - b["boxes"]).abs().max()) <= BOX_TOLERANCE and \
        float((a["scores"] - b["scores"]).abs().max()) <= SCORE_TOLERANCE


def _close(a: dict, b: dict) -> bool:
    """Every token's class probabilities within :data:`SCORE_TOLERANCE` and box within 1% of the
    image: the detections at any threshold stay close, also for a model whose scores are all low."""
    probs = (a["logits"].float().softmax(-1) - b["logits"].float().softmax(-1)).abs().max()
    boxes = (a["pred_boxes"].float() - b["pred_boxes"].float()).abs().max()
    return float(probs) <= SCORE_TOLERANCE and float(boxes) <= 0.01


def _runner(model, network, dtype):
    compute = precision_for(network, dtype if network is model else None)

    def run(x):
        with torch.inference_mode(), compute():
            return network(x)
    return run


def measure(model, threads, say=None) -> dict:
    """Every candidate's fidelity and batch-1 time (ms) on this machine: ``{label: {"runtime",
    "dtype", "same", "ms"}}``."""
    from .engines import compile_for

    inputs = check_inputs(model)
    sizes = [(x.shape[-2], x.shape[-1]) for x in inputs]
    model.eval()
    outputs = [_runner(model, model, None)(x) for x in inputs]
    reference = [postprocess(out, [s], threshold=CHECK_THRESHOLD)[0] for out, s in zip(outputs, sizes)]
    results, runners = {}, {}
    for runtime, dtype in candidates():
        label = _label(runtime, dtype)
        network = model if runtime == "torch" else compile_for(model, runtime, dtype, threads, say)
        run = _runner(model, network, dtype)
        same = True
        for x, s, ref, out in zip(inputs, sizes, reference, outputs):
            got = run(x)
            same = same and _agree(postprocess(got, [s], threshold=CHECK_THRESHOLD)[0], ref) and _close(got, out)
        results[label] = {"runtime": runtime, "dtype": dtype, "same": same, "ms": None}
        if same:
            runners[label] = run
    timed = {label: [] for label in runners}
    x = inputs[0]
    for run in runners.values():  # warm up
        run(x)
    for _ in range(5):
        for label, run in runners.items():
            time.sleep(0.05)  # let the previous runtime's worker threads go idle
            t0 = time.perf_counter()
            run(x)
            timed[label].append(time.perf_counter() - t0)
    for label, times in timed.items():
        results[label]["ms"] = round(1000 * statistics.median(times), 2)
    return results


def choose(model, dtype, threads=None, say=None):
    """The network ``--runtime auto`` runs (see the module doc). ``dtype`` must be unset: auto
    chooses it."""
    from .engines import FixedPrecision, compile_for, weights_digest

    if dtype is not None and dtype != torch.float32:
        raise ValueError("--runtime auto chooses the dtype too: leave --dtype out, or name a runtime")
    if next(model.parameters()).device.type != "cpu":
        return model  # the exported runtimes are CPU ones: on a GPU, PyTorch
    key = f"{machine_key()} | {weights_digest(model)} | {_versions()} | threads {threads or torch.get_num_threads()}"
    path = cache_dir() / "auto.json"
    try:
        known = json.loads(path.read_text())
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    decision = known.get(key)
    fresh = not isinstance(decision, dict) or "results" not in decision
    if fresh:
        if say is not None:
            say("runtime auto: measuring the runtimes on this machine once (fidelity on the check images, "
                "then batch-1 speed)")
        results = measure(model, threads, say)
        passed = {k: v for k, v in results.items() if v["same"]}
        best = min(passed, key=lambda k: passed[k]["ms"])
        decision = {"choice": best, "results": results}
        known[key] = decision
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(known, indent=1))
        except OSError:
            pass
    best = decision["choice"]
    chosen = decision["results"][best]
    if say is not None:
        say(explain(decision, fresh, path))
    if chosen["runtime"] == "torch":
        return model if chosen["dtype"] is None else FixedPrecision(model, validate.dtype(chosen["dtype"]))
    return compile_for(model, chosen["runtime"], chosen["dtype"], threads)


def explain(decision: dict, fresh: bool, path) -> str:
    """The one line that says what auto chose and why."""
    results, best = decision["results"], decision["choice"]
    others = []
    for label, r in results.items():
        if label == best:
            continue
        others.append(f"{label} {r['ms']:.1f}" if r["same"] else f"{label}: detections differ")
    when = "measured now" if fresh else "measured before"
    return (f"runtime auto: {best}, {results[best]['ms']:.1f} ms per image at batch 1 (others: "
            f"{'; '.join(others) or 'none installed'}); {when} on this machine, kept in {path}")


__all__ = ["choose", "measure", "candidates", "explain"]
