"""Defaults shared by the Python API and the CLI: the bundled model and image, evaluation sizes."""
from __future__ import annotations

from pathlib import Path

from ..config import ModelConfig
from ..model import get_variant

ASSETS = Path(__file__).resolve().parents[1] / "assets"
# A micro YOLOS trained on the synthetic shapes set and an example image: the offline default
# for `yolos predict` without --model / SOURCE (no hub access needed).
DEFAULT_MODEL = ASSETS / "yolos-micro-shapes.safetensors"
DEFAULT_IMAGE = ASSETS / "shapes.jpg"

FALLBACK_SIZES = (800, 1333)


def eval_sizes(config: ModelConfig) -> tuple[int, int]:
    """``(short_side, long_side)`` a model of this config is evaluated at.

    The variant's evaluation short side (Ti 512, S/B 800) with transformers' long-side cap of
    1333 for every released variant (the hub preprocessor configs); ``micro`` uses its own
    (128, 128); an unknown variant gets transformers' default 800 / 1333.
    """
    try:
        variant = get_variant(config.variant or "")
    except KeyError:
        return FALLBACK_SIZES
    if variant.hub_id is None:  # project-only variants carry their own evaluation sizes
        return variant.eval_short_side, variant.eval_long_side_orig
    return variant.eval_short_side, 1333
