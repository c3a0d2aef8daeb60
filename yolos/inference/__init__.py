"""Inference: image loading, preprocessing (transformers-identical), post-processing, prediction.

    from yolos.inference import predict, preprocess, postprocess, Detections, load_image
"""
from ..images import load_image
from ..model.variants import eval_sizes
from ..resize import resize_shape
from .detections import Detections
from .postprocess import postprocess
from .predictor import iter_predict, predict
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, preprocess

__all__ = [
    "load_image", "preprocess", "postprocess", "predict", "iter_predict", "Detections",
    "resize_shape", "eval_sizes", "IMAGENET_MEAN", "IMAGENET_STD",
]
