"""One model through each runtime a deployer can choose, for ``yolos benchmark --runtime`` and
benchmarks/precision_fidelity.py: PyTorch (fp32, bf16, int8), onnxruntime (fp32, fp16, int8 on the
any-size export) and OpenVINO (fp32, bf16, NNCF-calibrated int8), when installed.

Every runtime is a callable ``pixel_values [B, 3, H, W] float32 -> (logits, pred_boxes)`` as
numpy arrays, made by :func:`make_runtime` through the networks ``predict``, ``val`` and ``serve``
run (:func:`yolos.export.engines.compile_for`), so what is timed is what they use.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Callable

import numpy as np
import torch

from ..inference.precision import precision_for
from . import engines
from .engines import compile_for


def modes() -> tuple[str, ...]:
    """Every runtime in every precision it runs, as benchmark names (``onnxruntime-int8``), from
    the engines' table (:data:`yolos.export.engines.RUNTIMES`)."""
    return tuple(f"{name}-{precision}" for name, row in engines.RUNTIMES.items() for precision in row.precisions)
DTYPES = {"fp32": None, "bf16": "bfloat16", "fp16": "float16", "int8": "int8"}


def same_detections(a: dict, b: dict, box_tolerance: float = 2.0) -> bool:
    """Whether two :func:`yolos.postprocess` results of one image agree: the same labels in the
    same order, and every box within ``box_tolerance`` pixels."""
    if not torch.equal(a["labels"], b["labels"]):
        return False
    return len(a["boxes"]) == 0 or float((a["boxes"] - b["boxes"]).abs().max()) <= box_tolerance


def available(name: str) -> str | None:
    """Why runtime ``name`` cannot run here (a missing package), or None when it can."""
    engine, precision = name.split("-")
    why = engines.RUNTIMES[engine].missing(precision)
    if why is None and name == "onnxruntime-fp16" and importlib.util.find_spec("onnxconverter_common") is None:
        return "onnxconverter-common is not installed (pip install 'yolos[export]')"
    return why


def make_runtime(name: str, model, threads: int, calibration=None) -> Callable[[np.ndarray], tuple]:
    """The callable for runtime ``name`` (one of :func:`modes`); ``calibration``: images for
    OpenVINO's calibrated int8."""
    engine, precision = name.split("-")
    calibrated = precision in engines.RUNTIMES[engine].calibrated
    network = compile_for(model, engine, DTYPES[precision], threads, calibration=calibration if calibrated else None)
    compute = precision_for(model, DTYPES[precision]) if engine == "torch" else precision_for(network, None)

    def run(x: np.ndarray):
        with torch.inference_mode(), compute():
            out = network(torch.from_numpy(x))
        return out["logits"].float().numpy(), out["pred_boxes"].float().numpy()
    return run


__all__ = ["modes", "available", "make_runtime", "same_detections"]
