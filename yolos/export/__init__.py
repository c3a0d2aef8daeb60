"""Export to ONNX / TorchScript with the position embeddings baked in for one input size."""
from .exporter import FORMATS, PRECISIONS, BakedYOLOS, Detector, ExportError, check_export, check_size, export_model

__all__ = ["FORMATS", "PRECISIONS", "BakedYOLOS", "Detector", "ExportError", "check_export", "check_size",
           "export_model"]
