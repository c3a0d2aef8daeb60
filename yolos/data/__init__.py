"""Datasets, ORIG augmentation, collation, synthetic data and dataset YAML resolution."""
from .coco import CocoDetection
from .collate import collate_fn
from .dataset_config import DatasetConfig, resolve_dataset
from .synthetic import write_synthetic_dataset
from .transforms import make_transforms, transforms_for_variant

__all__ = ["CocoDetection", "collate_fn", "DatasetConfig", "resolve_dataset",
           "write_synthetic_dataset", "make_transforms", "transforms_for_variant"]
