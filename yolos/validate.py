"""Checks for user-given options, shared by the Python API and the command line.

Each returns the value in its canonical type or raises ``ValueError`` whose message starts with
the option's name (``--threshold`` on the command line, ``threshold`` in Python), so a bad value
is refused when a command starts, before any model is loaded.
"""
from __future__ import annotations

import math

MAX_SIDE = 8192  # pixels per side of a model input (export, resize targets)


def _real(value, name: str, ok, expected: str, allow_bool: bool = True) -> float:
    """``value`` as a finite float for which ``ok(v)`` holds, else ValueError
    ``"{name}: expected {expected}, got {value!r}"``."""
    message = f"{name}: expected {expected}, got {value!r}"
    if isinstance(value, bool) and not allow_bool:
        raise ValueError(message)
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if not math.isfinite(v) or not ok(v):
        raise ValueError(message)
    return v


def threshold(value, name: str = "threshold") -> float:
    """A score threshold in [0, 1]."""
    return _real(value, name, lambda v: 0.0 <= v <= 1.0, "a number between 0 and 1", allow_bool=False)


def _whole(value, name: str, minimum: int) -> int:
    """``value`` as an int >= ``minimum``: an int, an integral float, or a string of digits;
    bools and fractions are refused."""
    message = f"{name}: expected a whole number >= {minimum}, got {value!r}"
    if isinstance(value, bool):
        raise ValueError(message)
    try:
        v = int(value)  # "3.5" and "a" raise here, inf overflows
    except (TypeError, ValueError, OverflowError):
        raise ValueError(message) from None
    if not isinstance(value, str) and v != value:  # 2.5 -> 2 would silently truncate
        raise ValueError(message)
    if v < minimum:
        raise ValueError(message)
    return v


def positive_int(value, name: str) -> int:
    """A whole number >= 1."""
    return _whole(value, name, 1)


def non_negative_int(value, name: str) -> int:
    """A whole number >= 0."""
    return _whole(value, name, 0)


def port(value, name: str = "port") -> int:
    """A TCP port, 1..65535."""
    v = _whole(value, name, 1)
    if v > 65535:
        raise ValueError(f"{name}: expected a TCP port 1..65535, got {value!r}")
    return v


def positive_float(value, name: str) -> float:
    return _real(value, name, lambda v: v > 0, "a positive number")


def at_least(value, name: str, minimum: float = 1.0) -> float:
    """A number >= ``minimum``."""
    return _real(value, name, lambda v: v >= minimum, f"a number >= {minimum:g}")


def non_negative_float(value, name: str) -> float:
    return _real(value, name, lambda v: v >= 0, "a number >= 0")


def fraction(value, name: str) -> float:
    """A share in [0, 1)."""
    return _real(value, name, lambda v: 0 <= v < 1, "a number in [0, 1)", allow_bool=False)


def unit_scale(value, name: str) -> float:
    """A scale factor in (0, 1]."""
    return _real(value, name, lambda v: 0 < v <= 1, "a number in (0, 1]", allow_bool=False)


def duration(value, name: str) -> str:
    """A wall-clock duration as text (``"90s"``, ``"10m"``, ``"1.5h"``, or a number of seconds);
    returned as given, checked by :func:`seconds`."""
    seconds(value, name)
    return str(value).strip()


def seconds(value, name: str = "time") -> float:
    """The seconds of a :func:`duration`."""
    message = f"{name}: expected a duration such as 90s, 10m or 1.5h, got {value!r}"
    if isinstance(value, bool):
        raise ValueError(message)
    text = str(value).strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(text[-1:], None)
    try:
        v = float(text[:-1] if scale else text)
    except ValueError:
        raise ValueError(message) from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(message)
    return v * (scale or 1)


def image_side(value, name: str, minimum: int = 16) -> int:
    """A side length in pixels, ``minimum..MAX_SIDE``."""
    v = positive_int(value, name)
    if not minimum <= v <= MAX_SIDE:
        raise ValueError(f"{name}: expected a side between {minimum} and {MAX_SIDE} pixels, got {v}")
    return v


def output_folder(value, name: str = "--out"):
    """A folder to write into (``Path``): it may be missing, but must not be an existing file."""
    from pathlib import Path

    path = Path(value)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name}: {path} exists and is not a folder")
    return path


def device(value, name: str = "device"):
    """A ``torch.device`` that this torch build and machine can use (None: CUDA if available)."""
    import torch

    if value is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{name}: {value!r} is not a device (use cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name}: {value!r} asked for, but CUDA is not available "
                             f"(torch {torch.__version__}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{name}: {value!r} asked for, but there are only "
                             f"{torch.cuda.device_count()} CUDA device(s)")
    elif dev.type in ("mps", "xpu"):
        backend = getattr(torch.backends, "mps", None) if dev.type == "mps" else getattr(torch, "xpu", None)
        if backend is None or not backend.is_available():
            raise ValueError(f"{name}: {value!r} asked for, but this machine or torch build has no {dev.type} "
                             f"device; use --device cpu")
    elif dev.type != "cpu":
        raise ValueError(f"{name}: unsupported device type {dev.type!r} (use cpu or cuda)")
    return dev


DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16", "int8": "qint8", "qint8": "qint8"}


def dtype(value, name: str = "dtype"):
    """An inference compute dtype: ``None`` (the model's own), or float32 / bfloat16 / float16 /
    int8 given as a name (``"bf16"``, ``"int8"``, ...) or a ``torch.dtype`` (int8 is
    ``torch.qint8``)."""
    import torch

    if value is None or isinstance(value, torch.dtype) and value in (torch.float32, torch.bfloat16, torch.float16,
                                                                      torch.qint8):
        return value
    key = str(value).lower().removeprefix("torch.")
    if key not in DTYPES:
        raise ValueError(f"{name}: expected one of float32, bfloat16, float16, int8 (or fp32, bf16, fp16), "
                         f"got {value!r}")
    return getattr(torch, DTYPES[key])
