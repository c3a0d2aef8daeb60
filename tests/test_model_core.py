"""Model invariants that need no reference implementation."""
import pytest
import torch

from yolos.model import VARIANTS, create_model, resample_pos_embed


def test_resample_identity_at_same_grid():
    pe = torch.randn(2, 1 + 4 * 6 + 3, 8)
    out = resample_pos_embed(pe, (4, 6), (4, 6), 1, 3)
    torch.testing.assert_close(out, pe, rtol=0, atol=1e-6)


def test_resample_keeps_prefix_and_suffix_and_transposed_grid_differs():
    pe = torch.randn(1, 1 + 4 * 6 + 3, 8)
    out = resample_pos_embed(pe, (4, 6), (6, 4), 1, 3)
    assert out.shape == (1, 1 + 24 + 3, 8)
    assert torch.equal(out[:, :1], pe[:, :1]) and torch.equal(out[:, -3:], pe[:, -3:])
    # same number of cells, other layout: must be resampled, not reused as-is
    assert not torch.allclose(out[:, 1:-3], pe[:, 1:-3])


def test_resample_rejects_wrong_length():
    with pytest.raises(ValueError, match="expected"):
        resample_pos_embed(torch.randn(1, 10, 4), (3, 3), (2, 2), 1, 3)


@pytest.mark.parametrize("size", [(128, 128), (100, 150)])
def test_micro_forward_shapes(size):
    model = create_model("micro").eval()
    out = model(torch.randn(2, 3, *size))
    t, c = model.config.num_det_tokens, model.config.num_classes
    assert out["logits"].shape == (2, t, c + 1)
    assert out["pred_boxes"].shape == (2, t, 4)
    assert ((out["pred_boxes"] >= 0) & (out["pred_boxes"] <= 1)).all()


def test_position_cache_invalidated_by_inplace_update():
    model = create_model("micro").eval()
    x = torch.randn(1, 3, 96, 112)
    with torch.no_grad():
        first = model(x)["logits"]
        model.pos_embed.add_(1.0)  # what an optimizer step does
        second = model(x)["logits"]
    assert not torch.allclose(first, second)


def test_parameter_counts_match_spec():
    # the paper's Table 1: Ti 6.49 M, S 30.68 M, S-dWr 27.56 M, B 127.80 M
    expected = {"yolos-ti": 6.49, "yolos-s": 30.68, "yolos-s-dwr": 27.56, "yolos-b": 127.80}
    for name, millions in expected.items():
        model = create_model(name)
        assert round(model.num_parameters() / 1e6, 2) == pytest.approx(millions, abs=0.01), name
    assert set(expected) < set(VARIANTS)
