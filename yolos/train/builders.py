"""What a training run is built from: the model it starts from (random weights, a DeiT/ViT
backbone, a YOLOS checkpoint, or a resumed state), the transforms of its resolved config, and the
datasets of its data, each split checked and in the model's label space."""
from __future__ import annotations

from pathlib import Path

from ..checkpoint import from_pretrained
from ..checkpoint.deit import load_imagenet_backbone
from ..checkpoint.safe_io import read_state_dict
from ..config import ModelConfig
from ..data import transforms as T
from ..data.dataset_config import resolve_dataset
from ..data.synthetic import synthetic_from_config
from ..errors import DatasetError
from ..model import YOLOS, create_model
from .config import TrainConfig
from .recipe import dataset_priors, init_head_priors, prepare_scratch_model


def _transforms(cfg: TrainConfig, split: str):
    """hustvl/YOLOS augmentation (train) or the fixed eval resize, at the resolved config's sizes."""
    if split == "train":
        scales = list(cfg.train_sizes)
        if not cfg.augment:  # deterministic: one resize to the largest training size
            return T.make_transforms("val", eval_size=(max(scales), cfg.train_max_size))
        crop_resize, crop_size = T.crop_branch_for_scales(scales)
        return T.make_transforms("train", scales=scales, max_size=cfg.train_max_size,
                                 crop_resize=crop_resize, crop_size=crop_size)
    return T.make_transforms("val", eval_size=(cfg.eval_size, cfg.eval_max_size))


def init_kind(cfg: TrainConfig) -> str:
    """'scratch', 'yolos' (a detector checkpoint / hub id) or 'imagenet' (DeiT/ViT backbone)."""
    if not cfg.init:
        return "scratch"
    if cfg.init_kind in ("yolos", "imagenet"):
        return cfg.init_kind
    p = Path(cfg.init)
    if p.is_dir() or not p.exists():
        return "yolos"  # transformers directory or hub id
    state, meta = read_state_dict(p)
    if "yolos_config" in meta or any("det_token" in k for k in state):
        return "yolos"
    return "imagenet"


def starting_model(cfg: TrainConfig, state: dict | None):
    """``(model or None, variant name)``: the resumed model, or the YOLOS checkpoint of --init,
    and the variant the run trains (the checkpoint's own; else --model). None: the model is
    built later, from the resolved config (random weights, or an ImageNet backbone)."""
    if state is not None:
        model = YOLOS(ModelConfig.from_dict(state["model_config"]))
        model.load_state_dict(state["model"])
        return model, cfg.variant or model.config.variant or cfg.model
    if init_kind(cfg) == "yolos":
        model = from_pretrained(cfg.init).train()
        return model, model.config.variant or cfg.model
    return None, cfg.model


def same_label_space(model_config, dataset) -> bool:
    """True when the model's class head already means the dataset's labels: the same count, and
    the same names wherever the model has names (else the same category ids where the model
    stores them). Then a checkpoint is fine-tuned with its head kept (and the dataset's ids)."""
    if model_config.num_classes != dataset.num_classes:
        return False
    names = model_config.class_names
    if names:
        return all(names.get(label, name) == name for label, name in dataset.class_names.items())
    ids = dataset.category_ids
    return model_config.category_ids is None or ids is None or list(model_config.category_ids) == list(ids)


def label_space(dataset) -> dict:
    """The keyword arguments that build another split (or a model) in ``dataset``'s label space."""
    if dataset.category_ids is None:
        return {"keep_category_ids": True}
    return {"category_ids": list(dataset.category_ids)}


