"""One model through each runtime a deployer can choose: PyTorch (fp32, bf16, int8), onnxruntime
(fp32, fp16, int8 on the exported any-size file) and OpenVINO (on the same file, when installed).

Every runtime is a callable ``pixel_values [B, 3, H, W] float32 -> (logits, pred_boxes)`` as
numpy arrays, made by :func:`make_runtime`; ``yolos benchmark --runtime`` times them on the same
inputs and compares their outputs and detections with PyTorch fp32's.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..inference.precision import precision_for
from .exporter import export_model

RUNTIMES = ("torch-fp32", "torch-bf16", "torch-int8", "onnxruntime-fp32", "onnxruntime-fp16", "onnxruntime-int8",
            "openvino-fp32")


def same_detections(a: dict, b: dict, box_tolerance: float = 2.0) -> bool:
    """Whether two :func:`yolos.postprocess` results of one image agree: the same labels in the
    same order, and every box within ``box_tolerance`` pixels."""
    if not torch.equal(a["labels"], b["labels"]):
        return False
    return len(a["boxes"]) == 0 or float((a["boxes"] - b["boxes"]).abs().max()) <= box_tolerance


def available(name: str) -> str | None:
    """Why runtime ``name`` cannot run here (a missing package), or None when it can."""
    package = {"onnxruntime": "onnxruntime", "openvino": "openvino"}.get(name.split("-")[0])
    if package and importlib.util.find_spec(package) is None:
        return f"{package} is not installed (pip install {package})"
    if name == "onnxruntime-fp16" and importlib.util.find_spec("onnxconverter_common") is None:
        return "onnxconverter-common is not installed (pip install 'yolos[export]')"
    if name.startswith(("onnxruntime", "openvino")) and importlib.util.find_spec("onnx") is None:
        return "onnx is not installed (pip install 'yolos[export]')"
    return None


def make_runtime(name: str, model, folder: Path, threads: int) -> Callable[[np.ndarray], tuple]:
    """The callable for runtime ``name`` (:data:`RUNTIMES`); ONNX files are written into
    ``folder`` (any input size)."""
    engine, precision = name.split("-")
    if engine == "torch":
        compute = precision_for(model, {"fp32": None, "bf16": "bfloat16", "int8": "int8"}[precision])

        def run_torch(x: np.ndarray):
            with torch.inference_mode(), compute():
                out = model(torch.from_numpy(x))
            return out["logits"].float().numpy(), out["pred_boxes"].float().numpy()
        return run_torch
    path = folder / f"model-{precision}.onnx"
    if not path.exists():
        export_model(model, path, format="onnx", dtype=precision)
    if engine == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda x: tuple(session.run(None, {"pixel_values": x}))
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads})

    def run_openvino(x: np.ndarray):
        out = compiled([x])
        return out[compiled.output(0)], out[compiled.output(1)]
    return run_openvino


__all__ = ["RUNTIMES", "available", "make_runtime", "same_detections"]
