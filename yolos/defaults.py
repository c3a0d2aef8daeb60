"""The user-facing defaults, each named once: the commands, the Python API, the server and its web
page (which reads the threshold from ``/info``) take them from here. Evaluation sizes are the
model's own (:func:`yolos.model.eval_sizes`)."""
from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
# A micro YOLOS trained on synthetic shapes and an example image, shipped in the package: the
# offline default model (named "bundled" wherever a model is named) and image.
DEFAULT_MODEL = ASSETS / "yolos-micro-shapes.safetensors"
DEFAULT_IMAGE = ASSETS / "shapes.jpg"

THRESHOLD = 0.5  # a detection's score must exceed it (transformers' object-detection pipeline's)
MAX_PIXELS = 40_000_000  # larger images are refused from their header ($YOLOS_MAX_PIXELS, --max-pixels)
HOST = "127.0.0.1"  # the server binds loopback unless told otherwise
PORT = 8000
MAX_IMAGE_MB = 20.0  # the largest image file the server accepts
MAX_QUEUE = 64  # requests that may wait per server worker
MAX_BATCH = 8  # images of one size run together (predict, the server)
MAX_INFLIGHT_MEGAPIXELS = 100.0  # decoded pixels a server worker holds at once
VAL_FRACTION = 0.1  # the share of train held out when a dataset has no val split

__all__ = ["DEFAULT_MODEL", "DEFAULT_IMAGE", "THRESHOLD", "MAX_PIXELS", "HOST", "PORT", "MAX_IMAGE_MB",
           "MAX_QUEUE", "MAX_BATCH", "MAX_INFLIGHT_MEGAPIXELS", "VAL_FRACTION"]
