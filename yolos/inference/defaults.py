"""Defaults shared by the Python API and the CLI: the bundled model and image (evaluation sizes:
:func:`yolos.model.eval_sizes`)."""
from __future__ import annotations

from ..checkpoint.loader import BUNDLED

# A micro YOLOS trained on the synthetic shapes set and an example image: the offline default
# for `yolos predict` without --model / SOURCE (no hub access needed). "bundled" names it.
DEFAULT_MODEL = BUNDLED
DEFAULT_IMAGE = BUNDLED.parent / "shapes.jpg"
