"""Training recipes: option resolution, the head priors, the sin-cos start, data priors, and the
rendered (synthetic) training split of a dataset YAML."""
from __future__ import annotations

import json
import math

import pytest
import torch

from yolos.data.dataset import DetectionDataset
from yolos.data.synthetic import ShapesSpec, SyntheticShapes, write_synthetic_dataset
from yolos.errors import DatasetError
from yolos.model import create_model, get_variant
from yolos.train.config import RECIPES, TrainConfig
from yolos.train.recipe import (
    dataset_priors,
    init_box_anchors,
    init_head_priors,
    init_scratch_weights,
    prepare_scratch_model,
)

MICRO = get_variant("micro")


def test_paper_recipe_keeps_the_original_defaults_and_the_variant_fills_the_rest():
    cfg = TrainConfig(data="x").resolved(MICRO)
    assert (cfg.warmup_steps, cfg.bf16, cfg.head_priors, cfg.patch_size, cfg.anchor_matching) == (0, False, False,
                                                                                                   None, 0.0)
    assert (cfg.lr, cfg.batch_size, cfg.variant) == (MICRO.lr, MICRO.batch_size, "micro")  # the variant's
    assert cfg.train_sizes == list(MICRO.train_scales) and (cfg.eval_size, cfg.eval_max_size) == (128, 128)


def test_scratch_recipe_fills_unset_options_and_explicit_ones_win():
    cfg = TrainConfig(data="x", recipe="scratch").resolved(MICRO)
    for key, value in RECIPES["scratch"].items():
        assert getattr(cfg, key) == (None if value == "auto" else value)  # "auto": timed when the run starts
    mine = TrainConfig(data="x", recipe="scratch", lr=5e-4, bf16=False, warmup_steps=0).resolved(MICRO)
    assert (mine.lr, mine.bf16, mine.warmup_steps) == (5e-4, False, 0)
    assert mine.head_priors is True  # still the recipe's where unset
    assert mine.resolved(MICRO) == mine  # idempotent (a resumed run resolves again)


def test_finetune_recipe_keeps_the_checkpoints_anchor_matching():
    anchored = create_model("micro").config.replace(anchor_matching=50.0)
    assert TrainConfig(data="x", recipe="finetune").resolved(MICRO, anchored).anchor_matching == 50.0
    plain = create_model("micro").config
    assert TrainConfig(data="x", recipe="finetune").resolved(MICRO, plain).anchor_matching == 0.0
    assert TrainConfig(data="x", recipe="finetune", anchor_matching=7).resolved(MICRO, anchored).anchor_matching == 7
    # its anchors are cells of its own token grid: keeping fewer tokens leaves them behind
    fewer = TrainConfig(data="x", recipe="finetune", num_det_tokens=anchored.num_det_tokens - 1)
    assert fewer.resolved(MICRO, anchored).anchor_matching == 0.0
    same = TrainConfig(data="x", recipe="finetune", num_det_tokens=anchored.num_det_tokens)
    assert same.resolved(MICRO, anchored).anchor_matching == 50.0


@pytest.mark.parametrize("kwargs, message", [
    (dict(recipe="fast"), "--recipe: expected one of paper, scratch, finetune"),
    (dict(lr=-1), "--lr"), (dict(epochs=0), "--epochs"), (dict(batch_size=2.5), "--batch-size"),
    (dict(train_sizes=[8]), "--train-sizes"), (dict(bf16="yes"), "--bf16"), (dict(init_kind="x"), "--init-kind"),
    (dict(accumulate_steps=0), "--accumulate-steps"),
])
def test_a_bad_value_from_python_gets_the_cli_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(data="x", **kwargs)


def test_head_priors_give_the_stated_probabilities_and_boxes():
    torch.manual_seed(0)
    model = create_model("micro", num_det_tokens=20, num_classes=3).eval()
    init_head_priors(model, objects_per_image=5.0, box_size=0.15)
    with torch.no_grad():
        out = model(torch.randn(4, 3, 128, 128))
    prob = out["logits"].softmax(-1)
    # the bias alone gives exactly p(no object) = 1 - 5/20 = 0.75 and 0.25/3 per class; the
    # random weights move each token around it
    assert abs(prob[..., -1].mean().item() - 0.75) < 0.1
    assert abs(prob[..., 0].mean().item() - 0.25 / 3) < 0.05
    wh = out["pred_boxes"][..., 2:]
    assert abs(wh.median().item() - 0.15) < 0.05
    assert wh.std().item() > 1e-3  # tokens still start with distinct boxes
    bias = model.class_head.layers[-1].bias
    assert torch.allclose(bias.softmax(0), torch.tensor([0.25 / 3] * 3 + [0.75]), atol=1e-6)


def _shapes_batch(n=16, seed=3, size=128):
    from yolos.data.collate import collate_fn

    ds = SyntheticShapes(ShapesSpec(size, 1, 8, min_size=12, max_size=64), n, seed=seed)
    return collate_fn([ds[i] for i in range(n)])


