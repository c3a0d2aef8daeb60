"""Every checkpoint format from_pretrained reads, checked against transformers or the file itself.

Shapes are kept small (a few layers) so each test runs in well under a second or two; the
released-variant shapes are covered by test_parity_hf.py.
"""
from __future__ import annotations

import argparse
import json
import math

import pytest
import torch

import yolos
from benchmarks.shared_inputs import random_weights_
from yolos.checkpoint import from_pretrained, load_native
from yolos.coco_names import COCO_ID2LABEL
from yolos.errors import CheckpointError

transformers = pytest.importorskip("transformers")


def small_config(**kw) -> yolos.ModelConfig:
    fields = dict(hidden_size=64, depth=3, num_heads=2, mlp_dim=128, image_size=(64, 96),
                  num_det_tokens=5, num_classes=4, mid_pos_embed=True,
                  class_names={0: "cat", 1: "dog", 2: "bird", 3: "fish"})
    fields.update(kw)
    return yolos.ModelConfig(**fields)


def randomized(config) -> yolos.YOLOS:
    """A model whose weights (position embeddings and tokens included) are far from their init,
    so layout errors show."""
    return random_weights_(yolos.Detector(config)).eval()


@pytest.fixture
def images():
    return torch.randn(2, 3, 72, 100)


def hf_state_to_orig(state: dict) -> dict:
    """transformers keys -> hustvl/YOLOS keys, written out by hand (the inverse of
    convert_yolos_to_pytorch's renames; q/k/v rows stacked back into qkv)."""
    out = {}
    renames = [
        ("vit.embeddings.cls_token", "backbone.cls_token"),
        ("vit.embeddings.detection_tokens", "backbone.det_token"),
        ("vit.embeddings.position_embeddings", "backbone.pos_embed"),
        ("vit.encoder.mid_position_embeddings", "backbone.mid_pos_embed"),
        ("vit.encoder.interpolation.mid_position_embeddings", "backbone.mid_pos_embed"),
        ("vit.embeddings.patch_embeddings.projection", "backbone.patch_embed.proj"),
        ("vit.encoder.layer.", "backbone.blocks."), ("attention.output.dense", "attn.proj"),
        ("layernorm_before", "norm1"), ("layernorm_after", "norm2"),
        ("intermediate.dense", "mlp.fc1"), ("output.dense", "mlp.fc2"),
        ("vit.layernorm", "backbone.norm"), ("class_labels_classifier", "class_embed"),
        ("bbox_predictor", "bbox_embed"),
    ]
    qkv = {}
    for key, value in state.items():
        if ".attention.attention." in key:
            layer = key.split(".")[3]
            part, kind = key.split(".")[-2:]
            qkv.setdefault((layer, kind), {})[part] = value
            continue
        for old, new in renames:
            key = key.replace(old, new)
        out[key] = value
    for (layer, kind), parts in qkv.items():
        out[f"backbone.blocks.{layer}.attn.qkv.{kind}"] = torch.cat(
            [parts["query"], parts["key"], parts["value"]])
    return out


# ---------------------------------------------------------------- transformers round trip
def test_save_pretrained_loads_in_transformers_and_back(tmp_path, images):
    model = randomized(small_config())
    model.save_pretrained(tmp_path)
    hf = transformers.YolosForObjectDetection.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert hf.config.id2label == {0: "cat", 1: "dog", 2: "bird", 3: "fish"}
    back = from_pretrained(tmp_path)
    with torch.no_grad():
        ours, ref, again = model(images), hf(pixel_values=images), back(images)
    torch.testing.assert_close(ours["logits"], ref.logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(ours["pred_boxes"], ref.pred_boxes, rtol=0, atol=1e-5)
    assert torch.equal(again["logits"], ours["logits"])
    assert back.config == model.config.replace(variant=None)
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in model.state_dict().items())
    assert not back.training


def test_transformers_save_pretrained_and_pytorch_bin(tmp_path, images):
    """What transformers writes (mid embeddings under the hub-file name), a sharded save, and a
    pytorch_model.bin directory all load to the same outputs as transformers'."""
    cfg = transformers.YolosConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=128, image_size=[64, 96],
                                   num_detection_tokens=5, num_labels=3)
    hf = transformers.YolosForObjectDetection(cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf.save_pretrained(tmp_path / "st")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "st" / "model.safetensors"), "pt") as f:
        assert "vit.encoder.mid_position_embeddings" in f.keys()
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="200KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "config.json").write_text((tmp_path / "st" / "config.json").read_text())
    torch.save(hf.state_dict(), tmp_path / "bin" / "pytorch_model.bin")  # in-memory names
    with torch.no_grad():
        ref = hf(pixel_values=images)
    for sub in ("st", "sharded", "bin"):
        out = from_pretrained(tmp_path / sub)(images)
        torch.testing.assert_close(out["logits"], ref.logits, rtol=0, atol=1e-4)
        torch.testing.assert_close(out["pred_boxes"], ref.pred_boxes, rtol=0, atol=1e-4)


