"""Training-only [DET] groups, denoising tokens and the dense head (yolos.train.extra_tokens):
nothing reaches the model's own tokens from them, they are drawn as DN-DETR draws them, the dense
head reads the tokens the last block's [DET] queries read and answers for the objects a hand
assignment gives, their losses are the hand computed ones, and a run with them trains, resumes
bit for bit and exports the model it would without them."""
from __future__ import annotations

import json
import os
import signal

import pytest
import torch
import torch.nn.functional as F
from test_train_loop import TINY, make_shapes, tiny_config

from yolos.box_ops import cxcywh_to_xyxy, generalized_box_iou
from yolos.checkpoint.native import load_native
from yolos.model import create_model
from yolos.train.console import StepReporter
from yolos.train.criterion import SetCriterion
from yolos.train.extra_tokens import DN_BOX_NOISE, ExtraTokens, dense_targets, extra_token_mask
from yolos.train.loop import TrainingInterrupted, fit
from yolos.train.matcher import HungarianMatcher
from yolos.train.recipe import init_scratch_weights

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(**kw):
    torch.manual_seed(0)
    model = create_model("micro", **dict(TINY, **kw))
    init_scratch_weights(model)  # attention that starts local: the hardest case for a leak to hide
    return model


def _targets(boxes_per_image=(2, 1, 3), classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in boxes_per_image:
        cxcy = torch.rand(n, 2, generator=g) * 0.6 + 0.2
        wh = torch.rand(n, 2, generator=g) * 0.3 + 0.1
        out.append({"labels": torch.randint(0, classes, (n,), generator=g), "boxes": torch.cat([cxcy, wh], 1)})
    return out


def test_the_mask_by_hand():
    # 4 model tokens, of which the first 3 ([CLS] + 2 patches) are visible to the extra sets of 2 and 1
    m = extra_token_mask(4, 3, [2, 1]).int().tolist()
    assert m == [[1, 1, 1, 1, 0, 0, 0],
                 [1, 1, 1, 1, 0, 0, 0],
                 [1, 1, 1, 1, 0, 0, 0],
                 [1, 1, 1, 1, 0, 0, 0],
                 [1, 1, 1, 0, 1, 1, 0],
                 [1, 1, 1, 0, 1, 1, 0],
                 [1, 1, 1, 0, 0, 0, 1]]


@pytest.mark.parametrize("mid_pos_embed", [False, True])
def test_nothing_reaches_the_model_tokens_from_the_extra_ones(mid_pos_embed):
    """The [DET] outputs (and so the patches they read) are those of the model alone, whatever the
    ground truth in the denoising sets; no gradient flows from them into the extra tokens; and
    each extra set is hidden from the others."""
    model = _model(mid_pos_embed=mid_pos_embed)
    x = torch.randn(3, 3, 64, 96)
    extra = ExtraTokens(model.config, groups=3, denoising=2)
    alone = model(x, output_det_features=True)
    a = extra.prepare(model, x, _targets(seed=0), torch.Generator().manual_seed(0))
    b = extra.prepare(model, x, _targets(seed=1), torch.Generator().manual_seed(1))  # other objects, other noise
    assert not torch.equal(a.tokens, b.tokens)
    tokens = a.tokens.detach().requires_grad_(True)
    out_a = model(x, extra_tokens=tokens, extra_mask=a.mask, output_det_features=True)
    out_b = model(x, output_det_features=True, **b.model_inputs())
    for key in ("logits", "pred_boxes", "det_features"):
        assert torch.equal(out_a[key], out_b[key]), key  # the ground truth changed, the model's tokens did not
        assert torch.allclose(out_a[key], alone[key], atol=1e-5), key
    (grad,) = torch.autograd.grad(out_a["logits"].sum() + out_a["pred_boxes"].sum(), tokens, retain_graph=True)
    assert torch.count_nonzero(grad) == 0
    (grad,) = torch.autograd.grad(out_a["extra_logits"].sum(), tokens)
    assert torch.count_nonzero(grad) > 0  # ... while the extra outputs do read them

    # one set changed: every other set's outputs stay bit for bit (layout: 2 groups of T, 2 sets of 3)
    t, n = model.config.num_det_tokens, 3
    spans = [(0, t), (t, 2 * t), (2 * t, 2 * t + n), (2 * t + n, 2 * t + 2 * n)]
    for lo, hi in spans:
        changed = a.tokens.detach().clone()
        changed[:, lo:hi] += torch.randn_like(changed[:, lo:hi])
        out_c = model(x, extra_tokens=changed, extra_mask=a.mask)
        for other_lo, other_hi in spans:
            same = torch.equal(out_c["extra_boxes"][:, other_lo:other_hi], out_a["extra_boxes"][:, other_lo:other_hi])
            assert same == ((other_lo, other_hi) != (lo, hi)), (lo, hi, other_lo, other_hi)


def test_the_attention_maps_show_the_mask():
    model = _model()
    x = torch.randn(1, 3, 64, 64)
    extra = ExtraTokens(model.config, groups=2)
    batch = extra.prepare(model, x, _targets((3,)), torch.Generator().manual_seed(0))
    assert batch.tokens.shape[1] == model.config.num_det_tokens and batch.dn_sets == 0  # groups only
    att = model(x, output_attentions=True, **batch.model_inputs())["attentions"]  # [1, heads, S+E, S+E]
    s = att.shape[-1] - batch.tokens.shape[1]
    assert torch.count_nonzero(att[..., :s, s:]) == 0  # the model's tokens give the extra ones no weight
    assert torch.count_nonzero(att[..., s:, s - model.config.num_det_tokens:s]) == 0  # nor they the [DET] ones
    assert torch.allclose(att.sum(-1), torch.ones(()), atol=1e-5)


def test_denoising_tokens_are_noised_as_dn_detr_and_seeded(monkeypatch):
    model = _model()
    extra = ExtraTokens(model.config, denoising=1)
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4]]).repeat(4000, 1)
    targets = [{"labels": torch.zeros(4000, dtype=torch.int64), "boxes": boxes}]
    x = torch.randn(1, 3, 64, 64)
    seen = {}
    hooks = [extra.size_embed.register_forward_hook(lambda m, args, out: seen.update(wh=args[0][0])),
             extra.label_embed.register_forward_hook(lambda m, args, out: seen.update(labels=args[0][0]))]
    grid_sample = F.grid_sample

    def spy(table, where, **kw):
        seen["centres"] = (where.reshape(-1, 2) + 1) / 2
        return grid_sample(table, where, **kw)

    monkeypatch.setattr(F, "grid_sample", spy)
    batch = extra.prepare(model, x, targets, torch.Generator().manual_seed(5))
    for hook in hooks:
        hook.remove()
    scale = seen["wh"] / boxes[:, 2:] - 1
    assert scale.abs().max() <= DN_BOX_NOISE + 1e-6 and scale.abs().max() > 0.95 * DN_BOX_NOISE  # 1 +- 0.4
    shift = (seen["centres"] - boxes[:, :2]).abs() / boxes[:, 2:]
    assert shift.max() <= DN_BOX_NOISE / 2 + 1e-5 and shift.max() > 0.95 * DN_BOX_NOISE / 2  # up to 0.4 side / 2
    # a fifth of the labels redrawn uniformly over the 3 classes: 2/3 of those change (0.133)
    assert 0.11 < (seen["labels"] != 0).float().mean() < 0.16
    again = extra.prepare(model, x, targets, torch.Generator().manual_seed(5))
    assert torch.equal(batch.tokens, again.tokens)


