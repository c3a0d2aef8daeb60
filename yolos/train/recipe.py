"""The inits the recipes start a model with (the recipes' option values are
:data:`yolos.train.config.RECIPES`): the from-scratch inits the convergence study
(docs/training.md, ``benchmarks/convergence_study.py``) built for a small YOLOS from random
weights, and the heads at the data's priors (also the new class head of ``--recipe finetune``).
"""
from __future__ import annotations

import math

import torch

from .matcher import anchor_centres


@torch.no_grad()
def init_head_priors(model, objects_per_image: float, box_size: float = 0.2, box: bool = True,
                     rows: list[int] | None = None) -> None:
    """Start the heads at the data's priors instead of PyTorch's default outputs (only the
    last layers' biases change; their default random weights keep the [DET] tokens distinct).

    * Class head: the bias gives the softmax ``p(no object) = 1 - objects_per_image / T`` and
      spreads the rest evenly over the classes (RetinaNet's prior-probability trick, for a
      softmax), instead of ``1 / (K + 1)`` each.
    * Box head: the bias centres the boxes on ``(0.5, 0.5, box_size, box_size)`` (normalized
      cxcywh) instead of ``(0.5, 0.5, 0.5, 0.5)``: a plausible size instead of half the image.

    ``objects_per_image``: the mean number of objects per training image (clamped to
    ``[0.5, T - 0.5]``); ``box_size``: a typical side as a fraction of the image; ``box=False``
    leaves a trained box head alone (fine-tuning). ``rows``: set only these classes' biases (the
    new rows of a head that kept others): to the mean bias of the kept ones, which the kept
    no-object bias was trained against.
    """
    t = model.config.num_det_tokens
    k = model.config.num_classes
    p_obj = min(max(objects_per_image, 0.5), t - 0.5) / t
    cls_bias = model.class_head.layers[-1].bias
    kept = [i for i in range(k) if rows is not None and i not in rows]
    if kept:
        cls_bias[rows] = cls_bias[kept].mean()
    else:
        cls_bias.fill_(math.log(p_obj / k))
        cls_bias[-1] = math.log(1 - p_obj)
    if not box:
        return
    logit = math.log(box_size / (1 - box_size))
    box_bias = model.box_head.layers[-1].bias
    box_bias.copy_(torch.tensor([0.0, 0.0, logit, logit], dtype=box_bias.dtype))


