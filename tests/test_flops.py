"""FLOPs and parameter counting against a hand count, torch's own FLOP counter on a real
forward pass, the model's real parameters, and the paper's Tables 1, 4 and 6."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from yolos.analysis import flops as fl
from yolos.config import ModelConfig
from yolos.errors import DatasetError
from yolos.model import YOLOS, create_model, get_variant

TINY = ModelConfig(hidden_size=8, depth=1, num_heads=2, mlp_dim=16, patch_size=4,
                   num_det_tokens=2, num_classes=1, image_size=(8, 8), mid_pos_embed=False)


def test_hand_count_tiny_configuration():
    # input 8 x 12, patch 4: N = 2 * 3 = 6 patches, S = 1 cls + 6 + 2 det = 9 tokens, D = 8, M = 16
    stem = 6 * 8 * (3 * 4 * 4)  # per patch a 48 -> 8 linear map: 2304
    block = 9 * (8 * 24 + 8 * 8 + 8 * 16 + 16 * 8)  # qkv, proj, fc1, fc2 per token: 9 * 512 = 4608
    class_head = 2 * (8 * 8 + 8 * 8 + 8 * 2)  # two [DET] tokens, logits = 1 class + no-object: 288
    box_head = 2 * (8 * 8 + 8 * 8 + 8 * 4)  # 320
    attention = 9 * 9 * 8 + 9 * 9 * 8  # Q K^T and A V: S^2 * D each = 1296
    assert (stem, block, class_head + box_head, attention) == (2304, 4608, 608, 1296)
    got = fl.detector_flops(TINY, (8, 12))
    assert got.linear == stem + block + class_head + box_head == 7520
    assert got.attention == attention
    assert got.total == 8816
    assert got.tokens == 9
    # parameters: stem 392, cls 8, det 16, pos (1 + 4 + 2) * 8 = 56, block 600, final norm 16,
    # class head 72 + 72 + 18, box head 72 + 72 + 36
    assert got.params == 392 + 8 + 16 + 56 + 600 + 16 + 162 + 180 == 1430
    assert got.params == YOLOS(TINY).num_parameters()


@pytest.mark.parametrize("name", ["micro", "yolos-ti", "yolos-s-dwr"])
def test_params_match_the_real_model(name):
    assert fl.detector_params(get_variant(name).config) == create_model(name).num_parameters()


def _explicit_sdpa(q, k, v, *args, **kwargs):
    # torch's counter has no CPU handle for fused attention; the same maths as matmuls
    return ((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5).softmax(-1) @ v


@pytest.mark.parametrize("size", [(96, 160), (128, 112), (100, 150)])
def test_matches_torch_flop_counter_on_a_forward_pass(monkeypatch, size):
    from yolos.model import kernels

    monkeypatch.setattr(F, "scaled_dot_product_attention", _explicit_sdpa)
    # plain F.linear (torch's counter has no formula for the oneDNN fast path, when present)
    monkeypatch.setattr(kernels, "ONEDNN_LINEAR", False, raising=False)
    model = create_model("micro", mid_pos_embed=True).eval()
    with torch.no_grad():  # the position embeddings resampled for this size are cached: a one-off per size,
        model(torch.randn(1, 3, *size))  # not a per-image cost, and the paper does not count them
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        # output_attentions: the last block computes every row, as in the paper's model (the
        # fast inference path lets only the [DET] rows of the last block attend)
        model(torch.randn(1, 3, *size), output_attentions=True)
    # torch counts 2 FLOPs per multiply-add; the paper (fvcore) counts one
    assert counter.get_total_flops() / 2 == fl.detector_flops(model.config, size).total
    per_op = {str(k): v / 2 for k, v in counter.get_flop_counts()["Global"].items()}
    ours = fl.detector_flops(model.config, size)
    assert per_op["aten.convolution"] == ours.stem
    assert per_op["aten.bmm"] == ours.attention


@pytest.mark.parametrize("name,width,gflops,ratio,params", [
    ("deit-ti", 192, 1.2, 5.9, 5.7), ("deit-s", 384, 4.5, 11.8, 22.1), ("deit-b", 768, 17.6, 23.5, 86.4),
])
def test_imagenet_table1(name, width, gflops, ratio, params):
    got = fl.classifier_flops(12, width, 224)
    # full count within 5 % (Ti 1.254, S 4.599, B 17.564 G; DeiT's own paper says 1.3 / 4.6 / 17.6)
    assert got.total / 1e9 == pytest.approx(gflops, rel=0.05)
    # the paper's Ti and S figures are the transformer blocks alone (no stem, no classifier)
    blocks = (got.total - got.stem - got.heads) / 1e9
    if name == "deit-b":
        assert round(got.total / 1e9, 1) == gflops  # ...but B's is the full count (blocks: 17.45)
    else:
        assert round(blocks, 1) == gflops
    assert got.params / 1e6 == pytest.approx(params, rel=0.01)
    # the paper's ratio column is its complexity model 6 w / N over the 196 patches...
    assert round(fl.model_ratio(width, 196), 1) == ratio
    # ...and the measured ratio (stem, heads and the class token included) is within 2.5 % of it
    assert got.ratio == pytest.approx(ratio, rel=0.025)


def test_table1_scaled_models():
    for depth, width, res, params, ratio in [(19, 240, 272, 13.7, 5.0), (14, 330, 240, 19.0, 8.8)]:
        got = fl.classifier_flops(depth, width, res)
        assert got.total / 1e9 == pytest.approx(4.6, rel=0.025)
        assert round((got.total - got.stem - got.heads) / 1e9, 1) == 4.6
        assert round(got.params / 1e6, 1) == params
        assert round(fl.model_ratio(width, (res / 16) ** 2), 1) == ratio


def test_coco_ratio_column_is_the_complexity_model_at_the_long_side_cap():
    # Table 4 COCO f(Lin.)/f(Att.): 6 w / N with N = short * 1333 / 16^2 (no rounding to patches)
    for width, short, paper in [(192, 800, 0.28), (384, 800, 0.55), (240, 784, 0.35), (330, 784, 0.49)]:
        assert round(fl.model_ratio(width, short * 1333 / 256), 2) == paper


@pytest.mark.parametrize("variant,short,paper", [
    ("yolos-ti", 512, 18.8), ("yolos-ti", 800, 81.0), ("yolos-s", 800, 194.0),
    ("yolos-s-dwr", 784, 172.0), ("yolos-b", 800, 538.0),
])
def test_coco_totals_within_5_percent(coco_val80, variant, short, paper):
    sizes = fl.image_sizes(coco_val80)
    assert len(sizes) == 80
    got = fl.dataset_flops(get_variant(variant).config, sizes, short, 1333)
    assert got.total / 1e9 == pytest.approx(paper, rel=0.05)
    assert fl.paper_entry(variant, short)[1] == paper


def test_image_sizes_without_annotations_reads_headers(tmp_path):
    from PIL import Image

    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    Image.new("RGB", (20, 50)).save(tmp_path / "b.jpg")
    assert fl.image_sizes(tmp_path) == [(30, 40), (50, 20)]
    (tmp_path / "c.jpg").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="c.jpg"):
        fl.image_sizes(tmp_path)
    with pytest.raises(DatasetError, match="no images"):
        fl.image_sizes(tmp_path / "empty" if (tmp_path / "empty").mkdir() is None else tmp_path)


def test_cli_prints_ours_beside_the_paper(coco_val80, capsys):
    from yolos.cli import main

    assert main(["flops", "--model", "yolos-ti", "--data", str(coco_val80), "--short-side", "800"]) == 0
    out = capsys.readouterr().out
    assert "81.0" in out and "0.28" in out  # paper columns
    got = fl.dataset_flops(get_variant("yolos-ti").config, fl.image_sizes(coco_val80), 800)
    assert f"{got.total / 1e9:.1f}" in out
    assert main(["flops", "--model", "micro", "--size", "96", "160"]) == 0
    assert f"{fl.detector_flops(get_variant('micro').config, (96, 160)).total / 1e9:.3f}" in capsys.readouterr().out