def test_padding_tokens_are_zero_and_left_out_of_the_loss():
    model = _model()
    extra = ExtraTokens(model.config, denoising=2)
    targets = _targets((3, 1, 0))
    x = torch.randn(3, 3, 64, 64)
    batch = extra.prepare(model, x, targets, torch.Generator().manual_seed(0))
    assert batch.tokens.shape[1] == 2 * 3 and batch.dn_sets == 2
    assert torch.count_nonzero(batch.tokens[1, 1:3]) == 0 and torch.count_nonzero(batch.tokens[2]) == 0
    assert torch.count_nonzero(batch.tokens[0]) > 0


def test_the_losses_by_hand():
    model = _model()
    extra = ExtraTokens(model.config, groups=2, denoising=1)
    targets = _targets((2, 1, 3))
    x = torch.randn(3, 3, 64, 64)
    batch = extra.prepare(model, x, targets, torch.Generator().manual_seed(0))
    out = model(x, **batch.model_inputs())
    criterion = SetCriterion(3, HungarianMatcher())
    norm = criterion.normalizers(targets, model.config.num_det_tokens, "cpu")
    losses = extra.losses(out, targets, batch, criterion, norm)
    t = model.config.num_det_tokens
    group = criterion({"logits": out["extra_logits"][:, :t], "pred_boxes": out["extra_boxes"][:, :t]}, targets)
    assert torch.allclose(losses["loss_groups"], group["loss"])
    ce = l1 = giou = 0.0
    for i, target in enumerate(targets):  # token t + j answers for object j, no matching
        for j in range(len(target["labels"])):
            logit, box = out["extra_logits"][i, t + j], out["extra_boxes"][i, t + j]
            ce += F.cross_entropy(logit[None], target["labels"][j:j + 1])
            l1 += (box - target["boxes"][j]).abs().sum()
            giou += 1 - generalized_box_iou(cxcywh_to_xyxy(box[None]), cxcywh_to_xyxy(target["boxes"][j:j + 1]))[0, 0]
    expected = (1 * ce + 5 * l1 + 2 * giou) / 6  # criterion weights 1/5/2, 6 boxes, one set
    assert torch.allclose(losses["loss_dn"], expected, atol=1e-5)