@pytest.mark.parametrize("mid", [False, True])
def test_scratch_init_position_code_is_a_gaussian_kernel(mid):
    torch.manual_seed(0)
    model = create_model("micro", mid_pos_embed=mid)  # width 128, 4 heads: 32 position channels
    init_scratch_weights(model, pool_width=1.5)
    gh, gw = model.config.grid_size
    grid = model.pos_embed[0, 1:1 + gh * gw]
    assert torch.count_nonzero(grid[:, 32:]) == 0  # content channels carry no position
    # code(p) . code(q) / 32 = mean of cos(w (p - q)) over w ~ N(0, 1/1.5^2): a Gaussian kernel
    # exp(-|p - q|^2 / (2 * 1.5^2)) up to the sampling noise of 16 frequencies
    same = (grid[0] @ grid[0]).item() / 32
    far = (grid[0] @ grid[-1]).item() / 32  # opposite corners, 7 * sqrt(2) patches apart
    near = (grid[0] @ grid[1]).item() / 32  # one patch apart: kernel 0.80
    assert same == pytest.approx(1.0, abs=1e-5)
    assert abs(far) < 0.35 and near > 0.5
    if mid:
        assert torch.equal(model.mid_pos_embed[1, 0], model.pos_embed[0])
    assert torch.count_nonzero(model.patch_embed.proj.weight[:32]) == 0
    qkv = model.blocks[0].attn.qkv.weight
    assert torch.equal(qkv[:128], qkv[128:256])  # query = key projection at the start


def test_scratch_init_makes_det_tokens_attend_near_their_anchor():
    from yolos.train.matcher import anchor_centres

    x, _ = _shapes_batch(8)
    torch.manual_seed(0)
    model = create_model("micro", num_det_tokens=20).eval()
    init_scratch_weights(model)
    with torch.no_grad():
        attn = model(x, output_attentions=True)["attentions"].mean(1)  # last layer, mean of heads
    t, g = 20, 8
    centres = anchor_centres(t).float()
    cells = (torch.arange(g) + 0.5) / g
    cy, cx = torch.meshgrid(cells, cells, indexing="ij")
    dist = ((cx.flatten()[None] - centres[:, :1]) ** 2 + (cy.flatten()[None] - centres[:, 1:]) ** 2).sqrt()
    near = (dist < 0.2).float()  # about 5 of the 64 patches per token
    mass = (attn[:, -t:, 1:1 + g * g] * near).sum(-1).mean().item()
    uniform = (near.sum(-1) / attn.shape[-1]).mean().item()
    assert mass > 3 * uniform, (mass, uniform)


def test_box_anchors_put_each_token_on_its_cell_on_unseen_images():
    from yolos.train.matcher import anchor_centres

    torch.manual_seed(0)
    model = create_model("micro", num_det_tokens=20)
    init_scratch_weights(model)
    err = init_box_anchors(model, _shapes_batch(16, seed=3)[0], box_size=0.15)
    assert err < 0.02
    model.eval()
    with torch.no_grad():
        boxes = model(_shapes_batch(16, seed=4)[0])["pred_boxes"]  # other images
    centres = anchor_centres(20).float()
    mean_centres = boxes[..., :2].mean(0)
    # every token stays nearest its own cell (cells are 0.2 x 0.25 apart), most of them closely
    assert torch.equal(torch.cdist(mean_centres, centres).argmin(1), torch.arange(20))
    assert (mean_centres - centres).norm(dim=-1).median() < 0.03
    assert boxes[..., 2:].mean().item() == pytest.approx(0.15, abs=0.02)


def test_prepare_scratch_model_applies_what_is_asked():
    spec = ShapesSpec(128, 1, 8, min_size=12, max_size=64)
    data = SyntheticShapes(spec, 40, seed=1)
    torch.manual_seed(0)
    plain = create_model("micro", num_det_tokens=20)
    model = create_model("micro", num_det_tokens=20)
    model.load_state_dict(plain.state_dict())
    assert prepare_scratch_model(model, data, scratch_init=False, anchors=False, head_priors=False) == "hustvl/YOLOS init"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), plain.state_dict().values()))
    text = prepare_scratch_model(model, data, scratch_init=True, anchors=True, head_priors=True)
    assert "scratch init" in text and "head priors" in text and "anchor boxes" in text


