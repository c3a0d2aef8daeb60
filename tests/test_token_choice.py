"""Fewer [DET] tokens for a fine-tune: ``YOLOS.keep_det_tokens`` slices the tokens and both
position tables, and ``most_matched_tokens`` keeps the tokens the matcher picks most often (counts
worked out by hand on a model whose boxes are fixed per token)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from yolos.checkpoint.native import load_native, save_native
from yolos.config import ModelConfig
from yolos.model import YOLOS
from yolos.train.token_choice import most_matched_tokens

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ModelConfig(hidden_size=16, depth=3, num_heads=2, mlp_dim=32, patch_size=16, image_size=(32, 32),
                    num_det_tokens=6, num_classes=2, mid_pos_embed=True)


def test_keep_det_tokens_slices_the_tokens_and_both_position_tables(tmp_path):
    torch.manual_seed(0)
    model = YOLOS(SMALL)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    keep = [4, 1, 2]
    model.keep_det_tokens(keep)
    after = model.state_dict()
    grid = 1 + 2 * 2  # [CLS] and the 2x2 patch grid come before the [DET] rows
    assert torch.equal(after["det_tokens"], before["det_tokens"][:, keep])
    for name in ("pos_embed", "mid_pos_embed"):
        assert torch.equal(after[name][..., :grid, :], before[name][..., :grid, :]), name
        assert torch.equal(after[name][..., grid:, :], before[name][..., [grid + i for i in keep], :]), name
    same = [k for k in before if k not in ("det_tokens", "pos_embed", "mid_pos_embed")]
    assert all(torch.equal(after[k], before[k]) for k in same)
    assert model.config.num_det_tokens == 3 and model.det_tokens.requires_grad
    x = torch.randn(2, 3, 48, 32)  # another input size: the kept rows resample with the grid
    out = model.eval()(x)
    assert out["pred_boxes"].shape == (2, 3, 4) and out["logits"].shape == (2, 3, 3)
    save_native(model, tmp_path / "three.safetensors")
    again = load_native(tmp_path / "three.safetensors").eval()
    assert torch.equal(again(x)["pred_boxes"], out["pred_boxes"])


@pytest.mark.parametrize("keep", [[], [0, 0], [6], [-1]])
def test_keep_det_tokens_refuses_bad_indices(keep):
    with pytest.raises(ValueError, match="distinct indices in 0..5"):
        YOLOS(SMALL).keep_det_tokens(keep)


class FixedBoxes(nn.Module):
    """Token ``i`` always predicts a 0.1-wide box centred at (0.1 + 0.2 i, 0.5), whatever the image."""

    def __init__(self, tokens: int = 5):
        super().__init__()
        self.config = SimpleNamespace(num_det_tokens=tokens)
        self.modes = []

    def forward(self, pixels):
        self.modes.append(self.training)
        b, t = pixels.shape[0], self.config.num_det_tokens
        centres = 0.1 + 0.2 * torch.arange(t, dtype=torch.float32)
        boxes = torch.stack([centres, torch.full((t,), 0.5), torch.full((t,), 0.1), torch.full((t,), 0.1)], 1)
        return {"logits": torch.zeros(b, t, 3), "pred_boxes": boxes.expand(b, t, 4)}


def _item(tokens: list[int]):
    """An image whose boxes sit where tokens ``tokens`` predict (a little off, as real ones would)."""
    boxes = torch.tensor([[0.11 + 0.2 * i, 0.52, 0.09, 0.12] for i in tokens])
    return torch.zeros(3, 32, 32), {"boxes": boxes, "labels": torch.zeros(len(tokens), dtype=torch.long)}


def test_most_matched_tokens_keeps_the_tokens_matched_most_often():
    # token 3 matched 3 times, token 1 twice, tokens 0 and 4 once each, token 2 never
    data = [_item([3, 1]), _item([3, 0]), _item([4, 1, 3])]
    model = FixedBoxes().train()
    choice = most_matched_tokens(model, data, 2, batch=2)
    assert choice.keep == [1, 3] and choice.share == pytest.approx(5 / 7)
    assert choice.images == 3 and choice.crowded == 1  # the image of three objects, for two tokens
    assert model.modes == [False, False] and model.training  # evaluated, then put back
    assert most_matched_tokens(model, data, 3).keep == [0, 1, 3]  # a tie (0 and 4) goes to the lower index
    assert "keeping 2 of the checkpoint's 5" in choice.describe(5) and "--num-det-tokens" in choice.describe(5)


def test_most_matched_tokens_samples_evenly_and_refuses_to_add_tokens():
    # items 0, 3, 6 and 9 (the four spread over ten) hold a box at token 2, the rest at token 0
    data = [_item([2] if i % 3 == 0 else [0]) for i in range(10)]
    choice = most_matched_tokens(FixedBoxes(), data, 1, images=4)
    assert (choice.images, choice.keep, choice.share) == (4, [2], 1.0)
    with pytest.raises(ValueError, match="--num-det-tokens 6: the checkpoint has 5 .DET. tokens"):
        most_matched_tokens(FixedBoxes(), data, 6)
