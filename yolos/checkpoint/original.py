"""Original hustvl/YOLOS checkpoints: ``torch.save({"model": state_dict, ...})`` ``.pth`` files.

Their keys are ours with a ``backbone.`` prefix on the ViT part, ``det_token`` for our
``det_tokens`` and DETR's ``class_embed`` / ``bbox_embed`` for our ``class_head`` / ``box_head``
(the qkv projection is fused in both). The files carry no config, so the shape is read off the
tensors.
"""
from __future__ import annotations

import math
import re

from torch import Tensor

from ..coco_names import coco_class_names
from ..config import ModelConfig
from ..errors import CheckpointError
from ..model import VARIANTS, YOLOS, infer_variant_name
from .safe_io import empty_model, load_strict, read_state_dict

# hustvl/YOLOS VisionTransformer keeps timm's ImageNet classifier and DeiT's distillation parts as
# attributes the detector never calls; drop them if a checkpoint carries them.
_UNUSED = re.compile(r"^(head|head_dist)\.|^dist_token$")

# Head count per width, from the variants table (192 -> 3, 384 -> 6, 330 -> 6 (dWr, head dim
# 55), 768 -> 12, micro 128 -> 4); other widths get width // 64.
KNOWN_HEADS = {v.config.hidden_size: v.config.num_heads for v in VARIANTS.values()}

# hustvl/YOLOS builds every LayerNorm with eps=1e-6 (transformers' converted configs say 1e-12).
ORIG_LAYER_NORM_EPS = 1e-6


def is_original_state_dict(state_dict: dict) -> bool:
    return any(k.startswith("backbone.") for k in state_dict)


