"""CUDA checks (skipped without a GPU: tests/conftest.py skips the ``gpu`` marker)."""
import pytest
import torch

from yolos import create_model
from yolos.cli import main as cli_main

pytestmark = pytest.mark.gpu


def test_cuda_forward_matches_cpu():
    torch.manual_seed(0)
    model = create_model("micro", mid_pos_embed=True).eval()
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        ref = model(x)
        out = model.cuda()(x.cuda())
    # TF32 matmuls may be on: a looser bound than fp32 CPU parity
    torch.testing.assert_close(out["logits"].cpu(), ref["logits"], rtol=0, atol=1e-3)
    torch.testing.assert_close(out["pred_boxes"].cpu(), ref["pred_boxes"], rtol=0, atol=1e-3)


def test_cuda_training_step_has_finite_gradients():
    model = create_model("micro").cuda().train()
    out = model(torch.randn(2, 3, 128, 128, device="cuda"))
    out["logits"].logsumexp(-1).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_cli_benchmark_on_cuda(capsys):
    assert cli_main(["benchmark", "--model", "micro", "--device", "cuda", "--images", "3"]) == 0
    assert "cuda" in capsys.readouterr().out
