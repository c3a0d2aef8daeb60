"""What a training run is built from: the model it starts from (random weights, a DeiT/ViT
backbone, a YOLOS checkpoint, or a resumed state), the transforms of its resolved config, and the
datasets of its data, each split checked and in the model's label space."""
from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

from ..checkpoint import from_pretrained
from ..checkpoint.deit import load_imagenet_backbone
from ..checkpoint.safe_io import read_state_dict
from ..config import ModelConfig
from ..data import transforms as T
from ..data.cache import cache_budget_problem, size_text
from ..data.classes import config_match, parse_class_map
from ..data.dataset_config import resolve_dataset
from ..data.synthetic import synthetic_from_config
from ..distributed import broadcast_object
from ..errors import DatasetError
from ..model import YOLOS, create_model
from ..model.variants import input_size
from .config import RECIPES, TrainConfig
from .recipe import dataset_priors, init_head_priors, prepare_scratch_model
from .sizes import choose_sizes, sizes_of
from .token_choice import most_matched_tokens


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


def build_datasets(cfg: TrainConfig, labels_from=None, say=print):
    """``(DatasetConfig, train, val or None)``, each split checked (:mod:`yolos.data.check`; a
    fatal problem raises a DatasetError naming the file before anything is trained), without
    transforms yet (the resolved sizes may come from the data: :func:`set_transforms`).

    Labels: COCO's 91-id space when the categories are COCO's, contiguous 0..K-1 otherwise
    (DetectionDataset's auto mode), or a resumed model's (``labels_from``, its ModelConfig: every
    train class must be one of its classes, matched by name). The val split is read in the train
    split's label space, matched by name (a val file that numbers the classes differently is
    read right). A synthetic train split renders its images (fresh every epoch unless
    ``fresh: false``) with labels that must match the val split's."""
    dc = resolve_dataset(cfg.data, cfg.val_fraction)
    say(dc.describe())
    if dc.train_synthetic is not None:
        train = synthetic_from_config(dc.train_synthetic, dc.source)
        if cfg.max_train_images:
            train.num_images = min(train.num_images, cfg.max_train_images)
    else:
        if dc.train is None:
            raise DatasetError(f"{dc.source}: the dataset has no train split")
        train = dc.dataset("train") if labels_from is None else \
            dc.dataset_for_model("train", labels_from, say=say, require_all=True)
        if cfg.max_train_images:
            train.ids = train.ids[: cfg.max_train_images]
    if train.num_classes == 0:
        raise DatasetError(f"{dc.source}: 'categories' is empty: there is nothing to learn")
    if len(train) == 0:
        raise DatasetError(f"{dc.source}: no training images")
    val = None
    if "val" in dc.splits():
        if dc.train_synthetic is not None:
            val = dc.dataset("val") if labels_from is None else dc.dataset_for_model("val", labels_from, say=say)
            if val.class_names != train.class_names:
                raise DatasetError(f"{dc.source}: the synthetic train split's classes {train.class_names} "
                                   f"differ from the val split's {val.class_names} ({dc.val_annotations})")
        else:
            val = dc.dataset_like("val", train, say=say)
        if cfg.max_val_images:
            val.ids = val.ids[: cfg.max_val_images]
        if len(val) == 0:
            raise DatasetError(f"{dc.source}: the val split has no images to evaluate on")
    return dc, train, val


def set_transforms(cfg: TrainConfig, train, val) -> None:
    """Give the datasets the transforms of a resolved config."""
    train.transforms = _transforms(cfg, "train")
    if val is not None:
        val.transforms = _transforms(cfg, "val")


def cache_datasets(cfg: TrainConfig, train, val, say=print) -> dict | None:
    """``--cache``: decode the splits read from files into memory now (:mod:`yolos.data.cache`),
    unless that would take more than half the free memory (counted once per process of this
    machine). Returns the log record (images, bytes, seconds), or None without ``--cache``."""
    if not cfg.cache:
        return None
    # Workers that are not forked (spawn, forkserver) see the training images through shared memory.
    start_method = multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]
    shared = cfg.workers > 0 and start_method != "fork"
    copies = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))  # one cache per process (torchrun)
    record = {"type": "cache", "images": 0, "bytes": 0, "time_s": 0.0}
    for name, ds, in_shared in (("training", train, shared), ("validation", val, False)):
        if ds is None:
            continue
        if not hasattr(ds, "keep_in_memory"):
            say(f"--cache: the {name} images are rendered, not read from files: nothing to keep")
            continue
        nbytes = sum(w * h * 3 for w, h in ds.decoded_sizes().values())
        problem = cache_budget_problem(nbytes * copies, in_shared)
        if problem:
            say(f"--cache: the {len(ds)} {name} images are read from disk: {problem}")
            continue
        began = time.monotonic()
        ds.keep_in_memory(threads=min(8, os.cpu_count() or 1), shared=in_shared)
        seconds = time.monotonic() - began
        say(f"--cache: {len(ds.cache)} {name} images in memory ({size_text(nbytes)}), decoded in {seconds:.1f} s")
        record["images"] += len(ds.cache)
        record["bytes"] += nbytes
        record["time_s"] = round(record["time_s"] + seconds, 3)
    return record


