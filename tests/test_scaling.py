"""Model scaling reproduces the paper's Table 1 shapes from DeiT-Ti."""
from __future__ import annotations

import math

import pytest

from yolos.analysis.scaling import DEIT_S, DEIT_TI, Shape, exponents, scale, scale_to_flops


def test_exponents_spread_the_whole_flops_factor():
    for strategy in ("w", "dwr", "dWr"):
        assert sum(exponents(strategy)) == pytest.approx(1.0)
    assert exponents("dWr") == pytest.approx((0.1, 0.8, 0.1))
    with pytest.raises(ValueError, match="unknown scaling"):
        exponents("dw")


def test_table1_uniform_compound_dwr():
    # 1.2 G -> 4.6 G (the paper's budgets), 6 heads as in Table 1
    assert scale_to_flops(DEIT_TI, 4.6e9, "dwr", base_flops=1.2e9, heads=6) == Shape(19, 240, 272, 6)


def test_table1_fast_dWr():
    assert scale_to_flops(DEIT_TI, 4.6e9, "dWr", base_flops=1.2e9, heads=6) == Shape(14, 330, 240, 6)


def test_width_scaling_gives_deit_s():
    assert scale_to_flops(DEIT_TI, 4.6e9, "w", base_flops=1.2e9) == DEIT_S
    assert scale(DEIT_TI, 4.0, "w") == DEIT_S  # exactly 4x the linear FLOPs


def test_scaled_models_land_near_the_target():
    target = 4.6e9
    for strategy, heads in (("w", None), ("dwr", 6), ("dWr", 6)):
        got = scale_to_flops(DEIT_TI, target, strategy, base_flops=1.2e9, heads=heads)
        assert got.flops() == pytest.approx(target, rel=0.03)
        assert got.width % got.heads == 0 and got.resolution % 16 == 0


def test_continuous_dwr_before_rounding():
    # hand check of the exponents: d * s^(1/3), w and r * s^(1/6)
    s = 4.6 / 1.2
    assert 12 * s ** (1 / 3) == pytest.approx(18.78, abs=0.01)
    assert 192 * s ** (1 / 6) == pytest.approx(240.2, abs=0.1)
    # plain rounding of r would give 288: the resolution must absorb d/w rounding (272)
    assert round(224 * s ** (1 / 6) / 16) * 16 == 288
    assert 224 * math.sqrt(s / (19 / 12 * (240 / 192) ** 2)) == pytest.approx(278.8, abs=0.1)


def test_bad_factor():
    with pytest.raises(ValueError):
        scale(DEIT_TI, 0, "w")
