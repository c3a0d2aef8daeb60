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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import __version__, defaults, validate
from ..errors import YolosError
from ..hardware import cache_dir
from ..images import IMAGE_EXTENSIONS
from ..inference.precision import precision_for
from ..inference.predictor import predict
from .exporter import export_model

PRECISIONS = {None: "fp32", torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16",
              torch.qint8: "int8"}  # a validated --dtype -> the precision names of the table


class RuntimeUnavailable(YolosError, RuntimeError):
    """A runtime that cannot run here (its package is missing, or the device is not a CPU)."""


@dataclass(frozen=True)
class Runtime:
    """A row of the runtime table (:data:`RUNTIMES`): what it needs, the precisions it runs, and
    how it runs an exported file. ``session(path, threads, precision)`` returns ``numpy
    pixel_values -> (logits, pred_boxes)`` (None: PyTorch itself runs the model); ``reads``: the
    precision of the exported file a precision runs on, when not its own; ``calibrated``:
    precisions made by :func:`calibrated_int8_file` from calibration images; ``auto``: the
    precisions ``--runtime auto`` may try (with their CPU requirement, :mod:`yolos.export.auto`)."""

    name: str
    packages: tuple = ()
    extra: str | None = None
    precisions: tuple = ("fp32",)
    session: Callable | None = None
    reads: dict = field(default_factory=dict)
    calibrated: tuple = ()
    auto: tuple = ("fp32",)

    def missing(self, precision: str | None = None) -> str | None:
        """Why this runtime (in ``precision``) cannot run here, naming the extra, or None."""
        needed = self.packages + (("nncf",) if precision in self.calibrated else ())
        absent = [name for name in needed if importlib.util.find_spec(name) is None]
        if absent:
            return f"--runtime {self.name} needs {' and '.join(absent)}: pip install 'yolos[{self.extra}]'"
        return None


def _onnxruntime_session(path: Path, threads: int | None, precision: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    # idle worker threads sleep instead of spinning: the decoding threads of predict and the
    # server's request handling share the cores (spinning cost the server a quarter of its rate)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: tuple(session.run(None, {"pixel_values": x}))


def _openvino_session(path: Path, threads: int | None, precision: str):
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


RUNTIMES: dict[str, Runtime] = {r.name: r for r in (
    Runtime("torch", precisions=("fp32", "bf16", "int8"), auto=("fp32", "bf16", "int8")),
    Runtime("onnxruntime", ("onnxruntime", "onnx"), "export", ("fp32", "fp16", "int8"), _onnxruntime_session),
    Runtime("openvino", ("openvino", "onnx"), "openvino", ("fp32", "bf16", "int8"), _openvino_session,
            reads={"bf16": "fp32"}, calibrated=("int8",), auto=("fp32", "bf16")),
)}
AUTO = "auto"


def runtime_names() -> list[str]:
    """The ``--runtime`` choices: every row of the table, then ``auto``."""
    return list(RUNTIMES) + [AUTO]


def missing(runtime: str, precision: str | None = None) -> str | None:
    """Why ``runtime`` cannot run here, naming the extra to install, or None when it can."""
    return RUNTIMES[runtime].missing(precision)


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
        # one thread setting for every runtime: PyTorch's (OMP_NUM_THREADS, torch.set_num_threads)
        self._run = RUNTIMES[runtime].session(self.path, threads or torch.get_num_threads(), precision)

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
    """The network ``runtime`` (a row of :data:`RUNTIMES`, or ``"auto"``) runs for ``model``:
    PyTorch's is the model itself (fp32, fp16) or a :class:`FixedPrecision` of it (bf16, int8: the
    low-precision weights cast once, not at each call); an exported runtime's is
    an :class:`ExportedNetwork` of the cached any-size export in ``dtype`` (one of the row's
    precisions; a calibrated one, OpenVINO's int8, quantized by NNCF on ``calibration`` images);
    ``"auto"`` is the fastest that gives the same detections on this machine
    (:func:`yolos.export.auto.choose`). A runtime whose package is missing raises with the extra."""
    if runtime != AUTO and runtime not in RUNTIMES:
        raise ValueError(f"--runtime: expected one of {', '.join(runtime_names())}, got {runtime!r}")
    dtype = validate.dtype(dtype, "--dtype")
    if isinstance(model, ExportedNetwork):
        raise ValueError("compile_for: give the PyTorch model, not an exported network")
    if runtime == AUTO:
        from .auto import choose

        return choose(model, dtype, threads, say)
    row, precision = RUNTIMES[runtime], PRECISIONS[dtype]
    if row.session is None:  # PyTorch itself: a low precision is fixed now, its weights cast once
        return FixedPrecision(model, dtype) if dtype in (torch.bfloat16, torch.qint8) else model
    if precision not in row.precisions:
        raise ValueError(f"--dtype: {runtime} runs {', '.join(row.precisions)}, not {precision}")
    reason = row.missing(precision)
    if reason:
        raise RuntimeUnavailable(reason)
    if next(model.parameters()).device.type != "cpu":
        raise RuntimeUnavailable(f"--runtime {runtime} runs on the CPU; the model is on "
                                 f"{next(model.parameters()).device} (use --runtime torch there)")
    if precision in row.calibrated:
        if calibration is None:
            raise ValueError(f"--dtype {precision} on {runtime} is calibrated on your images: give --calibration DIR")
        path = calibrated_int8_file(model, calibration, say)
    else:
        path = engine_file(model, row.reads.get(precision, precision), say)
    return ExportedNetwork(model.config, runtime, precision, path, threads)


def calibration_images(folder) -> list[Path]:
    """The image files under ``folder`` (``--calibration DIR``; a ValueError names the option)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--calibration: {folder} is not a folder of images")
    files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
    if not files:
        raise ValueError(f"--calibration: no images in {folder}")
    return files


def check_runtime(runtime: str, calibration_dir=None) -> None:
    """Refuse, before any model loads or folder is claimed, a runtime whose package is missing or
    a calibration folder with no images."""
    if runtime in RUNTIMES and RUNTIMES[runtime].missing() is not None:
        raise RuntimeUnavailable(RUNTIMES[runtime].missing())
    if calibration_dir:
        calibration_images(calibration_dir)


def runtime_network(model, runtime: str = "torch", dtype=None, calibration_dir=None, calibration=None, say=None):
    """:func:`compile_for` as the commands call it: images to calibrate on from
    ``calibration_dir``, else from ``calibration()`` (a callable, asked only when the runtime and
    dtype are a calibrated pair)."""
    if calibration_dir:
        calibration = calibration_images(calibration_dir)
    elif callable(calibration):
        row = RUNTIMES.get(runtime)
        wanted = row is not None and PRECISIONS.get(validate.dtype(dtype, "--dtype")) in row.calibrated
        calibration = calibration() if wanted else None
    return compile_for(model, runtime, dtype, say=say, calibration=calibration)


__all__ = ["RUNTIMES", "Runtime", "runtime_names", "runtime_network", "check_runtime", "calibration_images",
           "ExportedNetwork", "FixedPrecision", "compile_for", "engine_file", "weights_digest", "missing",
           "RuntimeUnavailable"]
