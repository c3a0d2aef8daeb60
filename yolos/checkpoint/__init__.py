"""Checkpoint formats: transformers directories and hub ids, original hustvl/YOLOS ``.pth``,
our single-file ``.safetensors``, and ImageNet DeiT/ViT backbones for fine-tuning.

    model = from_pretrained("hustvl/yolos-small")      # or "yolos-s", a directory, a file
    report = load_imagenet_backbone(create_model("yolos-ti"), "deit_tiny_patch16_224.pth")
"""
from ..coco_names import COCO_ID2LABEL
from .deit import BackboneLoadReport, load_imagenet_backbone
from .hf import config_from_hf, config_to_hf, hf_to_ours, ours_to_hf, save_hf_directory
from .loader import download_from_hub, from_pretrained, load_file, load_hf_directory
from .native import load_native, save_native
from .original import load_original

__all__ = [
    "from_pretrained", "load_hf_directory", "load_file", "download_from_hub", "load_native",
    "save_native", "load_original", "load_imagenet_backbone", "BackboneLoadReport",
    "save_hf_directory", "hf_to_ours", "ours_to_hf", "config_from_hf", "config_to_hf",
    "COCO_ID2LABEL",
]
