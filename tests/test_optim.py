"""Optimizer groups and lr schedule against values worked out by hand from the original recipe."""
import math

import pytest
import torch

from yolos.config import ModelConfig
from yolos.model import YOLOS
from yolos.train.optim import LRSchedule, build_optimizer, cosine_lr, param_groups


def _tiny(mid=True):
    return YOLOS(ModelConfig(hidden_size=32, depth=2, num_heads=2, mlp_dim=64, image_size=(32, 32),
                             mid_pos_embed=mid, num_det_tokens=3, num_classes=2))


def test_param_groups_by_hand():
    model = _tiny(mid=True)
    decay, no_decay = param_groups(model, weight_decay=1e-4)
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    # Written out for a depth-2 model: hustvl/YOLOS's groups, with the head biases not decayed either.
    expected_no_decay = {"cls_token", "det_tokens", "pos_embed", "patch_embed.proj.bias", "norm.weight", "norm.bias"}
    for i in range(2):
        expected_no_decay |= {f"blocks.{i}.{m}" for m in (
            "norm1.weight", "norm1.bias", "attn.qkv.bias", "attn.proj.bias", "norm2.weight",
            "norm2.bias", "mlp.fc1.bias", "mlp.fc2.bias")}
    expected_decay = {"mid_pos_embed", "patch_embed.proj.weight"}
    for i in range(2):
        expected_decay |= {f"blocks.{i}.{m}.weight" for m in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")}
    for head in ("class_head", "box_head"):  # weights decayed, biases not (unlike hustvl/YOLOS's heads)
        for k in range(3):
            expected_decay.add(f"{head}.layers.{k}.weight")
            expected_no_decay.add(f"{head}.layers.{k}.bias")
    assert set(no_decay["names"]) == expected_no_decay
    assert set(decay["names"]) == expected_decay
    n_params = len(list(model.parameters()))
    assert len(decay["params"]) + len(no_decay["params"]) == n_params


def test_frozen_det_tokens_left_out_and_optimizer_settings():
    model = _tiny(mid=False)
    model.det_tokens.requires_grad_(False)
    _, no_decay = param_groups(model)
    assert "det_tokens" not in no_decay["names"]
    opt = build_optimizer(model, lr=5e-5)
    g = opt.param_groups[0]
    assert g["betas"] == (0.9, 0.999) and g["eps"] == 1e-8 and g["lr"] == 5e-5
    assert [pg["weight_decay"] for pg in opt.param_groups] == [1e-4, 0.0]
    ids = {id(p) for pg in opt.param_groups for p in pg["params"]}
    assert id(model.det_tokens) not in ids


def test_cosine_schedule_by_hand():
    lr, E = 1e-4, 10
    # epochs 0 and 1 both at the base lr (timm step(epoch) is called at the end of each epoch)
    assert cosine_lr(0, lr, E) == lr
    assert cosine_lr(1, lr, E) == pytest.approx(lr, rel=1e-12)
    # epoch 6 runs at f(5) = 1e-7 + 0.5 (1e-4 - 1e-7)(1 + cos(pi/2)) = 5.005e-5
    assert cosine_lr(6, lr, E) == pytest.approx(5.005e-5, rel=1e-9)
    # epoch 10 would be f(9): 1e-7 + 0.5 * 9.99e-5 * (1 + cos(0.9 pi))
    assert cosine_lr(10, lr, E) == pytest.approx(1e-7 + 0.5 * 9.99e-5 * (1 + math.cos(0.9 * math.pi)))
    assert cosine_lr(11, lr, E) == pytest.approx(1e-7)  # f(10) is the floor
    values = [cosine_lr(k, lr, E) for k in range(1, E + 1)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_warmup_epochs_and_steps():
    # warmup_epochs=2, warmup_lr=1e-6: epoch 0 at 1e-6, epoch 1 at f(0) = 1e-6, epoch 2 at f(1) = 1e-6 + (1e-4 - 1e-6)/2
    assert cosine_lr(0, 1e-4, 10, warmup_epochs=2) == 1e-6
    assert cosine_lr(1, 1e-4, 10, warmup_epochs=2) == pytest.approx(1e-6)
    assert cosine_lr(2, 1e-4, 10, warmup_epochs=2) == pytest.approx(5.05e-5)
    s = LRSchedule(1e-3, 5, warmup_steps=4)
    assert [s.lr(0, g) for g in range(5)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    assert s.apply(opt, 0, 1) == pytest.approx(5e-4) and opt.param_groups[0]["lr"] == pytest.approx(5e-4)


def _scale_by_hand(name: str, decay: float) -> float:
    """A depth-2 model: embeddings decay^3, blocks.0 decay^2, blocks.1 decay, norm and heads 1."""
    if name.startswith("blocks."):
        return decay ** (2 - int(name.split(".")[1]))
    if name.startswith("patch_embed") or name in ("cls_token", "det_tokens", "pos_embed", "mid_pos_embed"):
        return decay ** 3
    return 1.0


def test_layer_decay_scales_each_parameters_step_by_its_depth():
    model = _tiny(mid=True)
    groups = param_groups(model, weight_decay=1e-4, layer_decay=0.5)
    for g in groups:  # decay flags as without layer decay; one scale per group
        for name in g["names"]:
            assert g["lr_scale"] == _scale_by_hand(name, 0.5), name
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert len(groups) == 8  # (decayed, not) x (embeddings, block 0, block 1, top): mid_pos_embed is decayed
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.0, layer_decay=0.5)
    assert LRSchedule(1e-3, 5).apply(opt, 1) == pytest.approx(1e-3)  # the schedule's lr, the top's
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    # Adam's first step moves every weight by lr * g / (|g| + eps), i.e. by its group's lr.
    for n, p in model.named_parameters():
        step = (before[n] - p.detach()).flatten()
        assert torch.allclose(step, torch.full_like(step, 1e-3 * _scale_by_hand(n, 0.5)), rtol=1e-4), n


def test_no_layer_decay_keeps_hustvl_two_groups():
    assert [g["lr_scale"] for g in param_groups(_tiny(), layer_decay=1.0)] == [1.0, 1.0]


def test_freeze_input_side_freezes_the_embeddings_and_the_first_blocks():
    from yolos.train.optim import freeze_input_side

    model = _tiny(mid=True)
    assert freeze_input_side(model, 0) == 0 and all(p.requires_grad for p in model.parameters())
    frozen = freeze_input_side(model, 1)
    # written out for a depth-2 model with mid position tables: everything before block 1
    names = {"cls_token", "det_tokens", "pos_embed", "mid_pos_embed", "patch_embed.proj.weight",
             "patch_embed.proj.bias"} | {n for n, _ in model.named_parameters() if n.startswith("blocks.0.")}
    params = dict(model.named_parameters())
    assert {n for n, p in params.items() if not p.requires_grad} == names
    assert frozen == sum(params[n].numel() for n in names)
    assert {n for g in param_groups(model) for n in g["names"]} == set(params) - names
    with pytest.raises(ValueError, match=r"--freeze 3: the model has 2 blocks"):
        freeze_input_side(_tiny(), 3)


@pytest.mark.parametrize("blocks, checkpointing", [(1, False), (1, True), (2, False)])
def test_frozen_layers_leave_the_other_gradients_as_they_were(blocks, checkpointing):
    """Freezing only stops backward early: the trained parameters get the gradients they get
    when nothing is frozen (also when the first trained block, whose input needs no gradient, is
    recomputed in backward), and the frozen ones get none."""
    from yolos.train.optim import freeze_input_side

    torch.manual_seed(0)
    full = _tiny(mid=False).train()
    part = _tiny(mid=False).train()
    part.load_state_dict(full.state_dict())
    part.grad_checkpointing = checkpointing
    freeze_input_side(part, blocks)  # at 2, the whole backbone but the final norm
    x = torch.randn(2, 3, 32, 32)
    for model in (full, part):
        out = model(x)
        (out["pred_boxes"].square().sum() + out["logits"].square().sum()).backward()
    for (name, p), q in zip(full.named_parameters(), part.parameters()):
        if q.requires_grad:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-7, msg=name)
        else:
            assert q.grad is None, name
    trained = {n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("blocks.") else "")
               for n, q in part.named_parameters() if q.requires_grad}
    assert trained == {"box_head", "class_head", "norm"} | ({"blocks.1"} if blocks == 1 else set())
