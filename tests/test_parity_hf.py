"""Numerical parity with transformers' YolosForObjectDetection for every released variant shape.

transformers builds each model with random values in *every* tensor (it initializes position
embeddings, [CLS]/[DET] tokens and mid embeddings to zero, which would hide a resampling or
token-order error), writes it with ``save_pretrained``, and our ``from_pretrained`` reads that
directory: so the key mapping, the qkv fusion, the config mapping and the forward pass are all
checked against the reference implementation at once. Input sizes include non-multiples of 16
(leftover pixels dropped) and a transposed grid with the same cell count (4x6 vs 6x4).
"""
from __future__ import annotations

import pytest
import torch

import yolos
from benchmarks.shared_inputs import random_weights_
from yolos.model import VARIANTS

transformers = pytest.importorskip("transformers")

VARIANT_NAMES = ["yolos-ti", "yolos-s", "yolos-s-300", "yolos-s-dwr", "yolos-b"]
SIZES = [(64, 96), (72, 100), (96, 64)]
TOL = 1e-4


def hf_config(name: str):
    c = VARIANTS[name].config
    return transformers.YolosConfig(
        hidden_size=c.hidden_size, num_hidden_layers=c.depth, num_attention_heads=c.num_heads,
        intermediate_size=c.mlp_dim, image_size=list(c.image_size), patch_size=c.patch_size,
        num_detection_tokens=c.num_det_tokens, use_mid_position_embeddings=c.mid_pos_embed,
        num_labels=c.num_classes, layer_norm_eps=1e-12,
    )


@pytest.fixture(scope="module", params=VARIANT_NAMES)
def pair(request, tmp_path_factory):
    """(transformers model, our model loaded from its save_pretrained directory, cache of our
    outputs per input: ours does not depend on transformers' attention mode)."""
    name = request.param
    with torch.device("meta"):  # skip transformers' init: every value is overwritten anyway
        hf = transformers.YolosForObjectDetection(hf_config(name))
    hf = hf.to_empty(device="cpu")
    random_weights_(hf, seed=VARIANT_NAMES.index(name))
    hf.eval()
    directory = tmp_path_factory.mktemp(name)
    hf.save_pretrained(directory)
    ours = yolos.from_pretrained(directory)
    assert ours.config.variant == ("yolos-s" if name == "yolos-s-300" else name)
    yield hf, ours, {}
    del hf, ours


# Every size at batch 1; batch 3 once (the det-token-heavy sequence makes each image costly).
CASES = [(size, 1) for size in SIZES] + [((72, 100), 3)]


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("size,batch", CASES, ids=lambda c: f"{c[0]}x{c[1]}" if isinstance(c, tuple) else f"b{c}")
def test_matches_transformers(pair, attn, size, batch):
    hf, ours, cache = pair
    hf.set_attn_implementation(attn)
    g = torch.Generator().manual_seed(size[0] * 1000 + size[1] + batch)
    x = torch.randn(batch, 3, *size, generator=g)
    with torch.no_grad():
        ref = hf(pixel_values=x)
        if (size, batch) not in cache:
            cache[(size, batch)] = ours(x)
    out = cache[(size, batch)]
    t = ours.config.num_det_tokens
    assert out["logits"].shape == ref.logits.shape == (batch, t, ours.config.num_classes + 1)
    assert out["pred_boxes"].shape == ref.pred_boxes.shape == (batch, t, 4)
    # The comparison means something only if the outputs are neither constant nor saturated.
    assert ref.logits.std() > 0.1
    assert ref.logits[:, 0].sub(ref.logits[:, 1]).abs().max() > 1e-2
    assert ((ref.pred_boxes > 0.02) & (ref.pred_boxes < 0.98)).float().mean() > 0.5
    torch.testing.assert_close(out["logits"], ref.logits, rtol=0, atol=TOL)
    torch.testing.assert_close(out["pred_boxes"], ref.pred_boxes, rtol=0, atol=TOL)
