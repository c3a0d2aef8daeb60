"""The options the commands share, declared once (``add_model``, ``add_device``, ``add_size``,
``add_data``, ``add_runtime``, ...) and what they mean for all of them (``--model``:
:func:`yolos.api.load_model`), with the argparse types of :mod:`yolos.cli.types`, so every command
refuses a bad option the same way when it starts: ``yolos predict: error: argument --threshold: ...``."""
from __future__ import annotations

import argparse

from .. import defaults, validate
from ..model.variants import VARIANTS
from .types import dtype, fraction, image_side, non_negative_int, threshold

MODEL_HELP = ("checkpoint: a .safetensors or original .pth file, a transformers folder, a hub id, a variant name "
              f"({', '.join(n for n, v in VARIANTS.items() if v.hub_id)}: its released weights), or 'bundled' "
              "(the default: the micro model shipped in the package)")


def add_threshold(p, name: str = "--threshold", help: str = "keep scores above this, 0..1") -> None:
    """A score threshold option with the one default (:data:`yolos.defaults.THRESHOLD`)."""
    p.add_argument(name, type=threshold, default=defaults.THRESHOLD, help=f"{help} (default {defaults.THRESHOLD:g})")


def add_dtype(p) -> None:
    p.add_argument("--dtype", type=dtype, default=None, metavar="{fp32,bf16,int8}",
                   help="compute dtype: fp32 (default); bf16 (the backbone's products and attention in bf16); int8 "
                        "(CPU: int8 weights per channel). Their fidelity: docs/benchmarks.md")


def add_runtime(p) -> None:
    from ..export.engines import RUNTIMES, runtime_names

    exported = [name for name, row in RUNTIMES.items() if row.session is not None]
    p.add_argument("--runtime", choices=runtime_names(), default="torch",
                   help=f"what runs the network: torch (default); {' or '.join(exported)} (the model's any-size "
                        f"ONNX export, made once and cached by its weights; CPU; --dtype picks the exported "
                        f"precision: " + "; ".join(f"{n} {', '.join(RUNTIMES[n].precisions)}" for n in exported)
                        + "); auto (the fastest on this machine whose detections equal torch fp32's, measured "
                        "once and kept). Decoding, resize, batching and post-processing stay the same")
    p.add_argument("--calibration", default=None, metavar="DIR",
                   help="images to calibrate a calibrated int8 on (--runtime openvino --dtype int8; NNCF's "
                        "post-training quantization, the first 300 images of DIR)")


def check_runtime(args) -> None:
    """Refuse, before any model loads or folder is claimed, a --runtime that cannot run here."""
    from ..export.engines import check_runtime as check

    check(args.runtime, args.calibration)


def apply_runtime(model, args, say=print, calibration=None):
    """The network ``--runtime`` runs for ``model`` (:func:`yolos.export.engines.runtime_network`;
    ``calibration``: a callable giving images when ``--calibration`` is not given)."""
    from ..export.engines import runtime_network

    return runtime_network(model, args.runtime, args.dtype, args.calibration, calibration, say)


def add_max_pixels(p) -> None:
    p.add_argument("--max-pixels", type=non_negative_int, default=None,
                   help=f"refuse images above this many pixels (default {defaults.MAX_PIXELS:,} or $YOLOS_MAX_PIXELS; "
                        f"0: no limit)")


def apply_max_pixels(args) -> None:
    if getattr(args, "max_pixels", None) is not None:
        from ..images import set_max_pixels

        set_max_pixels(args.max_pixels)


def check_device(args) -> None:
    """Resolve ``args.device`` now (None -> cuda if available, else cpu), so a device this
    machine lacks is refused before any model is loaded."""
    args.device = str(validate.device(args.device, "--device"))  # ValueError: one line from main()


def add_model(p, random_weights: bool = False) -> None:
    """``--model`` (the same meaning for every command: :func:`resolve_model`); with
    ``random_weights``, also ``--random-weights`` for the commands where weights do not matter."""
    p.add_argument("--model", default=None, help=MODEL_HELP)
    if random_weights:
        p.add_argument("--random-weights", action="store_true",
                       help="build --model's shape (a variant name) with random weights instead of loading weights "
                            "(speed and FLOPs do not depend on them; nothing is downloaded)")


def add_device(p) -> None:
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available, else cpu)")


def add_size(p, old_names: tuple[str, str] | None = None) -> None:
    """The resize of each image (the one rule, :func:`yolos.resize.resize_shape`). ``old_names``:
    earlier spellings of the two options, still accepted but not shown in ``--help``."""
    p.add_argument("--short-side", type=image_side, default=None,
                   help="resize each image's short side to this (default: the model's evaluation size)")
    p.add_argument("--long-side", type=image_side, default=None,
                   help="cap the long side at this (default: the model's evaluation size)")
    for name, dest in zip(old_names or (), ("short_side", "long_side")):
        p.add_argument(name, dest=dest, type=image_side, default=None, help=argparse.SUPPRESS)


def add_data(p, required: bool = True, split: str = "val") -> None:
    p.add_argument("--data", required=required, default=None, help=f"{_field_help('data')} (its {split} split is used)")


def _field_help(name: str) -> str:
    """The help of a TrainConfig field: options that training shares are described once, there."""
    import dataclasses

    from ..train.config import TrainConfig

    return next(f.metadata["help"] for f in dataclasses.fields(TrainConfig) if f.name == name)


def add_val_fraction(p) -> None:
    p.add_argument("--val-fraction", type=fraction, default=None, metavar="F", help=_field_help("val_fraction"))


def add_class_map(p) -> None:
    p.add_argument("--class-map", default=None, metavar="MODEL=DATA,...", help=_field_help("class_map"))


def class_map(args) -> dict:
    """``--class-map`` as ``{model name: dataset name}`` (a ValueError names the option)."""
    from ..data.classes import parse_class_map

    return parse_class_map(getattr(args, "class_map", None))


def resolve_model(name: str | None, random_weights: bool = False, device=None):
    """``(model, label)`` for a ``--model`` argument (:func:`yolos.api.load_model`)."""
    from ..api import load_model

    return load_model(name, random_weights, device)
