"""Shared fixtures: the real COCO data beside the checkout, read in place (never copied)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (the shared/ folder beside the checkout)")
    return path


@pytest.fixture
def cats_png() -> Path:
    return shared_data("cats-39769", "000000039769.png")


@pytest.fixture
def coco_val80() -> Path:
    return shared_data("coco-val80")


@pytest.fixture
def coco128() -> Path:
    return shared_data("coco128")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def one_thread():
    """One torch thread for the test, restored after: on a shared 2-core machine, intra-op
    threads contending with other processes make tiny models 10x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
