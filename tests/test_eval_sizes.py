"""One evaluation size per variant and protocol, and every entry point uses it.

Each entry point is run on a 1000x200 image (aspect 5, so the long-side cap decides the size)
and the input it gives the model is compared with ``resize_shape`` at the sizes of
``yolos.model.eval_sizes``: predict/serve/export/info follow transformers' protocol, val,
analyze and the evaluation during training follow the paper's."""
from __future__ import annotations

import argparse

import pytest
import torch
from PIL import Image

from yolos import YOLOS, create_model
from yolos.model import VARIANTS, eval_sizes
from yolos.resize import resize_shape

WIDE = Image.new("RGB", (1000, 200), (120, 80, 40))


def test_protocols_hand_checked():
    assert eval_sizes("yolos-ti") == (512, 1333) and eval_sizes("yolos-ti", "paper") == (512, 853)
    for name in ("yolos-s", "yolos-b", "yolos-s-dwr"):
        assert eval_sizes(name) == eval_sizes(name, "paper") == (800, 1333)
    assert eval_sizes("micro") == eval_sizes("micro", "paper") == (128, 128)
    custom = create_model("micro", hidden_size=64, depth=1, num_heads=2, mlp_dim=64).config.replace(
        variant=None, image_size=(96, 160))
    assert eval_sizes(custom) == (800, 1333) and eval_sizes(custom, "paper") == (96, 160)
    with pytest.raises(ValueError, match="protocol"):
        eval_sizes("yolos-ti", "coco")


def _tiny(name: str):
    """A cheap model whose config names ``name`` (so sizes follow that variant)."""
    config = create_model("micro", hidden_size=32, depth=1, num_heads=2, mlp_dim=32).config
    return YOLOS(config.replace(variant=name)).eval()


def _model_input_shape(model, fn) -> tuple[int, int]:
    seen = []
    hook = model.patch_embed.register_forward_hook(lambda m, a, o: seen.append(tuple(a[0].shape[-2:])))
    try:
        fn()
    finally:
        hook.remove()
    return seen[0]


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_entry_points_agree(name):
    from yolos.cli.analyze import _sizes as analyze_sizes
    from yolos.cli.info import describe_model
    from yolos.cli.val import _eval_transforms
    from yolos.data.transforms import transforms_for_variant
    from yolos.train.builders import _transforms
    from yolos.train.config import TrainConfig

    model = _tiny(name)
    hf, paper = eval_sizes(model.config), eval_sizes(model.config, "paper")
    # transformers' protocol: predict (and serve, which calls it), info
    got = _model_input_shape(model, lambda: model.predict(WIDE))
    assert got == resize_shape(200, 1000, *hf, rule="hf")
    info = describe_model(model)
    assert (info["eval_short_side"], info["eval_long_side"]) == hf
    # the paper's protocol: val, analyze, evaluation during training, the variant's recipe
    target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    want = resize_shape(200, 1000, *paper, rule="orig")
    args = argparse.Namespace(eval_size=None, eval_max_size=None)
    for transforms in (_eval_transforms(model, args), _transforms(TrainConfig(), name, "val"),
                       transforms_for_variant(name, "val")):
        assert tuple(transforms(WIDE, dict(target))[0].shape[-2:]) == want
    assert analyze_sizes(model.config, None, None) == paper
