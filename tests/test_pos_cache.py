"""The inference cache of resampled position embeddings never serves stale values.

Each case evaluates in no-grad mode at a size that needs resampling (fills the cache), changes
the weights in one of the ways users do, evaluates again, and compares with a deep copy whose
cache was emptied (so it resamples from the current weights). Before the fix, fused AdamW left
``_version`` unchanged and every evaluation after the first reused the first embeddings.
"""
from __future__ import annotations

import copy

import pytest
import torch

from yolos.model import create_model

SIZE = (128, 96)  # not the micro grid (128x128): the embeddings are resampled


def _model(mid: bool = True):
    torch.manual_seed(0)
    return create_model("micro", mid_pos_embed=mid).eval()


def _eval(model, x):
    with torch.no_grad():
        return model(x)["pred_boxes"]


def _reference(model, x):
    fresh = copy.deepcopy(model)
    fresh._pos_cache.clear()
    return _eval(fresh, x)


def _train_step(model, optimizer, x):
    model.train()
    out = model(x)
    loss = out["pred_boxes"].sum() + out["logits"].logsumexp(-1).sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    model.eval()


OPTIMIZERS = {
    "adamw-fused": lambda p: torch.optim.AdamW(p, lr=1e-2, fused=True),
    "adamw-foreach": lambda p: torch.optim.AdamW(p, lr=1e-2, foreach=True),
    "adamw-for-loop": lambda p: torch.optim.AdamW(p, lr=1e-2, foreach=False),
    "sgd": lambda p: torch.optim.SGD(p, lr=1.0, momentum=0.9),
}


@pytest.mark.parametrize("mid", [True, False], ids=["mid-pos-embed", "no-mid"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_steps_invalidate(one_thread, name, mid):
    model = _model(mid)
    x = torch.randn(2, 3, *SIZE)
    before = _eval(model, x)  # fills the cache
    _train_step(model, OPTIMIZERS[name](model.parameters()), x)
    after = _eval(model, x)
    assert not torch.equal(before, after), "the step did not change the output at all"
    torch.testing.assert_close(after, _reference(model, x), rtol=0, atol=0)


def _change_load_state_dict(model):
    other = create_model("micro", mid_pos_embed=True)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05)
    model.load_state_dict(other.state_dict())


def _change_manual_pos_embed(model):
    with torch.no_grad():
        model.pos_embed[:, 1:5] += 0.3  # a local in-place edit of a few cells


def _change_manual_mid(model):
    with torch.no_grad():
        model.mid_pos_embed.mul_(1.5)


def _change_data_assignment(model):
    model.pos_embed.data = model.pos_embed.data * 0.5  # new storage


def _change_copy(model):
    with torch.no_grad():
        model.pos_embed.copy_(torch.randn_like(model.pos_embed) * 0.02)


CHANGES = {
    "load_state_dict": _change_load_state_dict,
    "manual-in-place-pos-embed": _change_manual_pos_embed,
    "manual-in-place-mid": _change_manual_mid,
    "data-assignment": _change_data_assignment,
    "copy_": _change_copy,
}


@pytest.mark.parametrize("name", list(CHANGES))
def test_weight_changes_invalidate(one_thread, name):
    model = _model()
    x = torch.randn(2, 3, *SIZE)
    before = _eval(model, x)
    CHANGES[name](model)
    after = _eval(model, x)
    assert not torch.equal(before, after)
    torch.testing.assert_close(after, _reference(model, x), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_dtype_conversions_use_converted_weights(one_thread, dtype):
    model = _model()
    x = torch.randn(1, 3, *SIZE)
    _eval(model, x)
    if dtype == torch.float16:
        model.half()
    else:
        model.to(dtype)
    pe, mid = model.position_embeddings((SIZE[0] // 16, SIZE[1] // 16))
    assert pe.dtype == dtype and mid.dtype == dtype
    fresh = copy.deepcopy(model)
    fresh._pos_cache.clear()
    pe_ref, mid_ref = fresh.position_embeddings((SIZE[0] // 16, SIZE[1] // 16))
    torch.testing.assert_close(pe, pe_ref, rtol=0, atol=0)
    torch.testing.assert_close(mid, mid_ref, rtol=0, atol=0)
    # back to fp32 with different values: still not the old fp32 entry
    model.float()
    with torch.no_grad():
        model.pos_embed.add_(0.01)
    torch.testing.assert_close(_eval(model, x), _reference(model, x), rtol=0, atol=0)


def test_cache_is_used_when_nothing_changed(one_thread):
    model = _model()
    grid = (SIZE[0] // 16, SIZE[1] // 16)
    with torch.no_grad():
        a = model.position_embeddings(grid)
        b = model.position_embeddings(grid)
    assert a[0] is b[0] and a[1] is b[1]


def test_training_mode_never_caches(one_thread):
    model = _model().train()
    grid = (SIZE[0] // 16, SIZE[1] // 16)
    pe, _ = model.position_embeddings(grid)
    assert pe.requires_grad and not model._pos_cache


def test_evaluation_during_training_follows_the_weights(one_thread, tmp_path):
    """The issue's reproduction: evaluate, one fused AdamW step, evaluate again."""
    from yolos.train.optim import build_optimizer

    model = _model()
    x = torch.randn(2, 3, *SIZE)
    optimizer = build_optimizer(model, lr=1e-3)
    assert optimizer.defaults.get("fused"), "build_optimizer should pick the fused kernel on CPU"
    for _ in range(3):
        _eval(model, x)
        _train_step(model, optimizer, x)
        torch.testing.assert_close(_eval(model, x), _reference(model, x), rtol=0, atol=0)
