"""Start detection training from an ImageNet DeiT / ViT checkpoint.

Accepted: timm and facebookresearch/deit key names (``cls_token, pos_embed, patch_embed.proj,
blocks.i.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}, norm``), distilled or not, as a
bare state dict or wrapped as ``{"model": state_dict}``, in a ``.pth`` or ``.safetensors`` file.

What hustvl/YOLOS's ``finetune_det`` does, and so do we:
  * distilled DeiT (``pos_embed`` = [cls, dist, grid]): the first entry is dropped, so DeiT's
    dist-token position embedding becomes the cls slot's (the cls *token* stays DeiT's);
  * the patch grid (14x14, 15x15, 24x24, ...) is bicubically resampled to the detection grid
    ``model.config.grid_size`` (Ti 50x83, S 32x54, B 50x84);
  * [DET] tokens, their position embeddings and the mid position embeddings are freshly drawn
    (trunc-normal, std .02), both heads freshly initialized;
  * the classifier ``head``, ``head_dist`` and ``dist_token`` are dropped (and reported).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..errors import CheckpointError
from ..model import YOLOS, resample_pos_embed
from .safe_io import key_mismatch, read_state_dict, unwrap_state_dict

_DROPPED = re.compile(r"^(head|head_dist|pre_logits|fc_norm)\.|^dist_token$")
_BACKBONE = re.compile(r"^(cls_token|pos_embed|patch_embed\.proj\.(weight|bias)|norm\.(weight|bias)"
                       r"|blocks\.\d+\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias))$")


@dataclass
class BackboneLoadReport:
    """What :func:`load_imagenet_backbone` did."""

    source: str
    loaded: list[str] = field(default_factory=list)  # copied from the checkpoint
    dropped: list[str] = field(default_factory=list)  # in the checkpoint, unused by YOLOS
    initialized: list[str] = field(default_factory=list)  # freshly drawn
    distilled: bool = False
    src_grid: tuple[int, int] = (0, 0)
    dst_grid: tuple[int, int] = (0, 0)

    def __str__(self) -> str:
        return (
            f"{self.source}: {len(self.loaded)} tensors loaded, position grid "
            f"{self.src_grid[0]}x{self.src_grid[1]} -> {self.dst_grid[0]}x{self.dst_grid[1]}"
            f"{' (distilled: dist-token position used for cls)' if self.distilled else ''}; "
            f"dropped {self.dropped or 'nothing'}; freshly initialized {self.initialized}"
        )


def _grid_of(num_tokens: int, source) -> tuple[int, int, bool]:
    """``(grid_h, grid_w, distilled)`` for a square-grid ``pos_embed`` of ``num_tokens``."""
    for prefix, distilled in ((1, False), (2, True)):
        side = math.isqrt(num_tokens - prefix)
        if side * side == num_tokens - prefix:
            return side, side, distilled
    raise CheckpointError(
        f"{source}: pos_embed has {num_tokens} tokens, which is neither 1 + n*n (ViT/DeiT) nor "
        f"2 + n*n (distilled DeiT); pass src_grid=(h, w) for a non-square grid"
    )


def backbone_filter(state: dict, config, src_grid: tuple[int, int] | None = None,
                    source: str = "state dict") -> tuple[dict, BackboneLoadReport]:
    """A DeiT/ViT state dict turned into YOLOS backbone tensors (timm's ``checkpoint_filter_fn``
    habit: state dict in, state dict and report out, nothing touched): the classifier keys
    dropped, the position grid resampled to ``config.grid_size`` (a distilled DeiT's first entry
    dropped, so its dist position becomes cls's). ``pos_embed`` comes back as ``[1, 1 + grid, D]``
    (cls + grid, no [DET] part). Raises CheckpointError naming ``source`` for a key that is no
    DeiT/ViT backbone's."""
    report, keep = BackboneLoadReport(source=source), {}
    for key, value in state.items():
        if _DROPPED.search(key):
            report.dropped.append(key)
        elif _BACKBONE.match(key):
            keep[key] = value
        else:
            raise CheckpointError(
                f"{source}: unexpected key {key!r} for a DeiT/ViT backbone (layer-scale, "
                f"register tokens, relative position or other ViT variants are not YOLOS)"
            )
    if "pos_embed" not in keep or "cls_token" not in keep:
        raise CheckpointError(f"{source}: no pos_embed / cls_token; not a DeiT/ViT checkpoint")
    pos = keep.pop("pos_embed").float()
    if src_grid is None:
        gh, gw, distilled = _grid_of(pos.shape[1], source)
    else:
        gh, gw = src_grid
        distilled = pos.shape[1] == 2 + gh * gw
        if pos.shape[1] not in (1 + gh * gw, 2 + gh * gw):
            raise CheckpointError(f"{source}: pos_embed has {pos.shape[1]} tokens, not 1 or 2 + {gh}x{gw}")
    if distilled:  # hustvl/YOLOS finetune_det: pos_embed[:, 1:] -> the dist position becomes cls's
        pos = pos[:, 1:]
    keep["pos_embed"] = resample_pos_embed(pos, (gh, gw), config.grid_size, 1, 0)
    report.distilled, report.src_grid, report.dst_grid = distilled, (gh, gw), config.grid_size
    return keep, report


def init_detection_parts(model: YOLOS, generator=None) -> list[str]:
    """Draw what no ImageNet checkpoint has, as hustvl/YOLOS does: the [DET] tokens and their
    position embeddings, the mid position embeddings (trunc-normal, std .02) and both heads
    (PyTorch's default Linear init). Returns their names."""
    t = model.config.num_det_tokens
    with torch.no_grad():
        model.pos_embed[:, -t:].copy_(_trunc_normal((1, t, model.config.hidden_size), generator))
        model.det_tokens.copy_(_trunc_normal(tuple(model.det_tokens.shape), generator))
        drawn = ["det_tokens", "pos_embed[det]"]
        if model.mid_pos_embed is not None:
            model.mid_pos_embed.copy_(_trunc_normal(tuple(model.mid_pos_embed.shape), generator))
            drawn.append("mid_pos_embed")
        for name, head in (("class_head", model.class_head), ("box_head", model.box_head)):
            for layer in head.layers:
                _default_linear_init(layer, generator)
            drawn.append(name)
    return drawn


def load_imagenet_backbone(
    model: YOLOS,
    path_or_state_dict,
    src_grid: tuple[int, int] | None = None,
    seed: int | None = None,
) -> BackboneLoadReport:
    """Copy an ImageNet ViT/DeiT into ``model``'s backbone in place (:func:`backbone_filter`) and
    draw the rest (:func:`init_detection_parts`).

    Args:
        model: a YOLOS whose width, depth, heads and patch size match the checkpoint
            (e.g. ``create_model("yolos-ti")`` for DeiT-Ti).
        path_or_state_dict: a file path (``.pth``/``.safetensors``) or a state dict.
        src_grid: the checkpoint's patch grid when it is not square.
        seed: seeds the fresh initialization (None: the global RNG).

    Returns:
        A :class:`BackboneLoadReport`. Raises CheckpointError naming the source when a
        backbone tensor is missing, unknown or of the wrong shape.
    """
    if isinstance(path_or_state_dict, dict):
        source = "state dict"
        state = unwrap_state_dict(path_or_state_dict, source)
    else:
        source = str(path_or_state_dict)
        state, _ = read_state_dict(path_or_state_dict)
    keep, report = backbone_filter(state, model.config, src_grid, source)
    pos = keep.pop("pos_embed")
    own = model.state_dict()
    backbone_keys = [k for k in own if _BACKBONE.match(k) and k != "pos_embed"]
    width = [] if pos.shape[-1] == model.config.hidden_size else [
        f"pos_embed width {pos.shape[-1]} vs {model.config.hidden_size}"]
    problems = key_mismatch({k: own[k] for k in backbone_keys}, keep, width)
    if problems:
        raise CheckpointError(f"{source} does not fit this YOLOS backbone (width {model.config.hidden_size}, "
                              f"depth {model.config.depth}): {problems}")
    with torch.no_grad():
        for key in backbone_keys:
            own[key].copy_(keep[key])
        model.pos_embed[:, : pos.shape[1]].copy_(pos)
    report.loaded = backbone_keys + ["pos_embed[cls + grid]"]
    report.initialized = init_detection_parts(model, None if seed is None else torch.Generator().manual_seed(seed))
    return report


def _trunc_normal(shape, generator, std=0.02) -> Tensor:
    # timm's trunc_normal_(std=.02) with bounds +-2 (in absolute units, i.e. +-100 std): with a
    # generator for reproducibility, as nn.init.trunc_normal_ takes one.
    t = torch.empty(shape)
    nn.init.trunc_normal_(t, std=std, a=-2.0, b=2.0, generator=generator)
    return t


def _default_linear_init(layer: nn.Linear, generator) -> None:
    # PyTorch's default Linear init (hustvl/YOLOS never re-initializes the DETR heads).
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    bound = 1 / math.sqrt(layer.in_features)
    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


__all__ = ["load_imagenet_backbone", "backbone_filter", "init_detection_parts", "BackboneLoadReport"]
