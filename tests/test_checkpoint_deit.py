"""Backbone initialization from ImageNet DeiT/ViT checkpoints, on locally
built timm/DeiT-style state dicts (same key names and layouts, random values)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import yolos
from yolos.checkpoint import load_imagenet_backbone
from yolos.errors import CheckpointError


def deit_state_dict(width=192, depth=2, heads=3, grid=14, distilled=False, classes=1000):
    """Keys and shapes of facebookresearch/deit (== timm) VisionTransformer checkpoints."""
    g = torch.Generator().manual_seed(grid * 100 + width + distilled)

    def r(*shape):
        return torch.randn(*shape, generator=g)

    prefix = 2 if distilled else 1
    sd = {"cls_token": r(1, 1, width), "pos_embed": r(1, prefix + grid * grid, width),
          "patch_embed.proj.weight": r(width, 3, 16, 16), "patch_embed.proj.bias": r(width),
          "norm.weight": r(width), "norm.bias": r(width),
          "head.weight": r(classes, width), "head.bias": r(classes)}
    if distilled:
        sd.update({"dist_token": r(1, 1, width), "head_dist.weight": r(classes, width),
                   "head_dist.bias": r(classes)})
    for i in range(depth):
        b = f"blocks.{i}."
        sd.update({b + "norm1.weight": r(width), b + "norm1.bias": r(width),
                   b + "attn.qkv.weight": r(3 * width, width), b + "attn.qkv.bias": r(3 * width),
                   b + "attn.proj.weight": r(width, width), b + "attn.proj.bias": r(width),
                   b + "norm2.weight": r(width), b + "norm2.bias": r(width),
                   b + "mlp.fc1.weight": r(4 * width, width), b + "mlp.fc1.bias": r(4 * width),
                   b + "mlp.fc2.weight": r(width, 4 * width), b + "mlp.fc2.bias": r(width)})
    return sd


def expected_grid_pe(pos, grid, dst):
    """F.interpolate on the [1, D, g, g] grid, as hustvl/YOLOS finetune_det writes it."""
    d = pos.shape[-1]
    patch = pos[:, -grid * grid:].transpose(1, 2).reshape(1, d, grid, grid)
    patch = F.interpolate(patch, size=dst, mode="bicubic", align_corners=False)
    return patch.flatten(2).transpose(1, 2)


@pytest.mark.parametrize("variant,width,heads,grid,distilled,fmt", [
    ("yolos-ti", 192, 3, 14, False, "pth"),  # DeiT-Ti 224 -> 50x83
    ("yolos-s", 384, 6, 15, False, "safetensors"),  # a 240 pretraining grid -> 32x54, mid PE
    ("yolos-b", 768, 12, 24, True, "pth"),  # distilled DeiT-B 384 -> 50x84
])
def test_deit_checkpoint_initializes_the_backbone(tmp_path, variant, width, heads, grid, distilled, fmt):
    sd = deit_state_dict(width=width, heads=heads, grid=grid, distilled=distilled)
    model = yolos.create_model(variant, depth=2, num_classes=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / f"deit.{fmt}"
    if fmt == "pth":
        torch.save({"model": sd}, path)
    else:
        from safetensors.torch import save_file
        save_file(sd, path)
    report = load_imagenet_backbone(model, path, seed=0)
    state = model.state_dict()

    for key in sd:
        if key.startswith(("blocks.", "patch_embed.", "norm.")) or key == "cls_token":
            assert torch.equal(state[key], sd[key]), key
    # cls slot: DeiT's cls position (plain) or its dist-token position (distilled; hustvl/YOLOS drops entry 0)
    assert torch.equal(state["pos_embed"][:, 0], sd["pos_embed"][:, 1 if distilled else 0])
    t = model.config.num_det_tokens
    gh, gw = model.config.grid_size
    torch.testing.assert_close(state["pos_embed"][:, 1:-t], expected_grid_pe(sd["pos_embed"], grid, (gh, gw)))
    # fresh: det tokens, det positions, mid positions (trunc-normal .02), both heads
    fresh = [state["det_tokens"], state["pos_embed"][:, -t:]]
    if model.config.mid_pos_embed:
        fresh.append(state["mid_pos_embed"])
    for tensor in fresh:
        assert 0.015 < tensor.std() < 0.025
    for key in before:
        if key.startswith(("class_head.", "box_head.", "det_tokens", "mid_pos_embed")):
            assert not torch.equal(state[key], before[key]), key
    expected_dropped = {"head.weight", "head.bias"} | (
        {"dist_token", "head_dist.weight", "head_dist.bias"} if distilled else set())
    assert set(report.dropped) == expected_dropped
    assert report.distilled == distilled and report.src_grid == (grid, grid) and report.dst_grid == (gh, gw)
    assert "det_tokens" in report.initialized and "class_head" in report.initialized
    out = model.eval()(torch.randn(1, 3, 64, 96))
    assert torch.isfinite(out["logits"]).all()

    again = yolos.create_model(variant, depth=2, num_classes=5)
    load_imagenet_backbone(again, {"model": sd}, seed=0)  # in-memory, wrapped, same seed
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in state.items())


def test_mismatched_backbone_is_reported_by_name(tmp_path):
    path = tmp_path / "deit_small.pth"
    torch.save(deit_state_dict(width=384, heads=6), path)
    model = yolos.create_model("yolos-ti", depth=2)
    with pytest.raises(CheckpointError, match="shape mismatches") as e:
        load_imagenet_backbone(model, path)
    assert str(path) in str(e.value) and "cls_token" in str(e.value)

    deeper = yolos.create_model("yolos-ti", depth=3)
    with pytest.raises(CheckpointError, match="missing.*blocks.2"):
        load_imagenet_backbone(deeper, deit_state_dict())

    odd = deit_state_dict()
    odd["blocks.0.ls1.gamma"] = torch.ones(192)
    with pytest.raises(CheckpointError, match="blocks.0.ls1.gamma"):
        load_imagenet_backbone(model, odd)


def test_from_pretrained_on_a_deit_file_points_to_backbone_loading(tmp_path):
    """from_pretrained on a DeiT file says how to use it instead."""
    path = tmp_path / "deit_tiny.pth"
    torch.save({"model": deit_state_dict()}, path)
    with pytest.raises(CheckpointError, match="load_imagenet_backbone"):
        yolos.from_pretrained(path)
