"""What a training run is built from: the transforms of a variant, the datasets of the config's
data, and the model (from scratch, a DeiT/ViT backbone, a YOLOS checkpoint, or a resumed state)."""
from __future__ import annotations

from pathlib import Path

from ..errors import DatasetError
from ..model import create_model, eval_sizes, get_variant
from .config import TrainConfig


def _transforms(cfg: TrainConfig, variant_name: str, split: str):
    """hustvl/YOLOS augmentation (train) or the fixed eval resize of a variant, with the size overrides."""
    from ..data import transforms as T

    v = get_variant(variant_name)
    if split == "train":
        scales = list(cfg.train_sizes or v.train_scales)
        max_size = cfg.train_max_size or max(v.train_max_size, max(scales))
        if not cfg.augment:  # deterministic: one resize to the largest training size
            return T.make_transforms("val", eval_size=(max(scales), max_size))
        crop_resize, crop_size = T.crop_branch_for_scales(scales)
        return T.make_transforms("train", scales=scales, max_size=max_size,
                                 crop_resize=crop_resize, crop_size=crop_size)
    short, long = eval_sizes(variant_name, "paper")
    size = cfg.eval_size or short
    max_size = cfg.eval_max_size or max(long, size)
    return T.make_transforms("val", eval_size=(size, max_size))


def _resolve_model_source(cfg: TrainConfig) -> str:
    """'scratch', 'yolos' (a detector checkpoint / hub id) or 'imagenet' (DeiT/ViT backbone)."""
    if not cfg.init:
        return "scratch"
    if cfg.init_kind in ("yolos", "imagenet"):
        return cfg.init_kind
    if cfg.init_kind != "auto":
        raise ValueError(f"init_kind must be auto, yolos or imagenet, not {cfg.init_kind!r}")
    p = Path(cfg.init)
    if p.is_dir() or not p.exists():
        return "yolos"  # transformers directory or hub id
    from ..checkpoint.safe_io import read_state_dict

    state, meta = read_state_dict(p)
    if "yolos_config" in meta or any("det_token" in k for k in state):
        return "yolos"
    return "imagenet"


def same_label_space(model_config, dataset) -> bool:
    """True when the model's class head already means the dataset's labels (same count, same
    names wherever the model has names): then a checkpoint is fine-tuned with its head kept."""
    if model_config.num_classes != dataset.num_classes:
        return False
    names = model_config.class_names or {}
    return all(names.get(label, name) == name for label, name in dataset.class_names.items())


def build_datasets(cfg: TrainConfig, variant_name: str):
    """(DatasetConfig, train, val or None). Labels: COCO's 91-id space when the categories are
    COCO's, contiguous 0..K-1 otherwise (CocoDetection's auto mode). A synthetic train split
    renders its images (fresh every epoch unless ``fresh: false``) with labels that must match
    the val split's categories."""
    from ..data.coco import CocoDetection
    from ..data.dataset_config import resolve_dataset

    dc = resolve_dataset(cfg.data)
    train_transforms = _transforms(cfg, variant_name, "train")
    if dc.train_synthetic is not None:
        from ..data.synthetic import synthetic_from_config

        train = synthetic_from_config(dc.train_synthetic, dc.source, train_transforms)
        if cfg.max_train_images:
            train.num_images = min(train.num_images, cfg.max_train_images)
    else:
        train = CocoDetection(dc.train_images, dc.train_annotations, names=dc.names,
                              transforms=train_transforms)
        if cfg.max_train_images:
            train.ids = train.ids[: cfg.max_train_images]
    if train.num_classes == 0:
        raise DatasetError(f"{dc.train_annotations or dc.source}: 'categories' is empty: there is "
                           f"nothing to learn")
    val = None
    if dc.val_annotations:
        val = CocoDetection(dc.val_images, dc.val_annotations, names=dc.names,
                            transforms=_transforms(cfg, variant_name, "val"))
        if cfg.max_val_images:
            val.ids = val.ids[: cfg.max_val_images]
        if dc.train_synthetic is not None and val.class_names != train.class_names:
            raise DatasetError(f"{dc.source}: the synthetic train split's classes {train.class_names} "
                               f"differ from the val split's {val.class_names} ({dc.val_annotations})")
    return dc, train, val


def build_model(cfg: TrainConfig, state: dict | None, log):
    """The model to train, the datasets matching its label space, and the variant it was built
    as (a YOLOS checkpoint's own, else ``cfg.model``)."""
    from ..config import ModelConfig
    from ..model import YOLOS

    if state is not None:  # resume: the architecture comes from the state
        model = YOLOS(ModelConfig.from_dict(state["model_config"]))
        model.load_state_dict(state["model"])
        variant = cfg.variant or cfg.model
        dc, train, val = build_datasets(cfg, variant)
        return model, dc, train, val, variant
    source = _resolve_model_source(cfg)
    variant = cfg.model
    if source == "yolos":
        from ..checkpoint import from_pretrained

        model = from_pretrained(cfg.init).train()
        variant = model.config.variant or cfg.model
        dc, train, val = build_datasets(cfg, variant)
        if same_label_space(model.config, train):
            log(f"keeping the checkpoint's class head ({model.config.num_classes} classes)")
        else:
            model.reset_heads(train.num_classes, dict(train.class_names))
            had = len(model.config.class_names or {}) or "?"
            log(f"new class head for {train.num_classes} classes (checkpoint had {had} names)")
    else:
        dc, train, val = build_datasets(cfg, variant)
        overrides = {"num_classes": train.num_classes, "class_names": dict(train.class_names)}
        if cfg.num_det_tokens:
            overrides["num_det_tokens"] = cfg.num_det_tokens
        if cfg.patch_size:
            overrides["patch_size"] = cfg.patch_size
        overrides.update(cfg.model_overrides)
        model = create_model(variant, **overrides)
        if source == "scratch" and (cfg.scratch_init or cfg.anchors or cfg.head_priors):
            from .recipe import prepare_scratch_model

            log("from scratch: " + prepare_scratch_model(
                model, train, scratch_init=cfg.scratch_init, anchors=cfg.anchors,
                head_priors=cfg.head_priors))
        if source == "imagenet":
            from ..checkpoint.deit import load_imagenet_backbone

            report = load_imagenet_backbone(model, cfg.init, seed=cfg.seed)
            log(f"backbone initialized from {cfg.init}: {report}")
    return model, dc, train, val, variant
