"""Datasets, hustvl/YOLOS augmentation, collation, synthetic data and dataset YAML resolution."""
from .collate import collate_fn
from .dataset import DetectionDataset
from .dataset_config import DatasetConfig, resolve_dataset
from .transforms import make_transforms, transforms_for_variant


def __getattr__(name: str):
    # Lazy, so that ``python -m yolos.data.synthetic`` does not import the module twice
    # (runpy warns when a package import already loaded the module it is asked to run).
    if name == "write_synthetic_dataset":
        from .synthetic import write_synthetic_dataset

        return write_synthetic_dataset
    raise AttributeError(f"module 'yolos.data' has no attribute {name!r}")


__all__ = ["DetectionDataset", "collate_fn", "DatasetConfig", "resolve_dataset",
           "write_synthetic_dataset", "make_transforms", "transforms_for_variant"]
