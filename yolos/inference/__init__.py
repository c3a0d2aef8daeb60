"""Inference: image loading, preprocessing (transformers-identical), post-processing, prediction.

    from yolos.inference import predict, preprocess, postprocess, Detections, load_image
"""
from .defaults import DEFAULT_IMAGE, DEFAULT_MODEL, eval_sizes
from .detections import Detections
from .images import load_image
from .postprocess import postprocess
from .predictor import iter_predict, predict
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, preprocess
from .resize import resize_shape

__all__ = [
    "load_image", "preprocess", "postprocess", "predict", "iter_predict", "Detections",
    "resize_shape", "eval_sizes", "DEFAULT_MODEL", "DEFAULT_IMAGE", "IMAGENET_MEAN", "IMAGENET_STD",
]
