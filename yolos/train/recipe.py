"""Training recipes: named presets of :class:`TrainConfig` values, and the head-prior init.

``paper`` is the original recipe (AdamW, the variant's lr and batch, per-epoch cosine, clip 0.1,
ORIG init) and stays the default, above all when fine-tuning from DeiT or YOLOS checkpoints.
``scratch`` is what the convergence study (docs/training.md, ``benchmarks/convergence_study.py``)
found to leave DETR's plateau fast when a small YOLOS starts from random weights.
A recipe only fills options the user left unset; an option given on the command line wins.
"""
from __future__ import annotations

import dataclasses
import math

import torch

# Values a recipe sets (TrainConfig field -> value). Fields that are None in TrainConfig mean
# "the variant's value"; a recipe replaces those defaults, never an explicit user choice.
RECIPES: dict[str, dict] = {
    "paper": {},
    "scratch": {
        "lr": 1e-3,
        "warmup_steps": 300,
        "head_priors": True,
        "bf16": True,
        "patch_size": 8,
    },
}


# What an option left unset (None) means when no recipe sets it.
UNSET_DEFAULTS = {"warmup_steps": 0, "bf16": False, "head_priors": False}


def resolve_recipe(cfg):
    """A copy of ``cfg`` (a TrainConfig) with every unset option the recipe names filled in,
    then the remaining unset recipe options at :data:`UNSET_DEFAULTS`. ``lr``, ``patch_size`` and
    ``num_det_tokens`` left unset after that mean the variant's value."""
    if cfg.recipe not in RECIPES:
        raise ValueError(f"--recipe: unknown recipe {cfg.recipe!r}; known: {', '.join(RECIPES)}")
    changes = {k: v for k, v in RECIPES[cfg.recipe].items() if getattr(cfg, k) is None}
    changes.update({k: v for k, v in UNSET_DEFAULTS.items()
                    if getattr(cfg, k) is None and k not in changes})
    return dataclasses.replace(cfg, **changes)


@torch.no_grad()
def init_head_priors(model, objects_per_image: float, box_size: float = 0.2) -> None:
    """Start the heads at the data's priors instead of PyTorch's default outputs (only the
    last layers' biases change; their default random weights keep the [DET] tokens distinct).

    * Class head: the bias gives the softmax ``p(no object) = 1 - objects_per_image / T`` and
      spreads the rest evenly over the classes (RetinaNet's prior-probability trick, for a
      softmax), instead of ``1 / (K + 1)`` each.
    * Box head: the bias centres the boxes on ``(0.5, 0.5, box_size, box_size)`` (normalized
      cxcywh) instead of ``(0.5, 0.5, 0.5, 0.5)``: a plausible size instead of half the image.

    ``objects_per_image``: the mean number of objects per training image (clamped to
    ``[0.5, T - 0.5]``); ``box_size``: a typical side as a fraction of the image.
    """
    t = model.config.num_det_tokens
    k = model.config.num_classes
    p_obj = min(max(objects_per_image, 0.5), t - 0.5) / t
    cls_bias = model.class_head.layers[-1].bias
    cls_bias.fill_(math.log(p_obj / k))
    cls_bias[-1] = math.log(1 - p_obj)
    logit = math.log(box_size / (1 - box_size))
    box_bias = model.box_head.layers[-1].bias
    box_bias.copy_(torch.tensor([0.0, 0.0, logit, logit], dtype=box_bias.dtype))


@torch.no_grad()
def init_scratch_weights(model, token_std: float = 1.0) -> None:
    """An init for training from random weights, in place of ORIG's (which is made for loading
    DeiT weights over it): xavier-uniform backbone Linears (MAE, DETR), the sin-cos position
    code at full scale (:func:`init_sincos_pos_embed`), and [CLS]/[DET] tokens at
    ``N(0, token_std)``.

    Why: with trunc-normal(0.02) weights a narrow ViT (width 128) starts with attention logits
    of ~0.05, so every token averages all patches alike; position embeddings of 0.02 beside
    patch embeddings of ~0.6 carry almost no position; and [DET] tokens of 0.02 are washed out
    by the first attention output, so all of them predict the same box (DETR's plateau).
    """
    for block in model.blocks:
        for m in block.modules():
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(m.weight)
                torch.nn.init.zeros_(m.bias)
    init_sincos_pos_embed(model, scale=1.0)
    torch.nn.init.normal_(model.det_tokens, std=token_std)
    torch.nn.init.normal_(model.cls_token, std=token_std)


@torch.no_grad()
def init_sincos_pos_embed(model, scale: float = 0.1) -> None:
    """Start the grid part of ``pos_embed`` (and every ``mid_pos_embed``) at a 2-D sine-cosine
    code (MAE's fixed embedding: half the channels encode the row, half the column, at
    frequencies ``1 / 10000^(2i / (D/2))``), times ``scale``. The [CLS] and [DET] entries keep
    their random init. From scratch, random embeddings carry almost no position, and the
    [DET] tokens cannot tell where a patch is until they are learned; this is a start, the
    embeddings stay trainable."""
    gh, gw = model.config.grid_size
    d = model.config.hidden_size
    if d % 4:
        raise ValueError(f"sin-cos position embeddings need hidden_size divisible by 4, got {d}")
    quarter = d // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows = torch.arange(gh, dtype=torch.float64)[:, None].expand(gh, gw).reshape(-1, 1) * omega
    cols = torch.arange(gw, dtype=torch.float64)[None, :].expand(gh, gw).reshape(-1, 1) * omega
    code = torch.cat([rows.sin(), rows.cos(), cols.sin(), cols.cos()], dim=1) * scale  # [gh*gw, D]
    model.pos_embed[0, 1:1 + gh * gw] = code.to(model.pos_embed.dtype)
    if model.mid_pos_embed is not None:
        model.mid_pos_embed[:, 0, 1:1 + gh * gw] = code.to(model.mid_pos_embed.dtype)


def dataset_priors(dataset, sample: int = 256) -> tuple[float, float]:
    """``(objects per image, typical box side)`` over the first ``sample`` training items: the
    mean number of (non-crowd) boxes and the median of ``sqrt(w * h)`` as a fraction of the
    image side ``sqrt(W * H)``. A COCO dataset is read from its annotations, without decoding."""
    n = min(len(dataset), sample)
    counts, sides = [], []
    if hasattr(dataset, "annotations") and hasattr(dataset, "ids"):  # CocoDetection
        for image_id in dataset.ids[:n]:
            info = dataset.images[image_id]
            anns = [a for a in dataset.annotations[image_id] if not a.get("iscrowd", 0)]
            counts.append(len(anns))
            scale = math.sqrt(info["width"] * info["height"])
            sides += [math.sqrt(max(a["bbox"][2] * a["bbox"][3], 0.0)) / scale for a in anns]
    else:  # any dataset giving normalized cxcywh targets
        for i in range(n):
            boxes = dataset[i][1]["boxes"]
            counts.append(len(boxes))
            sides += (boxes[:, 2] * boxes[:, 3]).clamp(min=0).sqrt().tolist()
    objects = sum(counts) / max(len(counts), 1)
    side = sorted(sides)[len(sides) // 2] if sides else 0.2
    return objects, min(max(side, 0.02), 0.9)
