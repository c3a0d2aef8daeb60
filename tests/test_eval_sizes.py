"""One evaluation size per variant and protocol, and every entry point uses it.

Each entry point is run on a 1000x200 image (aspect 5, so the long-side cap decides the size)
and the input it gives the model is compared with ``resize_shape`` at the sizes of
``yolos.model.eval_sizes``: predict/serve/export/info follow transformers' protocol, val,
analyze and the evaluation during training follow the paper's."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

import yolos
from yolos import create_model
from yolos.model import VARIANTS, eval_sizes, input_size
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
    return yolos.Detector(config.replace(variant=name)).eval()


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
    """Every route takes its size from ``input_size``: predict (and serve, which calls it) and
    info under transformers' protocol; val, analyze, training's evaluation and the variant's
    recipe under the paper's."""
    from yolos.cli.info import describe_model
    from yolos.data import transforms as T
    from yolos.data.transforms import transforms_for_variant
    from yolos.model import get_variant
    from yolos.train.config import TrainConfig

    model = _tiny(name)
    hf, paper = eval_sizes(model.config), eval_sizes(model.config, "paper")
    assert input_size(model.config) == hf and input_size(model.config, "paper") == paper
    got = _model_input_shape(model, lambda: model.predict(WIDE))
    assert got == resize_shape(200, 1000, *hf, rule="hf")
    info = describe_model(model)
    assert (info["eval_short_side"], info["eval_long_side"]) == hf
    target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    want = resize_shape(200, 1000, *paper, rule="orig")
    cfg = TrainConfig().resolved(get_variant(name))
    assert (cfg.eval_size, cfg.eval_max_size) == paper
    for transforms in (T.make_transforms("val", eval_size=input_size(model.config, "paper")),
                       transforms_for_variant(name, "val")):
        assert tuple(transforms(WIDE, dict(target))[0].shape[-2:]) == want


def test_given_sizes_win_and_the_cap_never_undercuts_the_short_side():
    assert input_size("yolos-ti", short_side=320) == (320, 1333)
    assert input_size("yolos-ti", "paper", 900) == (900, 900)  # a cap below the short side would shrink it
    assert input_size("micro", "paper", None, 200) == (128, 200)
    # the same sizes from the command line, for a command of each protocol
    model = _tiny("yolos-ti")
    got = _model_input_shape(model, lambda: model.predict(WIDE, short_side=320, long_side=700))
    assert got == resize_shape(200, 1000, 320, 700, rule="hf")
