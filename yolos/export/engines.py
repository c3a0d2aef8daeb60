"""The runtimes we export to, as the network behind ``predict``, ``val`` and ``serve``.

:func:`compile_for` turns a :class:`yolos.YOLOS` into what a runtime runs: the model itself for
``torch``, or an :class:`ExportedNetwork` for ``onnxruntime`` and ``openvino``. An exported
network is called like the model (``pixel_values [B, 3, H, W] -> {"logits", "pred_boxes"}``) and
carries its ``config``, so everything around the network stays ours and shared: decoding, EXIF,
the resize, same-size batching, post-processing, ``Detections``, category ids, records and resume,
the server's queue and limits.

The graph is the any-size export (:func:`yolos.export.export_model`), so one file serves every
image size. It is made once per weights, precision and yolos/torch version and kept in
``~/.cache/yolos/engines/<digest>/`` (:func:`engine_file`): a second run starts in the time it
takes to open a session; changed weights make another digest.

``auto`` (:mod:`yolos.export.auto`) picks, per machine and model, the fastest runtime whose
detections equal PyTorch fp32's on the check images.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import __version__, defaults
from ..errors import YolosError
from ..hardware import cache_dir
from ..inference.precision import precision_for
from ..inference.predictor import predict
from .exporter import export_model

ENGINES = ("torch", "onnxruntime", "openvino")
RUNTIME_CHOICES = ENGINES + ("auto",)
EXTRA = {"onnxruntime": "export", "openvino": "openvino"}  # the pip extra that brings each
# Precisions an exported graph is written in, by the --dtype names.
EXPORT_DTYPES = {None: "fp32", "float32": "fp32", "float16": "fp16", "qint8": "int8"}


class RuntimeUnavailable(YolosError, RuntimeError):
    """A runtime that cannot run here (its package is missing, or the device is not a CPU)."""


def missing(runtime: str) -> str | None:
    """Why ``runtime`` cannot run here, naming the extra to install, or None when it can."""
    if runtime == "torch":
        return None
    needed = {"onnxruntime": ("onnxruntime", "onnx"), "openvino": ("openvino", "onnx")}[runtime]
    absent = [name for name in needed if importlib.util.find_spec(name) is None]
    if absent:
        return (f"--runtime {runtime} needs {' and '.join(absent)}: pip install 'yolos[{EXTRA[runtime]}]'")
    return None


def weights_digest(model: nn.Module) -> str:
    """A digest of what an export depends on: the config, every tensor's bytes, and the yolos and
    torch versions (a new exporter may write another graph)."""
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    h.update(f"yolos {__version__} torch {torch.__version__}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:24]


def engine_file(model: nn.Module, precision: str, say=None) -> Path:
    """The any-size ONNX file of ``model`` in ``precision`` ("fp32", "fp16", "int8"), exported
    into the cache the first time and reused after (keyed by :func:`weights_digest`)."""
    path = cache_dir() / "engines" / weights_digest(model) / f"model-{precision}.onnx"
    if path.is_file():
        return path
    if say is not None:
        say(f"exporting the model for this runtime once ({precision}); kept in {path.parent}")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.stem}.{torch.randint(1 << 30, ()).item()}.onnx")
    try:
        export_model(model, staging, format="onnx", dtype=precision)
        staging.replace(path)  # another process may have written it meanwhile: same content
    finally:
        staging.unlink(missing_ok=True)
    return path


def _session(runtime: str, path: Path, threads: int | None, precision: str = "fp32"):
    """``numpy pixel_values -> (logits, pred_boxes)`` for an ONNX file on ``runtime``."""
    if runtime == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # idle worker threads sleep instead of spinning: the decoding threads of predict and the
        # server's request handling share the cores (spinning cost the server a quarter of its rate)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda x: tuple(session.run(None, {"pixel_values": x}))
    import openvino as ov

    # OpenVINO's default precision on AVX512-BF16/AMX CPUs is bf16 (logits off by ~5e-3): say which
    config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(str(path), "CPU", config)

    def run(x: np.ndarray):
        out = compiled([x])
        return out[compiled.output(0)], out[compiled.output(1)]
    return run


MAX_CALIBRATION_IMAGES = 300


def calibrated_int8_file(model: nn.Module, calibration: list, say=None) -> Path:
    """OpenVINO's int8 model of ``model`` quantized after training by NNCF on ``calibration``
    (image paths or images; the first :data:`MAX_CALIBRATION_IMAGES`, each at the model's input
    size), cached by weights and calibration set (an IR folder: ``model.xml`` + ``model.bin``)."""
    import openvino as ov

    try:
        import nncf
    except ImportError:
        raise RuntimeUnavailable("--dtype int8 on openvino needs NNCF: pip install 'yolos[openvino]'") from None
    from ..images import load_image
    from ..inference.preprocess import preprocess
    from ..model.variants import input_size

    images = list(calibration)[:MAX_CALIBRATION_IMAGES]
    if not images:
        raise ValueError("--calibration: no images to calibrate int8 on")
    h = hashlib.sha256(weights_digest(model).encode())
    for image in images:
        h.update(str(Path(image).resolve() if isinstance(image, (str, Path)) else id(image)).encode())
    folder = cache_dir() / "engines" / weights_digest(model) / f"int8-nncf-{h.hexdigest()[:16]}"
    if (folder / "model.xml").is_file():
        return folder / "model.xml"
    if say is not None:
        say(f"quantizing to int8 with NNCF on {len(images)} calibration images, once; kept in {folder}")
    short, long = input_size(model.config, "transformers")
    fp32 = ov.Core().read_model(str(engine_file(model, "fp32", say)))
    data = nncf.Dataset(images, lambda im: preprocess(load_image(im), short, long)["pixel_values"].numpy())
    quantized = nncf.quantize(fp32, data, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(images))
    staging = folder.with_name(f".{folder.name}.{torch.randint(1 << 30, ()).item()}")
    ov.save_model(quantized, str(staging / "model.xml"))
    try:
        staging.rename(folder)
    except OSError:  # written by another process meanwhile
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return folder / "model.xml"


class ExportedNetwork(nn.Module):
    """A YOLOS network run by onnxruntime or OpenVINO (see the module doc). CPU only; its
    precision (fp32, fp16, int8; OpenVINO also bf16) is fixed when it is made, so ``predict(dtype=...)``
    other than its own is refused."""

    def __init__(self, config, runtime: str, precision: str, path: Path, threads: int | None = None):
        super().__init__()
        self.config, self.runtime, self.precision, self.path = config, runtime, precision, Path(path)
        self.register_buffer("inputs_here", torch.zeros(0), persistent=False)  # inputs go to the CPU, float32
        self._run = _session(runtime, self.path, threads, precision)

    @property
    def fixed_precision(self) -> str:
        return self.precision

    def forward(self, pixel_values: torch.Tensor) -> dict:
        x = pixel_values.detach().to("cpu", torch.float32).contiguous().numpy()
        logits, boxes = self._run(x)
        return {"logits": torch.from_numpy(np.ascontiguousarray(logits)).float(),
                "pred_boxes": torch.from_numpy(np.ascontiguousarray(boxes)).float()}

    def predict(self, images, threshold: float = defaults.THRESHOLD, **kwargs):
        """As :meth:`yolos.YOLOS.predict`."""
        return predict(self, images, threshold=threshold, **kwargs)

    def extra_repr(self) -> str:
        return f"runtime={self.runtime}, precision={self.precision}, path={self.path}"


class FixedPrecision(nn.Module):
    """The PyTorch model in one compute dtype for every call (``--runtime auto`` choosing torch
    bf16 or int8): the low-precision weights are cast once, here (:func:`precision_for`)."""

    runtime = "torch"

    def __init__(self, model: nn.Module, dtype):
        super().__init__()
        self.model, self.config = model, model.config
        self.precision = {torch.bfloat16: "bf16", torch.qint8: "int8"}[dtype]
        self._compute = precision_for(model, dtype)

    @property
    def fixed_precision(self) -> str:
        return self.precision

    def forward(self, pixel_values: torch.Tensor) -> dict:
        with self._compute():
            return self.model(pixel_values)

    def predict(self, images, threshold: float = defaults.THRESHOLD, **kwargs):
        return predict(self, images, threshold=threshold, **kwargs)


def compile_for(model: nn.Module, runtime: str = "torch", dtype=None, threads: int | None = None,
                say=None, calibration=None) -> nn.Module:
    """The network ``runtime`` runs for ``model``: ``"torch"`` (the model itself; ``dtype`` then
    applies at each call), ``"onnxruntime"`` or ``"openvino"`` (an :class:`ExportedNetwork`
    of the cached any-size export in ``dtype``: None/fp32, fp16 or int8; OpenVINO also bf16, and
    its int8 is NNCF's post-training quantization on ``calibration`` images), or ``"auto"`` (the
    fastest that gives the same detections on this machine, :func:`yolos.export.auto.choose`).
    A runtime whose package is missing raises with the extra to install."""
    from .. import validate

    if runtime not in RUNTIME_CHOICES:
        raise ValueError(f"--runtime: expected one of {', '.join(RUNTIME_CHOICES)}, got {runtime!r}")
    dtype = validate.dtype(dtype, "--dtype")
    if isinstance(model, ExportedNetwork):
        raise ValueError("compile_for: give the PyTorch model, not an exported network")
    if runtime == "auto":
        from .auto import choose

        return choose(model, dtype, threads, say)
    if runtime == "torch":
        return model
    reason = missing(runtime)
    if reason:
        raise RuntimeUnavailable(reason)
    if next(model.parameters()).device.type != "cpu":
        raise RuntimeUnavailable(f"--runtime {runtime} runs on the CPU; the model is on "
                            f"{next(model.parameters()).device} (use --runtime torch there)")
    key = str(dtype).removeprefix("torch.") if dtype is not None else None
    if runtime == "openvino" and key == "bfloat16":  # OpenVINO's own bf16 inference of the fp32 graph
        precision, written = "bf16", "fp32"
    elif runtime == "openvino" and key == "qint8":  # static int8, calibrated (onnxruntime's is dynamic)
        if calibration is None:
            raise ValueError("--dtype int8 on openvino is calibrated on your images: give --calibration DIR")
        return ExportedNetwork(model.config, runtime, "int8", calibrated_int8_file(model, calibration, say), threads)
    elif key in EXPORT_DTYPES:
        precision = written = EXPORT_DTYPES[key]
    else:
        raise ValueError(f"--dtype: {runtime} runs fp32, fp16 or int8{' or bf16' if runtime == 'openvino' else ''}, "
                         f"not {key}")
    return ExportedNetwork(model.config, runtime, precision, engine_file(model, written, say), threads)


__all__ = ["ENGINES", "RUNTIME_CHOICES", "ExportedNetwork", "compile_for", "engine_file", "weights_digest",
           "missing"]
