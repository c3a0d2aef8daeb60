"""yolos: YOLOS object detection (Fang et al., NeurIPS 2021), numerically identical to
transformers' ``YolosForObjectDetection``, with training, COCO evaluation, analysis and export.

    import yolos
    model = yolos.from_pretrained("hustvl/yolos-small")   # or a directory, .pth, .safetensors
    detections = model.predict("image.jpg")
"""
from __future__ import annotations

from .config import ModelConfig
from .errors import CheckpointError, DatasetError, ImageError, YolosError
from .model import VARIANTS, YOLOS, get_variant

__version__ = "0.1.0"

# Names resolved on first use so that ``import yolos`` stays light (DEVELOPING.md, the layers).
_LAZY = {
    "from_pretrained": ("yolos.api", "from_pretrained"),
    "create_model": ("yolos.api", "create_model"),
    "Detector": ("yolos.api", "Detector"),
    "preprocess": ("yolos.inference.preprocess", "preprocess"),
    "postprocess": ("yolos.inference.postprocess", "postprocess"),
    "load_image": ("yolos.images", "load_image"),
    "set_max_pixels": ("yolos.images", "set_max_pixels"),
    "Detections": ("yolos.inference.detections", "Detections"),
    "predict": ("yolos.inference.predictor", "predict"),
    "compile_for": ("yolos.export.engines", "compile_for"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'yolos' has no attribute {name!r}")


__all__ = [
    "ModelConfig", "YOLOS", "VARIANTS", "get_variant", "YolosError",
    "CheckpointError", "DatasetError", "ImageError", *_LAZY,
]