def test_strict_loading_names_keys_and_file(tmp_path):
    model = yolos.Detector(small_config())
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["num_detection_tokens"] = 7
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="det_tokens: checkpoint \\(1, 5, 64\\) vs model \\(1, 7, 64\\)") as e:
        from_pretrained(tmp_path)
    assert str(tmp_path / "model.safetensors") in str(e.value)

    from safetensors.torch import load_file, save_file

    state = load_file(tmp_path / "model.safetensors")
    config["num_detection_tokens"] = 5
    (tmp_path / "config.json").write_text(json.dumps(config))
    del state["vit.layernorm.weight"]
    state["vit.pooler.dense.weight"] = torch.zeros(2)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError) as e:
        from_pretrained(tmp_path)
    assert "missing keys: norm.weight" in str(e.value)
    assert "unexpected keys: vit.pooler.dense.weight" in str(e.value)


# --------------------------------------------------------------------------- native format
def test_native_round_trip_and_overrides(tmp_path, images):
    model = randomized(small_config(variant="custom"))
    path = tmp_path / "sub" / "m.safetensors"
    model.save(path)
    back = from_pretrained(path)
    assert back.config == model.config
    assert torch.equal(back(images)["logits"], model(images)["logits"])
    renamed = load_native(path, class_names={0: "a", 1: "b", 2: "c", 3: "d"})
    assert renamed.config.label_name(2) == "c"
    with pytest.raises(CheckpointError, match="class_head.layers.2.weight"):
        from_pretrained(path, num_classes=7)


def test_safetensors_without_our_metadata_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"cls_token": torch.zeros(1, 1, 8)}, path)
    with pytest.raises(CheckpointError, match="without yolos metadata") as e:
        from_pretrained(path)
    assert str(path) in str(e.value)


def test_missing_paths_and_unknown_names():
    with pytest.raises(CheckpointError, match="checkpoint not found: nowhere/x.pth"):
        from_pretrained("nowhere/x.pth")
    with pytest.raises(CheckpointError, match="released variant name"):
        from_pretrained("yolos-huge")
    with pytest.raises(CheckpointError, match="no released checkpoint"):
        from_pretrained("micro")


# -------------------------------------------------------------------------- original .pth
@pytest.mark.parametrize("image_size,mid,width,heads", [
    ([800, 1333], False, 192, 3),  # Ti's 50x83 grid, no mid embeddings
    ([512, 864], True, 384, 6),  # S's 32x54 grid with mid embeddings
])
def test_original_checkpoint_matches_transformers(tmp_path, images, image_size, mid, width, heads):
    """An hustvl/YOLOS-format file made from a transformers model by the spec's key table loads with
    every shape inferred, COCO names, hustvl/YOLOS's eps 1e-6, and gives transformers' outputs."""
    cfg = transformers.YolosConfig(hidden_size=width, num_hidden_layers=2, num_attention_heads=heads,
                                   intermediate_size=2 * width, image_size=image_size,
                                   use_mid_position_embeddings=mid, num_labels=91)
    hf = transformers.YolosForObjectDetection(cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        ref = hf(pixel_values=images)
    args = argparse.Namespace(backbone_name="tiny", init_pe_size=image_size, lr=2.5e-5)
    path = tmp_path / "orig.pth"
    torch.save({"model": hf_state_to_orig(hf.state_dict()), "args": args, "epoch": 149,
                "optimizer": {"state": {}, "param_groups": []}}, path)
    model = from_pretrained(path)
    c = model.config
    assert (c.hidden_size, c.depth, c.num_heads, c.mlp_dim) == (width, 2, heads, 2 * width)
    assert (c.image_size, c.mid_pos_embed, c.num_det_tokens) == (tuple(image_size), mid, 100)
    assert c.num_classes == 91 and c.layer_norm_eps == 1e-6
    assert c.class_names[17] == "cat" and c.class_names[12] == "N/A"
    # transformers' converted models use eps 1e-12: with that override the outputs must agree.
    out = from_pretrained(path, layer_norm_eps=1e-12)(images)
    torch.testing.assert_close(out["logits"], ref.logits, rtol=0, atol=1e-4)
    torch.testing.assert_close(out["pred_boxes"], ref.pred_boxes, rtol=0, atol=1e-4)


def test_original_checkpoint_needing_overrides(tmp_path, images):
    model = randomized(small_config(num_heads=4, mid_pos_embed=False))  # 4x6 grid: unknown, not square
    from yolos.checkpoint.original import ours_to_original

    path = tmp_path / "custom.pth"
    torch.save({"model": ours_to_original(model.state_dict())}, path)
    with pytest.raises(CheckpointError, match=r"pass image_size=\(H, W\)") as e:
        from_pretrained(path)
    assert str(path) in str(e.value)
    loaded = from_pretrained(path, image_size=(64, 96), num_heads=4, layer_norm_eps=1e-12)
    assert torch.equal(loaded(images)["logits"], model(images)["logits"])

    state = ours_to_original(model.state_dict())
    state["backbone.extra.weight"] = torch.zeros(3)
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError, match="unexpected keys: extra.weight"):
        from_pretrained(path, image_size=(64, 96), num_heads=4)


def test_coco_names_match_the_annotation_file(coco_val80):
    """Our id -> name table against the real COCO val2017 category list."""
    categories = json.loads((coco_val80 / "annotations" / "instances_val2017.json").read_text())["categories"]
    assert {c["id"]: c["name"] for c in categories} == {i: n for i, n in COCO_ID2LABEL.items() if n != "N/A"}
    assert len(COCO_ID2LABEL) == 91 and math.isclose(sum(n == "N/A" for n in COCO_ID2LABEL.values()), 11)