def test_dense_targets_by_hand():
    # a 96 x 64 image (6 x 4 patches of 16) padded to 112 x 64; patch centres at x 8, 24, .., 88
    # and y 8, 24, 40, 56, in pixels; boxes in the image's own frame (cx, cy, w, h)
    big = [48 / 96, 32 / 64, 60 / 96, 60 / 64]  # x 18..78, y 2..62: columns 1-4, every row
    small_inside = [56 / 96, 40 / 64, 20 / 96, 20 / 64]  # x 46..66, y 30..50: column 3 (56), row 2 (40)
    tiny = [5 / 96, 60 / 64, 4 / 96, 4 / 64]  # x 3..7, y 58..62: covers no centre; held by patch (3, 0)
    target = {"labels": torch.tensor([0, 1, 2]), "boxes": torch.tensor([big, small_inside, tiny]),
              "size": torch.tensor([64, 96])}
    out = dense_targets([target], (4, 7), 16, (64, 112), num_classes=3)
    n = 3  # no object
    assert out["dense_labels"][0].reshape(4, 7).tolist() == [
        [n, 0, 0, 0, 0, n, -1],
        [n, 0, 0, 0, 0, n, -1],
        [n, 0, 0, 1, 0, n, -1],  # the smaller box wins where both cover a centre
        [2, 0, 0, 0, 0, n, -1],  # the last column's centre (x 104) is outside the image: padding
    ]
    boxes = out["dense_boxes"][0].reshape(4, 7, 4)
    assert torch.equal(boxes[2, 3], torch.tensor(small_inside)) and torch.equal(boxes[0, 1], torch.tensor(big))
    assert torch.equal(boxes[3, 0], torch.tensor(tiny))
    assert torch.allclose(out["patch_centres"][0].reshape(4, 7, 2)[1, 2], torch.tensor([40 / 96, 24 / 64]))
    empty = dense_targets([{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}], (2, 2), 16,
                          (32, 32), num_classes=3)  # no "size": the padded input is the image
    assert empty["dense_labels"].tolist() == [[n] * 4]


