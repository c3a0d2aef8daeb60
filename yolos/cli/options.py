"""argparse types built on :mod:`yolos.validate`, so every command refuses a bad option the
same way when it starts: ``yolos predict: error: argument --threshold: expected ...``."""
from __future__ import annotations

import argparse

from .. import validate


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
port = typed(validate.port)
dtype = typed(validate.dtype)


def add_dtype(p) -> None:
    p.add_argument("--dtype", type=dtype, default=None, metavar="{fp32,bf16}",
                   help="compute dtype: fp32 (default) or bf16 (the backbone's matrix products and attention "
                        "in bf16; 2-3x faster on CPUs with AMX, detections equal to fp32's on ~99%% of images)")


def add_max_pixels(p) -> None:
    p.add_argument("--max-pixels", type=non_negative_int, default=None,
                   help="refuse images above this many pixels (default 40 000 000 or $YOLOS_MAX_PIXELS; 0: no limit)")


def apply_max_pixels(args) -> None:
    if getattr(args, "max_pixels", None) is not None:
        from ..images import set_max_pixels

        set_max_pixels(args.max_pixels)


def check_device(args) -> None:
    """Resolve ``args.device`` now (None -> cuda if available, else cpu), so a device this
    machine lacks is refused before any model is loaded."""
    args.device = str(validate.device(args.device, "--device"))  # ValueError: one line from main()
