"""The int8 inference mode (dtype="int8", CPU): the backbone's linear layers with int8 weights per
output channel and activations quantized per call, against hand-computed quantized arithmetic and
against fp32 within the error measured on random-weight yolos-ti and yolos-s (docs/benchmarks.md)."""
from __future__ import annotations

import pytest
import torch

import yolos
from benchmarks.shared_inputs import random_weights_
from yolos.defaults import DEFAULT_MODEL
from yolos.inference.precision import precision_for
from yolos.model import kernels


def test_int8_linear_is_quantized_arithmetic():
    """Int8Linear = (activations rounded to 8 bits per tensor) x (weights rounded to 8 bits per
    output channel), summed exactly, plus the fp32 bias: written here from the definitions."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 48)
    x = torch.randn(10, 64) * 3
    got = kernels.Int8Linear(layer)(x)
    w_scale = layer.weight.detach().abs().amax(1, keepdim=True) / 127
    w_int = torch.round(layer.weight.detach() / w_scale).clamp(-127, 127)
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    levels = 127 if kernels.Int8Linear(layer).reduce_range else 255
    x_scale = (hi - lo) / levels
    zero = round(-lo / x_scale)
    x_deq = (torch.round(x / x_scale) + zero).clamp(0, levels).sub(zero) * x_scale
    want = x_deq @ (w_int * w_scale).T + layer.bias.detach()
    torch.testing.assert_close(got, want, rtol=0, atol=2e-3 * float(want.abs().max()))
    fp32 = layer(x).detach()
    assert float((got - fp32).abs().max()) > 1e-4  # it really is quantized


@pytest.mark.parametrize("variant, size", [("yolos-ti", (256, 320))])
def test_int8_stays_near_fp32_on_random_weights(variant, size):
    model = random_weights_(yolos.create_model(variant)).eval()
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = model(x)
        with precision_for(model, "int8")():
            low = model(x)
    d_logits = float((low["logits"] - ref["logits"]).abs().max())
    d_boxes = float((low["pred_boxes"] - ref["pred_boxes"]).abs().max())
    assert 1e-4 < d_logits < 0.2 and d_boxes < 0.05, (d_logits, d_boxes)  # measured 5e-2 / 9e-3 at 512x672


def test_int8_predict_keeps_the_bundled_models_detections():
    """On the bundled example image the int8 mode finds what fp32 finds (labels, boxes within 3 px)."""
    from yolos.defaults import DEFAULT_IMAGE

    model = yolos.from_pretrained(DEFAULT_MODEL)
    a = model.predict(DEFAULT_IMAGE)[0]
    b = model.predict(DEFAULT_IMAGE, dtype="int8")[0]
    assert sorted(a.label_names) == sorted(b.label_names) and len(a) > 0
    order_a, order_b = a.boxes[:, 0].argsort(), b.boxes[:, 0].argsort()
    assert float((a.boxes[order_a] - b.boxes[order_b]).abs().max()) < 3.0


def test_int8_is_inference_only_and_cpu_only():
    model = yolos.create_model("micro").eval()
    x = torch.randn(1, 3, 64, 64)
    compute = precision_for(model, "int8")
    ref = model(x)["logits"].detach()
    with compute():  # gradients on: the fp32 weights, as for training
        out = model(x)
    torch.testing.assert_close(out["logits"].detach(), ref, rtol=0, atol=0)
    with torch.no_grad(), compute():
        assert not torch.equal(model(x)["logits"], ref)  # gradients off: int8
    out["logits"].sum().backward()
    assert model.blocks[0].mlp.fc1.weight.grad is not None
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="CPU only"):
            precision_for(model.cuda(), "int8")