def test_the_dense_head_reads_what_the_last_block_reads_and_changes_no_output():
    model = _model(mid_pos_embed=True)
    x = torch.randn(2, 3, 64, 96)
    alone = model(x)
    out = model(x, output_patch_features=True)
    for key in ("logits", "pred_boxes"):
        assert torch.equal(out[key], alone[key]), key
    # the tokens entering the last block, by hand: embeddings, position, every block but the last
    p, t = model.config.patch_size, model.config.num_det_tokens
    pos, mid = model.position_embeddings((64 // p, 96 // p))
    h = torch.cat([model.cls_token.expand(2, -1, -1), model.patch_embed(x), model.det_tokens.expand(2, -1, -1)], 1)
    h = h + pos
    for i, block in enumerate(model.blocks[:-1]):
        h = block(h)[0] + mid[i]
    assert torch.allclose(out["patch_features"], h[:, 1:-t], atol=1e-6)
    assert out["patch_features"].shape == (2, 4 * 6, model.config.hidden_size)


def test_the_dense_loss_by_hand():
    model = _model()
    extra = ExtraTokens(model.config, dense=0.5)
    torch.nn.init.normal_(extra.dense_head["boxes"].weight, std=0.1)  # boxes away from the start
    targets = _targets((2, 0, 3))
    x = torch.randn(3, 3, 64, 64)
    batch = extra.prepare(model, x, targets, torch.Generator().manual_seed(0))
    assert batch.model_inputs() == {"output_patch_features": True}  # no tokens, no mask
    out = model(x, **batch.model_inputs())
    criterion = SetCriterion(3, HungarianMatcher(), eos_coef=0.1)
    norm = extra.normalizers([(x, targets)], model.config.patch_size, criterion.eos_coef, "cpu")
    losses = extra.losses(out, targets, batch, criterion, norm)
    assert set(losses) == {"loss_dense"}
    head = extra.dense_head
    ce_sum = ce_weights = l1 = giou = positives = 0.0
    for i in range(3):
        for j in range(16):  # 4 x 4 patches of 16; centre (col + 0.5) / 4, (row + 0.5) / 4
            f = head["norm"](out["patch_features"][i, j])
            label = int(batch.dense_labels[i, j])
            weight = 0.1 if label == 3 else 1.0
            ce_sum += weight * F.cross_entropy(head["classes"](f)[None], torch.tensor([label]))
            ce_weights += weight
            if label < 3:
                raw = head["boxes"](f)
                centre = torch.tensor([(j % 4 + 0.5) / 4, (j // 4 + 0.5) / 4])
                box = torch.cat([centre + torch.tanh(raw[:2]) / 2, torch.sigmoid(raw[2:])])
                true = batch.dense_boxes[i, j]
                l1 += (box - true).abs().sum()
                giou += 1 - generalized_box_iou(cxcywh_to_xyxy(box[None]), cxcywh_to_xyxy(true[None]))[0, 0]
                positives += 1
    assert positives >= 5  # every object has at least the patch that holds its centre
    expected = 0.5 * (ce_sum / ce_weights + (5 * l1 + 2 * giou) / positives)
    assert torch.allclose(losses["loss_dense"], expected, atol=1e-5)
    (grad,) = torch.autograd.grad(losses["loss_dense"], model.blocks[0].parameters().__next__())
    assert torch.count_nonzero(grad) > 0  # it trains the backbone


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("shapes"), n=6, n_val=3)


OPTIONS = dict(det_groups=2, denoising=2, dense_aux=1.0)


def test_a_run_with_them_exports_the_model_it_would_without(data, tmp_path):
    onnx = pytest.importorskip("onnx")
    from yolos.export import export_model

    models, graphs = {}, {}
    for name, kw in (("plain", {}), ("extra", OPTIONS)):
        fit(tiny_config(data, tmp_path / name, epochs=1, lr=1e-3, augment=False, seed=3, **kw))
        models[name] = load_native(tmp_path / name / "last.safetensors")
        path = export_model(models[name], tmp_path / f"{name}.onnx")
        graphs[name] = [(n.op_type, list(n.input), list(n.output)) for n in onnx.load(str(path)).graph.node]
    rows = [json.loads(ln) for ln in (tmp_path / "extra" / "log.jsonl").read_text().splitlines()]
    assert rows[0]["config"]["det_groups"] == 2 and rows[0]["config"]["denoising"] == 2
    epoch = next(r for r in rows if r.get("type") == "epoch")
    assert epoch["train"]["loss_groups"] > 0 and epoch["train"]["loss_dn"] > 0 and epoch["train"]["loss_dense"] > 0
    plain, extra = models["plain"].state_dict(), models["extra"].state_dict()
    assert {k: v.shape for k, v in plain.items()} == {k: v.shape for k, v in extra.items()}
    assert not torch.equal(plain["class_head.layers.2.weight"], extra["class_head.layers.2.weight"])
    assert graphs["plain"] == graphs["extra"]
    state = torch.load(tmp_path / "extra" / "state.pt", weights_only=True)
    assert state["extra_tokens"]["group_tokens"].shape == (1, TINY["num_det_tokens"], TINY["hidden_size"])
    assert state["extra_tokens"]["dense_head.boxes.weight"].shape == (4, TINY["hidden_size"])


def test_a_run_with_them_resumes_bit_for_bit(data, tmp_path):
    cfg = dict(epochs=2, batch_size=2, lr=1e-3, seed=3, **OPTIONS)
    fit(tiny_config(data, tmp_path / "a", **cfg))
    straight = torch.load(tmp_path / "a" / "state.pt", weights_only=True)
    calls = []
    real_step = StepReporter.step

    def interrupt_at_step_4(self, values, lr):  # Ctrl-C in the middle of the second epoch
        real_step(self, values, lr)
        calls.append(1)
        if len(calls) == 4:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(StepReporter, "step", interrupt_at_step_4)
        with pytest.raises(TrainingInterrupted):
            fit(tiny_config(data, tmp_path / "b", **cfg))
    assert torch.load(tmp_path / "b" / "state.pt", weights_only=True)["global_step"] == 4
    fit(tiny_config(data, tmp_path / "b", resume=True, **cfg), given={"resume"})
    resumed = torch.load(tmp_path / "b" / "state.pt", weights_only=True)
    assert resumed["global_step"] == straight["global_step"] == 6
    for part in ("model", "extra_tokens"):
        for k, v in straight[part].items():
            assert torch.equal(v, resumed[part][k]), (part, k)
