"""Export to ONNX / TorchScript with the position embeddings baked in for one input size."""
from .exporter import FORMATS, BakedYOLOS, ExportError, check_size, export_model

__all__ = ["FORMATS", "BakedYOLOS", "ExportError", "check_size", "export_model"]
