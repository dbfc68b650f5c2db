"""Theorem 1's closed form against exact binomial sums and simulation."""

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from manifold_lab.metrics import estimate_kept_fraction
from manifold_lab.theory import collapsed_fraction_theory, kept_fraction, kept_fraction_bound, n_mn


def exact(m, n):
    return Fraction(sum(math.comb(m, k) for k in range(n, m + 1)), 2**m)  # P(Bin(m,1/2) >= n)


@pytest.mark.parametrize("m", [1, 2, 3, 5, 10, 30, 64, 100, 257, 1000])
def test_kept_fraction_equals_binomial_tail(m):
    for n in sorted({1, 2, 3, m // 2, m - 1, m, m + 1} - {0}):
        assert kept_fraction(m, n) == float(exact(m, n))
        assert collapsed_fraction_theory(m, n) == float(1 - exact(m, n))


def test_large_m_no_overflow_and_symmetry():
    # N_{m,n} = sum_{k<=m-n} C(m,k): at m = 2n the tail is 1/2 + C(2n,n)/2^{2n+1}
    value = kept_fraction(1000, 500)
    assert value == pytest.approx(0.5 + math.comb(1000, 500) / 2**1001, rel=1e-15)
    assert kept_fraction(1000, 2) == 1.0 - float(Fraction(1001, 2**1000))
    assert 0 < collapsed_fraction_theory(1000, 2) < 1e-297  # a subnormal-free tiny float, not 0 or NaN


def test_edge_cases_and_scipy_agreement():
    assert kept_fraction(2, 3) == 0.0 and kept_fraction(5, 0) == 1.0 and kept_fraction(5, -2) == 1.0
    assert n_mn(0, 0) == 1 and n_mn(3, -1) == 8 and n_mn(2, 3) == 0
    assert n_mn(4, 2) == 1 + 4 + 6
    ms = np.arange(1, 40)
    np.testing.assert_allclose(kept_fraction(ms, 3), stats.binom.sf(2, ms, 0.5), rtol=1e-12)


def test_bound_is_below_the_exact_value_for_m_at_least_n():
    for m in range(1, 200, 3):
        for n in (1, 2, 3, 5):
            if m < n:
                continue
            assert kept_fraction_bound(m, n) <= kept_fraction(m, n) + 1e-15


@pytest.mark.parametrize("bad", [(-1, 2), (3, 1.0), (2.5, 1), ("3", 1), (True, 1)])
def test_bad_arguments(bad):
    with pytest.raises(ValueError):
        kept_fraction(*bad)


@pytest.mark.parametrize("m, n", [(2, 2), (3, 2), (5, 2), (4, 3), (8, 3), (6, 5), (10, 2), (12, 6)])
def test_monte_carlo_within_three_standard_errors(m, n):
    mean, se = estimate_kept_fraction(m, n, n_matrices=300, n_points=200, random_state=1000 * m + n)
    assert se > 0
    assert abs(mean - kept_fraction(m, n)) <= 3 * se, (mean, se, kept_fraction(m, n))