def test_dataset_priors_from_annotations(tmp_path):
    ann = write_synthetic_dataset(tmp_path, num_images=10, image_size=64, max_objects=4, seed=2)
    data = json.loads(ann.read_text())
    ds = DetectionDataset(tmp_path / "images", ann)
    objects, side = dataset_priors(ds)
    assert objects == pytest.approx(len(data["annotations"]) / 10)
    sides = sorted(math.sqrt(a["bbox"][2] * a["bbox"][3]) / 64 for a in data["annotations"])
    assert side == pytest.approx(sides[len(sides) // 2])
    # the same priors from the decoded targets (the path rendered datasets take)
    objects2, side2 = dataset_priors(torch.utils.data.Subset(ds, range(10)))
    assert objects2 == pytest.approx(objects) and side2 == pytest.approx(side, rel=1e-5)


def test_synthetic_shapes_fresh_and_fixed():
    spec = ShapesSpec(64, 1, 5, min_size=8, max_size=24)
    fresh, fixed = SyntheticShapes(spec, 8, seed=1), SyntheticShapes(spec, 8, seed=1, fresh=False)
    a = fresh[3][0]
    fresh.set_epoch(1)
    fixed.set_epoch(1)
    assert not torch.equal(a, fresh[3][0])  # a new image in the next epoch
    fixed_a = fixed[3][0]
    fixed.set_epoch(7)
    assert torch.equal(fixed_a, fixed[3][0])
    fresh.set_epoch(0)
    assert torch.equal(a, fresh[3][0])  # a pure function of (seed, epoch, index)
    x, t = fresh[5]
    assert x.shape == (3, 64, 64) and t["boxes"].shape[1] == 4 and len(t["labels"]) == len(t["boxes"])
    assert ((t["boxes"] > 0) & (t["boxes"] <= 1)).all()


def test_synthetic_labels_match_a_written_folder(tmp_path):
    spec = ShapesSpec(64, 1, 3, shapes=("circle", "triangle"))
    ann = write_synthetic_dataset(tmp_path, 4, 64, 1, 3, spec.shapes, seed=0)
    assert DetectionDataset(tmp_path / "images", ann).class_names == SyntheticShapes(spec, 4).class_names


def _yaml(tmp_path, train: str, val: bool = True):
    write_synthetic_dataset(tmp_path / "val", 4, 64, 1, 3, seed=9)
    text = f"train:\n  {train}\n" + ("val:\n  images: val/images\n  annotations: val/annotations.json\n" if val else "")
    path = tmp_path / "data.yaml"
    path.write_text(text)
    return path


def test_synthetic_train_split_in_a_dataset_yaml(tmp_path):
    from yolos.train.builders import build_datasets
    from yolos.train.data_order import SeededDataset

    path = _yaml(tmp_path, "synthetic: {num_images: 12, image_size: 64, max_objects: 3, seed: 4}")
    _, train, val = build_datasets(TrainConfig(data=str(path), augment=False, train_sizes=[64]).resolved(MICRO))
    assert isinstance(train, SyntheticShapes) and len(train) == 12 and train.class_names == val.class_names
    seeded = SeededDataset(train, seed=0)
    first = seeded[2][0]
    seeded.epoch = 1
    assert train.epoch == 1 and not torch.equal(first, seeded[2][0])


@pytest.mark.parametrize("train, message", [
    ("synthetic: {image_size: 64}", "train.synthetic.num_images"),
    ("synthetic: {num_images: 4, colour: red}", "train.synthetic.colour"),
    ("synthetic: {num_images: 4, max_size: big}", "train.synthetic.max_size"),
    ("synthetic: {num_images: 4, shapes: [hexagon]}", "train.synthetic"),
    ("synthetic: {num_images: 4, image_size: 64, shapes: [square]}", "differ from the val split"),
    ("synthetic: 5", "train.synthetic"),
])
def test_synthetic_split_errors_name_the_field(tmp_path, train, message):
    from yolos.train.builders import build_datasets

    path = _yaml(tmp_path, train)
    with pytest.raises(DatasetError, match=message):
        build_datasets(TrainConfig(data=str(path), augment=False, train_sizes=[64]).resolved(MICRO))


def test_synthetic_split_needs_a_val_split(tmp_path):
    from yolos.data.dataset_config import resolve_dataset

    with pytest.raises(DatasetError, match="needs a 'val' split"):
        resolve_dataset(_yaml(tmp_path, "synthetic: {num_images: 4}", val=False))


def test_anchor_matching_gives_each_object_its_nearest_cell():
    """With a large anchor cost the assignment follows the anchors (hand-computed), not the
    predictions, which here are all the same box and would match at random."""
    from yolos.train.matcher import HungarianMatcher, anchor_centres

    assert anchor_centres(4).tolist() == [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]
    outputs = {"logits": torch.zeros(1, 4, 4), "pred_boxes": torch.full((1, 4, 4), 0.5)}
    targets = [{"labels": torch.tensor([0, 2, 1]),
                "boxes": torch.tensor([[0.8, 0.7, 0.1, 0.1], [0.2, 0.3, 0.2, 0.2], [0.7, 0.2, 0.1, 0.1]])}]
    rows, cols = HungarianMatcher(cost_anchor=50)(outputs, targets)[0]
    assert dict(zip(cols.tolist(), rows.tolist())) == {0: 3, 1: 0, 2: 1}
    plain = HungarianMatcher().cost_matrix(outputs, targets)
    anchored = HungarianMatcher(cost_anchor=50).cost_matrix(outputs, targets)
    expected = 50 * (anchor_centres(4)[:, None, :].float() - targets[0]["boxes"][None, :, :2]).abs().sum(-1)
    torch.testing.assert_close(anchored - plain, expected[None])
