"""Defaults shared by the Python API and the CLI: the bundled model and image (evaluation sizes:
:func:`yolos.model.eval_sizes`)."""
from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "assets"
# A micro YOLOS trained on the synthetic shapes set and an example image: the offline default
# for `yolos predict` without --model / SOURCE (no hub access needed).
DEFAULT_MODEL = ASSETS / "yolos-micro-shapes.safetensors"
DEFAULT_IMAGE = ASSETS / "shapes.jpg"
