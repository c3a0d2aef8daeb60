"""The options the commands share, declared once (``add_model``, ``add_device``, ``add_size``,
``add_data``), what ``--model`` means for all of them (:func:`resolve_model`), and argparse
types built on :mod:`yolos.validate`, so every command refuses a bad option the same way when
it starts: ``yolos predict: error: argument --threshold: expected ...``."""
from __future__ import annotations

import argparse
from pathlib import Path

from .. import defaults, validate

MODEL_HELP = ("checkpoint: a .safetensors or original .pth file, a transformers folder, a hub id, or a variant name "
              "(yolos-ti, yolos-s, yolos-s-300, yolos-s-dwr, yolos-b: its released weights); default: the bundled "
              "micro model")


def typed(check, **kwargs):
    """An argparse type from a :mod:`yolos.validate` check (its message becomes argparse's)."""
    def parse(text: str):
        try:
            return check(text, "", **kwargs)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err).lstrip(": ")) from None

    parse.__name__ = check.__name__  # argparse names the type in some messages
    return parse


threshold = typed(validate.threshold)
positive_int = typed(validate.positive_int)
non_negative_int = typed(validate.non_negative_int)
positive_float = typed(validate.positive_float)
non_negative_float = typed(validate.non_negative_float)
image_side = typed(validate.image_side)
fraction = typed(validate.fraction)
port = typed(validate.port)
dtype = typed(validate.dtype)


def add_threshold(p, name: str = "--threshold", help: str = "keep scores above this, 0..1") -> None:
    """A score threshold option with the one default (:data:`yolos.defaults.THRESHOLD`)."""
    p.add_argument(name, type=threshold, default=defaults.THRESHOLD, help=f"{help} (default {defaults.THRESHOLD:g})")


def add_dtype(p) -> None:
    p.add_argument("--dtype", type=dtype, default=None, metavar="{fp32,bf16,int8}",
                   help="compute dtype: fp32 (default); bf16 (the backbone's matrix products and attention in "
                        "bf16; 2-3x faster on CPUs with AMX); int8 (CPU: the backbone's linear layers with int8 "
                        "weights per channel and activations quantized per call). docs/benchmarks.md gives the "
                        "share of images whose detections equal fp32's for each")


RUNTIMES = ("torch", "onnxruntime", "openvino", "auto")  # yolos.export.engines.RUNTIME_CHOICES


def add_runtime(p) -> None:
    p.add_argument("--runtime", choices=RUNTIMES, default="torch",
                   help="what runs the network: torch (default); onnxruntime or openvino (the model's any-size "
                        "ONNX export, made once and cached by its weights; CPU; --dtype fp32, fp16 or int8 picks "
                        "the exported precision); auto (the fastest on this machine whose detections equal "
                        "torch fp32's, measured once and kept). Decoding, resize, batching and post-processing "
                        "stay the same")
    p.add_argument("--calibration", default=None, metavar="DIR",
                   help="images to calibrate OpenVINO's int8 on (--runtime openvino --dtype int8; NNCF's "
                        "post-training quantization, the first 300 images of DIR)")


def check_runtime(args) -> None:
    """Refuse, before any model loads or folder is claimed, a --runtime whose package is missing."""
    runtime = getattr(args, "runtime", "torch")
    if runtime in ("onnxruntime", "openvino"):
        from ..export.engines import RuntimeUnavailable, missing

        why = missing(runtime)
        if why:
            raise RuntimeUnavailable(why)
    if getattr(args, "calibration", None):
        calibration_images(args.calibration)


def calibration_images(folder) -> list:
    """The image files of ``--calibration DIR`` (a ValueError names the option)."""
    from ..images import IMAGE_EXTENSIONS

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--calibration: {folder} is not a folder of images")
    files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
    if not files:
        raise ValueError(f"--calibration: no images in {folder}")
    return files


def apply_runtime(model, args, say=print, calibration=None):
    """The network ``--runtime`` runs for ``model`` (:func:`yolos.export.engines.compile_for`);
    with an exported network the dtype is its own, so ``args.dtype`` is then cleared.
    ``calibration``: a callable giving images for a calibrated int8 when ``--calibration`` is
    not given (called only then)."""
    runtime = getattr(args, "runtime", "torch")
    if runtime == "torch":
        return model
    from ..export.engines import compile_for

    if getattr(args, "calibration", None):
        calibration = calibration_images(args.calibration)
    elif callable(calibration) and runtime == "openvino" and str(args.dtype).endswith("qint8"):
        calibration = calibration()
    else:
        calibration = None if callable(calibration) else calibration
    network = compile_for(model, runtime, args.dtype, say=say, calibration=calibration)
    if network is not model:
        args.dtype = None
    return network


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


# ----------------------------------------------------------------------------- shared options
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
    p.add_argument("--data", required=required, default=None,
                   help=f"dataset: a YAML (ours or a YOLO data.yaml) or a folder in COCO, YOLO or Pascal VOC layout "
                        f"(its {split} split is used)")


VAL_FRACTION_HELP = ("for a dataset with no val split: the share of its images held out for validation, "
                     "chosen by file name and seed so that train, val and data check hold out the same ones "
                     "(default 0.1; 0: validate on the training images)")
CLASS_MAP_HELP = ("map model classes to dataset classes by hand where their names differ: MODEL=DATA pairs "
                  "separated by commas (several model classes may name one dataset class: merged), or a YAML "
                  "file of such pairs. Every other class is matched by name (case, spaces, _ and - aside)")


def add_val_fraction(p) -> None:
    p.add_argument("--val-fraction", type=fraction, default=None, metavar="F", help=VAL_FRACTION_HELP)


def add_class_map(p) -> None:
    p.add_argument("--class-map", default=None, metavar="MODEL=DATA,...", help=CLASS_MAP_HELP)


def class_map(args) -> dict:
    """``--class-map`` as ``{model name: dataset name}`` (a ValueError names the option)."""
    from ..data.classes import parse_class_map

    return parse_class_map(getattr(args, "class_map", None))


def resolve_model(name: str | None, random_weights: bool = False, device=None):
    """``(model, label)`` for a ``--model`` argument: None is the bundled model; anything else goes
    through :func:`yolos.from_pretrained` (a file, a folder, a hub id, a variant name: its released
    weights). With ``random_weights`` the argument must be a variant name, built with random weights."""
    from ..checkpoint import from_pretrained
    from ..inference.defaults import DEFAULT_MODEL
    from ..model import create_model, get_variant

    if random_weights:
        if name is None:
            raise ValueError("--random-weights: name the variant with --model (yolos-ti, yolos-s, ..., micro)")
        try:
            get_variant(name)
        except KeyError:
            raise ValueError(f"--random-weights: --model must be a variant name, got {name!r}") from None
        return create_model(name).to(device or "cpu").eval(), f"{name} (random weights)"
    if name is None:
        if not DEFAULT_MODEL.is_file():
            raise FileNotFoundError(f"the bundled model {DEFAULT_MODEL} is missing; pass --model")
        return from_pretrained(DEFAULT_MODEL, device=device or "cpu"), DEFAULT_MODEL.stem
    return from_pretrained(name, device=device or "cpu"), Path(str(name).rstrip("/")).name
