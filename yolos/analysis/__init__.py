"""The paper's analyses as tools: FLOPs (:mod:`.flops`), model scaling (:mod:`.scaling`),
[DET]-token inspection (:mod:`.det_tokens`), attention maps (:mod:`.attention`), figures (:mod:`.plots`).

Heavy pieces (matplotlib, the data pipeline) are imported by the functions that need them.
"""
from .flops import FlopCount, classifier_flops, dataset_flops, detector_flops, detector_params, model_ratio
from .scaling import Shape, scale, scale_to_flops

__all__ = ["FlopCount", "classifier_flops", "dataset_flops", "detector_flops", "detector_params",
           "model_ratio", "Shape", "scale", "scale_to_flops"]
