"""COCO evaluation (faster-coco-eval) and the evaluation loop."""
from .coco_eval import STAT_NAMES, coco_evaluate, gather_results
from .evaluate import evaluate, predict_coco_results

__all__ = ["STAT_NAMES", "coco_evaluate", "gather_results", "evaluate", "predict_coco_results"]