def original_to_ours(state_dict: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Rename hustvl/YOLOS keys to ours; returns ``(state_dict, dropped_keys)``."""
    out, dropped = {}, []
    for key, value in state_dict.items():
        if key.startswith("backbone."):
            key = key[len("backbone."):]
            if _UNUSED.search(key):
                dropped.append("backbone." + key)
                continue
            if key == "det_token":
                key = "det_tokens"
        elif key.startswith("class_embed."):
            key = "class_head." + key[len("class_embed."):]
        elif key.startswith("bbox_embed."):
            key = "box_head." + key[len("bbox_embed."):]
        out[key] = value
    return out, dropped


def ours_to_original(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of :func:`original_to_ours` (used to write hustvl/YOLOS-format files in tests)."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("class_head."):
            out["class_embed." + key[len("class_head."):]] = value
        elif key.startswith("box_head."):
            out["bbox_embed." + key[len("box_head."):]] = value
        else:
            out["backbone." + ("det_token" if key == "det_tokens" else key)] = value
    return out


def _grid_candidates(num_patches: int, width: int) -> list[tuple[int, int]]:
    """image_size candidates from the variants table whose grid has ``num_patches`` cells,
    same-width variants first."""
    found = []
    for v in sorted(VARIANTS.values(), key=lambda v: v.config.hidden_size != width):
        c = v.config
        if c.grid_size[0] * c.grid_size[1] == num_patches and c.image_size not in found:
            found.append(c.image_size)
    return found


def _check_depth(state_dict, depth: int, source) -> None:
    """A file missing its last blocks would otherwise load as a shallower model: the mid position
    embeddings (one per block but the first) say the depth. (Without them, as in Ti, nothing in
    the file does: such a file loads as the depth it holds.)"""
    mid = state_dict.get("mid_pos_embed")
    if mid is not None and mid.shape[0] + 1 != depth:
        raise CheckpointError(f"{source}: holds {depth} blocks but mid position embeddings for {mid.shape[0] + 1}: "
                              f"the last {mid.shape[0] + 1 - depth} block(s) are missing (a damaged file?)")


def infer_config(state_dict: dict[str, Tensor], source, **overrides) -> ModelConfig:
    """The ModelConfig of a state dict with our key names, read off its tensor shapes.

    Shapes fix width, depth, MLP size, patch size, [DET] count, class count and mid-PE presence.
    The head count and the (H, W) of the stored grid are not fixed by shapes: heads come from
    :data:`KNOWN_HEADS` (else width // 64), the grid from the variants table (Ti 50x83,
    S/dWr 32x54, B 50x84) or a square; ``num_heads=`` / ``image_size=`` override both.
    """
    def need(key):
        if key not in state_dict:
            raise CheckpointError(f"{source}: no {key!r} tensor; not a YOLOS checkpoint")
        return state_dict[key]

    width = need("cls_token").shape[-1]
    indices = sorted({int(m.group(1)) for k in state_dict if (m := re.match(r"blocks\.(\d+)\.", k))})
    depth = len(indices)
    if indices != list(range(depth)):
        missing = sorted(set(range(max(indices, default=-1) + 1)) - set(indices))
        raise CheckpointError(f"{source}: blocks {missing} are missing (the file holds blocks {indices})")
    _check_depth(state_dict, depth, source)
    mlp_dim = need("blocks.0.mlp.fc1.weight").shape[0]
    patch = need("patch_embed.proj.weight")
    num_det = need("det_tokens").shape[1]
    num_classes = need("class_head.layers.2.weight").shape[0] - 1
    mid = "mid_pos_embed" in state_dict
    num_patches = need("pos_embed").shape[1] - 1 - num_det
    p = patch.shape[-1]

    image_size = overrides.pop("image_size", None)
    if image_size is None:
        candidates = _grid_candidates(num_patches, width)
        side = math.isqrt(num_patches)
        if candidates:
            image_size = candidates[0]
        elif side * side == num_patches:
            image_size = (side * p, side * p)
        else:
            raise CheckpointError(
                f"{source}: pos_embed holds {num_patches} grid cells, which matches no known "
                f"YOLOS grid (Ti 50x83, S/dWr 32x54, B 50x84) and is not a square; pass "
                f"image_size=(H, W) with (H // {p}) * (W // {p}) == {num_patches}"
            )
    num_heads = overrides.pop("num_heads", None) or KNOWN_HEADS.get(width, max(1, width // 64))
    fields = dict(
        hidden_size=width, depth=depth, num_heads=num_heads, mlp_dim=mlp_dim, patch_size=p,
        num_channels=patch.shape[1], num_det_tokens=num_det, num_classes=num_classes,
        image_size=tuple(image_size), mid_pos_embed=mid, layer_norm_eps=ORIG_LAYER_NORM_EPS,
        class_names=coco_class_names() if num_classes == 91 else None,
    )
    fields.update(overrides)
    try:
        config = ModelConfig(**fields)
    except (TypeError, ValueError) as e:
        raise CheckpointError(
            f"{source}: cannot build a model from its shapes ({e}); pass num_heads= or "
            f"image_size= to say what the shapes cannot"
        ) from None
    if config.variant is None:
        config = config.replace(variant=infer_variant_name(config))
    return config


def load_original(path, device="cpu", **overrides) -> YOLOS:
    """Load a hustvl/YOLOS ``.pth`` (or a ``.safetensors`` with its keys) strictly.

    ``overrides`` replace inferred config fields (``image_size=``, ``num_heads=``,
    ``layer_norm_eps=``, ``class_names=``...).
    """
    state, _ = read_state_dict(path)
    if not is_original_state_dict(state):
        raise CheckpointError(f"{path}: no 'backbone.*' keys; not an original hustvl/YOLOS checkpoint")
    return model_from_original_state_dict(state, path, device=device, **overrides)


def model_from_original_state_dict(state, source, device="cpu", *, model_class=YOLOS, **overrides) -> YOLOS:
    ours, _dropped = original_to_ours(state)
    config = infer_config(ours, source, **overrides)
    model = empty_model(config, model_class)
    load_strict(model, ours, source)
    return model.to(device).eval()


__all__ = ["is_original_state_dict", "original_to_ours", "ours_to_original", "infer_config",
           "load_original", "model_from_original_state_dict"]
