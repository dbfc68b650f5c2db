"""Holm's family-wise adjustment (the claim table's multiple-testing correction), by hand."""

import math

import pytest

from manifold_lab.stats import holm_adjust


def test_holm_on_a_hand_computed_example():
    # m = 4, sorted 0.005 < 0.01 < 0.03 < 0.04: 4 x 0.005 = 0.02; 3 x 0.01 = 0.03; 2 x 0.03 = 0.06;
    # 1 x 0.04 = 0.04 raised to the running maximum 0.06 (step-down monotonicity)
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # at alpha 0.05 Holm rejects the two smallest; Bonferroni (4 p) would reject only 0.005
    assert [p < 0.05 for p in holm_adjust([0.01, 0.04, 0.03, 0.005])] == [True, False, False, True]


def test_holm_caps_at_one_skips_nan_and_keeps_order():
    out = holm_adjust([0.5, float("nan"), 0.6])  # m = 2: 2 x 0.5 = 1.0, then max(1.0, 0.6)
    assert out[0] == out[2] == 1.0 and math.isnan(out[1])
    assert holm_adjust([0.2]) == [0.2] and holm_adjust([]) == []
    assert holm_adjust([0.02, 0.02]) == [0.04, 0.04]  # ties: both get 2 x 0.02


def test_holm_rejects_bad_input():
    with pytest.raises(ValueError, match=r"p-values must lie in \[0, 1\]"):
        holm_adjust([0.1, 1.5])
    with pytest.raises(ValueError, match="1-D"):
        holm_adjust([[0.1, 0.2]])