@torch.no_grad()
def init_scratch_weights(model, pool_width: float = 1.5, attention_gain: float = 1.0,
                         seed: int = 0) -> None:
    """An init for training from random weights, in place of hustvl/YOLOS's (which exists to load DeiT
    weights over it): every block starts as a local pooling around each token's position, and
    each [DET] token sits at its anchor cell (the grid of :func:`init_box_anchors`).

    The width is split into ``P = head_dim`` position channels and ``D - P`` content channels:

    * position embeddings carry, in the position channels only, random Fourier features of the
      (row, col) position in patch units, ``sqrt(2) [cos(W p), sin(W p)]`` with
      ``W ~ N(0, 1 / pool_width^2)``, so that the dot product of two codes approximates a
      Gaussian kernel of width ``pool_width`` patches; the [DET] entries get the code of their
      anchor cell, the [CLS] entry none;
    * the patch embedding writes only the content channels (PyTorch's default init, scaled to
      unit size); [DET] tokens start near zero, [CLS] at N(0, 1) in the content channels;
    * in every block the query and key projections of every head are the same selection of the
      position channels (times ``attention_gain``), so attention starts as the Gaussian kernel of
      the distance between tokens; values, output projections and MLPs are xavier-uniform.

    All of it is trainable from the first step. Why: with hustvl/YOLOS's trunc-normal(0.02) weights a
    narrow ViT starts with nearly uniform attention and position embeddings far smaller than the
    patch embeddings; every [DET] token then reads a global average of the image and predicts the
    same box whatever the image, and DETR's plateau lasts thousands of steps (docs/training.md).
    """
    c = model.config
    d, heads = c.hidden_size, c.num_heads
    pos_ch = d // heads
    if pos_ch % 2 or pos_ch >= d:
        raise ValueError(f"scratch init needs an even head width below the width, got {pos_ch} of {d}")
    g = torch.Generator().manual_seed(seed)
    freqs = torch.randn(pos_ch // 2, 2, generator=g, dtype=torch.float64) / pool_width

    def code(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:  # [N, D]
        phase = torch.stack([rows.double(), cols.double()], 1) @ freqs.T
        out = torch.zeros(len(rows), d, dtype=torch.float64)
        out[:, :pos_ch] = math.sqrt(2) * torch.cat([phase.cos(), phase.sin()], 1)
        return out

    gh, gw = c.grid_size
    t = c.num_det_tokens
    centres = anchor_centres(t)
    table = torch.cat([
        torch.zeros(1, d, dtype=torch.float64),  # [CLS]
        code(torch.arange(gh).repeat_interleave(gw), torch.arange(gw).repeat(gh)),  # grid, row-major
        code(centres[:, 1] * gh - 0.5, centres[:, 0] * gw - 0.5),  # [DET] at their anchors
    ])
    model.pos_embed.copy_(table[None].to(model.pos_embed.dtype))
    if model.mid_pos_embed is not None:
        model.mid_pos_embed.copy_(table[None, None].expand_as(model.mid_pos_embed).to(model.mid_pos_embed.dtype))

    conv = model.patch_embed.proj
    conv.reset_parameters()  # uniform(+-1/sqrt(fan_in)): outputs of variance 1/3 per unit input
    conv.weight.mul_(math.sqrt(3))
    conv.weight[:pos_ch] = 0
    conv.bias.zero_()
    torch.nn.init.normal_(model.det_tokens, std=0.02)
    torch.nn.init.normal_(model.cls_token, std=1.0)
    model.cls_token[..., :pos_ch] = 0

    _local_attention_(model, pos_ch, attention_gain)


def _local_attention_(model, pos_ch: int, attention_gain: float) -> None:
    """Every head's query and key rows select the position channels (so attention starts as a
    kernel of token distance); every other block weight xavier-uniform, biases zero."""
    d, heads = model.config.hidden_size, model.config.num_heads
    select = torch.zeros(pos_ch, d)
    select[:, :pos_ch] = torch.eye(pos_ch) * math.sqrt(attention_gain)
    for block in model.blocks:
        for m in block.modules():
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(m.weight)
                torch.nn.init.zeros_(m.bias)
        qkv = block.attn.qkv.weight  # [3D, D]: query rows, then key rows, then value rows
        for h in range(heads):
            rows = slice(h * pos_ch, (h + 1) * pos_ch)
            qkv[rows] = select
            qkv[d + h * pos_ch: d + (h + 1) * pos_ch] = select


@torch.no_grad()
def init_box_anchors(model, pixel_values: torch.Tensor, box_size: float = 0.2,
                     ridge: float = 1e-2) -> float:
    """Start each [DET] token at its own box, like an anchor: token ``i`` predicts a box of side
    ``box_size`` centred on cell ``i`` of a grid over the image.

    Only the box head's last Linear changes: its bias is the grid's mean logit and its weights
    are the ridge least-squares fit from the [DET] tokens' (image-averaged) hidden features to
    each token's offset from that mean, on ``pixel_values`` (a few training images). It needs
    [DET] features that differ more between tokens than between images
    (:func:`init_scratch_weights` gives that). Without it all tokens start at one box and the
    Hungarian matcher pairs them with objects at random, which is DETR's plateau.

    Returns the mean distance between the intended and the obtained centres (normalized).
    """
    head = model.box_head
    last = head.layers[-1]
    inputs = []
    hook = last.register_forward_hook(lambda m, args, out: inputs.append(args[0].detach()))
    was_training = model.training
    model.eval()
    try:
        model(pixel_values)
    finally:
        hook.remove()
        model.train(was_training)
    h = inputs[0].double().mean(0)  # [T, D]
    t = h.shape[0]
    centres = anchor_centres(t)
    target = torch.cat([centres, torch.full((t, 2), float(box_size), dtype=torch.float64)], 1)
    logits = torch.logit(target.clamp(1e-4, 1 - 1e-4))  # [T, 4]
    hm, ym = h.mean(0), logits.mean(0)
    hc, yc = h - hm, logits - ym
    gram = hc.T @ hc + ridge * torch.eye(hc.shape[1], dtype=torch.float64)
    weight = torch.linalg.solve(gram, hc.T @ yc).T  # [4, D]
    last.weight.copy_(weight.to(last.weight.dtype))
    last.bias.copy_((ym - weight @ hm).to(last.bias.dtype))
    model.eval()
    try:
        got = model(pixel_values)["pred_boxes"][..., :2].double().mean(0)
    finally:
        model.train(was_training)
    return float((got - centres).norm(dim=-1).mean())


@torch.no_grad()
def prepare_scratch_model(model, train_dataset, *, scratch_init: bool, anchors: bool,
                          head_priors: bool, sample: int = 32) -> str:
    """Apply the from-scratch inits a recipe asks for to a freshly built ``model``, in the
    order they depend on each other (weights, then the heads' priors, then the anchors fitted
    on the first ``sample`` training images). Returns a one-line description for the log."""
    from ..data.collate import collate_fn

    done = []
    if head_priors or anchors:  # reading the data's priors renders images of a synthetic split
        objects, side = dataset_priors(train_dataset)
    if scratch_init:
        init_scratch_weights(model)
        done.append("scratch init (local attention, Fourier position code, xavier)")
    if head_priors:
        init_head_priors(model, objects, side)
        done.append(f"head priors ({objects:.2f} objects per image, box side {side:.3f})")
    if anchors:
        n = min(sample, len(train_dataset))
        pixel_values = collate_fn([train_dataset[i] for i in range(n)])[0]
        err = init_box_anchors(model, pixel_values, box_size=side)
        done.append(f"anchor boxes (mean centre error {err:.3f})")
    return "; ".join(done) or "hustvl/YOLOS init"


def dataset_priors(dataset, sample: int = 256) -> tuple[float, float]:
    """``(objects per image, typical box side)`` over the first ``sample`` training items: the
    mean number of (non-crowd) boxes and the median of ``sqrt(w * h)`` as a fraction of the
    image side ``sqrt(W * H)``. A COCO dataset is read from its annotations, without decoding."""
    n = min(len(dataset), sample)
    counts, sides = [], []
    if hasattr(dataset, "annotations") and hasattr(dataset, "ids"):  # DetectionDataset
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