def data_sizes(cfg: TrainConfig, train, start, variant):
    """The sizes ``--sizes-from-data`` chooses (:func:`yolos.train.sizes.choose_sizes`) for a
    read train split, or None (not asked for, a rendered split, or sizes given)."""
    if not (cfg.sizes_from_data or (cfg.sizes_from_data is None and RECIPES[cfg.recipe]["sizes_from_data"])):
        return None
    if not hasattr(train, "images") or (cfg.train_sizes and cfg.eval_size):
        return None
    config = start.config if start is not None else variant.config
    return choose_sizes(*sizes_of(train), input_size(config, "paper"), config.patch_size)


def fit_class_head(model, train, class_map, head_priors: bool, log) -> None:
    """Give a checkpoint's class head the training data's classes (the data's order): the rows of
    the classes it shares by name are kept (:func:`yolos.data.classes.config_match`,
    ``class_map`` first), only new classes start fresh (at the data's prior when
    ``head_priors``). The model then carries the data's names and category ids."""
    match = config_match(model.config, train.categories, class_map, source=train.annotation_file,
                         allow_disjoint=True)
    ids = train.category_ids if train.category_ids is not None else list(range(train.num_classes))
    rows = match.rows_for(ids)
    names = dict(train.class_names)
    if rows == list(range(model.config.num_classes)) and all(
            model.config.label_name(i) == n for i, n in names.items()):
        model.config = model.config.replace(category_ids=train.category_ids)
        log(f"keeping the checkpoint's class head ({model.config.num_classes} classes)")
        return
    model.remap_classes(rows, names, train.category_ids)
    new = [j for j, r in enumerate(rows) if r is None and j in names]
    kept = [names[j] for j, r in enumerate(rows) if r is not None and j in names]
    if kept:
        log(f"class head: {len(kept)} of the checkpoint's classes kept by name ({', '.join(kept[:12])}), "
            f"{len(new)} new ({', '.join(names[j] for j in new[:12]) or 'none'})")
    else:
        log(f"new class head for {len(names)} classes (none is one of the checkpoint's "
            f"{', '.join(list(match.model_names.values())[:12]) or 'unnamed classes'})")
    line = match.summary("the checkpoint")
    if match.by_hand and line:
        log(line)
    if head_priors and new:
        objects, _ = dataset_priors(train)
        init_head_priors(model, objects, box=False, rows=new if kept else None)
        log(f"new class rows at the data's prior ({objects:.2f} objects per image)")


def prepare_model(cfg: TrainConfig, start, train, log, device="cpu"):
    """The model to train for a resolved config: ``start`` (:func:`starting_model`'s: a resumed
    model, or the YOLOS checkpoint of --init, keeping ``--num-det-tokens`` of its [DET] tokens
    (chosen on ``device``) and its class head fitted to the data), else a new one (random
    weights, or an ImageNet backbone)."""
    if start is not None:
        model = start
        if not cfg.resume:
            if cfg.num_det_tokens and cfg.num_det_tokens != model.config.num_det_tokens:
                total = model.config.num_det_tokens
                choice = broadcast_object(most_matched_tokens(model.to(device), train, cfg.num_det_tokens, device))
                model.keep_det_tokens(choice.keep)
                log(choice.describe(total))
            fit_class_head(model, train, parse_class_map(cfg.class_map), cfg.head_priors, log)
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
    # what its [DET] tokens learn under, and the input size it was trained at, kept with the weights
    eval_size = (cfg.eval_size, cfg.eval_max_size)
    keep_size = eval_size != tuple(input_size(cfg.variant, "paper")) or model.config.eval_size is not None
    model.config = model.config.replace(anchor_matching=cfg.anchor_matching or 0.0,
                                        eval_size=eval_size if keep_size else None)
    return model


__all__ = ["starting_model", "prepare_model", "build_datasets", "set_transforms", "data_sizes", "fit_class_head",
           "init_kind"]