def build_datasets(cfg: TrainConfig, category_ids=None):
    """(DatasetConfig, train, val or None) of a resolved config, each split checked
    (:mod:`yolos.data.check`; a fatal problem raises a DatasetError naming the file before
    anything is trained). Labels: COCO's 91-id space when the categories are COCO's, contiguous
    0..K-1 otherwise (CocoDetection's auto mode), or ``category_ids`` (a resumed model's). A
    synthetic train split renders its images (fresh every epoch unless ``fresh: false``) with
    labels that must match the val split's."""
    dc = resolve_dataset(cfg.data)
    train_transforms = _transforms(cfg, "train")
    if dc.train_synthetic is not None:
        train = synthetic_from_config(dc.train_synthetic, dc.source, train_transforms)
        if cfg.max_train_images:
            train.num_images = min(train.num_images, cfg.max_train_images)
    else:
        train = dc.dataset("train", train_transforms, category_ids=category_ids)
        if cfg.max_train_images:
            train.ids = train.ids[: cfg.max_train_images]
    if train.num_classes == 0:
        raise DatasetError(f"{dc.source}: 'categories' is empty: there is nothing to learn")
    if len(train) == 0:
        raise DatasetError(f"{dc.source}: no training images")
    val = None
    if dc.val is not None:
        # A rendered train split is compared with the val split's own classes; a read one gives
        # the val split its label space (a val category it lacks could never be detected).
        space = {} if dc.train_synthetic is not None and category_ids is None else label_space(train)
        val = dc.dataset("val", _transforms(cfg, "val"), **space)
        if cfg.max_val_images:
            val.ids = val.ids[: cfg.max_val_images]
        if dc.train_synthetic is not None and val.class_names != train.class_names:
            raise DatasetError(f"{dc.source}: the synthetic train split's classes {train.class_names} "
                               f"differ from the val split's {val.class_names} ({dc.val_annotations})")
    return dc, train, val


def prepare_model(cfg: TrainConfig, start, state: dict | None, log):
    """The model to train (``start``: :func:`starting_model`'s, or None) and its datasets
    ``(model, DatasetConfig, train, val)``, for a resolved config."""
    if state is not None:
        dc, train, val = build_datasets(cfg, start.config.category_ids)
        if not same_label_space(start.config, train):
            raise DatasetError(f"{dc.source}: the dataset's classes {train.class_names} are not the run's "
                               f"{start.config.class_names}; a resumed run cannot change its classes (start a new "
                               f"run with --init {cfg.out}/last.safetensors)")
        return start, dc, train, val
    dc, train, val = build_datasets(cfg)
    if start is not None:  # a YOLOS checkpoint
        model = start
        if same_label_space(model.config, train):
            log(f"keeping the checkpoint's class head ({model.config.num_classes} classes)")
            if train.category_ids is not None and model.config.category_ids != list(train.category_ids):
                model.config = model.config.replace(category_ids=list(train.category_ids))
        else:
            had = len(model.config.class_names or {}) or "?"
            model.reset_heads(train.num_classes, dict(train.class_names), train.category_ids)
            log(f"new class head for {train.num_classes} classes (checkpoint had {had} names)")
            if cfg.head_priors:
                objects, _ = dataset_priors(train)
                init_head_priors(model, objects, box=False)
                log(f"class head at the data's prior ({objects:.2f} objects per image)")
    else:
        overrides = {"num_classes": train.num_classes, "class_names": dict(train.class_names),
                     "category_ids": train.category_ids}
        if cfg.num_det_tokens:
            overrides["num_det_tokens"] = cfg.num_det_tokens
        if cfg.patch_size:
            overrides["patch_size"] = cfg.patch_size
        overrides.update(cfg.model_overrides)
        model = create_model(cfg.variant, **overrides)
        if cfg.init:  # an ImageNet backbone
            report = load_imagenet_backbone(model, cfg.init, seed=cfg.seed)
            log(f"backbone initialized from {cfg.init}: {report}")
        elif cfg.scratch_init or cfg.anchors or cfg.head_priors:
            log("from scratch: " + prepare_scratch_model(model, train, scratch_init=cfg.scratch_init,
                                                         anchors=cfg.anchors, head_priors=cfg.head_priors))
    # what its [DET] tokens learn under, kept with the weights (a later --recipe finetune keeps it)
    model.config = model.config.replace(anchor_matching=cfg.anchor_matching or 0.0)
    return model, dc, train, val


__all__ = ["starting_model", "prepare_model", "build_datasets", "same_label_space", "label_space", "init_kind"]
