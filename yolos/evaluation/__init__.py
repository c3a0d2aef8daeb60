"""COCO evaluation (faster-coco-eval) and the evaluation loop."""
from .coco_eval import coco_evaluate, gather_results

__all__ = ["coco_evaluate", "gather_results", "evaluate"]


def __getattr__(name):
    # evaluate imports the inference stack; resolve it on first use.
    if name == "evaluate":
        from .evaluate import evaluate

        return evaluate
    raise AttributeError(f"module 'yolos.evaluation' has no attribute {name!r}")
