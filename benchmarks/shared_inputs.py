"""Inputs the tests and benchmarks share, kept out of the package: where the real COCO files live
(read in place, never copied) and seeded random weights of the real shapes."""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import nn

ENV = "YOLOS_SHARED_DATA"


def shared_data_dir() -> Path:
    """``$YOLOS_SHARED_DATA`` when set, else ``shared/data`` beside the repository checkout."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    return Path(__file__).resolve().parents[2] / "shared" / "data"

@torch.no_grad()
def random_weights_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every parameter of ``model`` (ours or transformers') with seeded random values, by
    module kind, scaled so activations stay O(1) through the whole network, and far from any
    initialization so a misplaced tensor shows: Linear/Conv weights N(0, 1/fan_in), LayerNorm
    gains 1 + N(0, 0.1^2), biases N(0, 0.02^2), anything else (tokens, position embeddings)
    N(0, 0.1^2). Returns ``model``."""
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            noise = torch.randn(p.shape, generator=g)
            if isinstance(module, nn.LayerNorm) and name == "weight":
                p.copy_(1 + 0.1 * noise)
            elif name == "bias":
                p.copy_(0.02 * noise)
            elif isinstance(module, (nn.Linear, nn.Conv2d)):
                p.copy_(noise / math.sqrt(math.prod(p.shape[1:])))
            else:
                p.copy_(0.1 * noise)
    return model
