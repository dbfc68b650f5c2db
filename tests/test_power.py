"""manifold_lab.power against simulation and the normal formula."""

import math

import numpy as np
import pytest
from scipy import stats

from manifold_lab.power import detectable_difference, paired_power, seeds_needed


def test_simulated_power_at_the_detectable_difference_is_the_target():
    """20,000 simulated studies of n = 5 normal differences at the MDD reject with rate 0.80 +- 0.015."""
    n, sd = 5, 1.3
    delta = detectable_difference(n, sd)
    rng = np.random.default_rng(0)
    d = rng.normal(delta, sd, size=(20_000, n))
    p = stats.ttest_1samp(d, 0.0, axis=1).pvalue
    assert (p < 0.05).mean() == pytest.approx(0.80, abs=0.015)


def test_the_null_rejects_at_alpha_and_holm_raises_the_bar():
    assert paired_power(0.0, 5, 1.0) == pytest.approx(0.05, abs=1e-9)
    assert detectable_difference(5, 1.0, tests=6) > detectable_difference(5, 1.0)


def test_large_n_approaches_the_normal_formula_from_above():
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    for n in (10, 100, 1000):
        normal = z / math.sqrt(n)
        assert detectable_difference(n, 1.0) > normal
    assert detectable_difference(1000, 1.0) == pytest.approx(z / math.sqrt(1000), rel=5e-3)


def test_seeds_needed_is_the_first_n_whose_mdd_fits():
    n = seeds_needed(1.5, 0.8, tests=4)
    assert detectable_difference(n, 0.8, tests=4) <= 1.5 < detectable_difference(n - 1, 0.8, tests=4)
    with pytest.raises(ValueError, match="n=1"):
        detectable_difference(1, 1.0)
