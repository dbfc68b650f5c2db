"""Cover's count and global injectivity, exact: against the formula, brute force and closed forms."""

import math

import numpy as np
import pytest

from manifold_lab.arrangements import cover_count, is_injective, min_active_rows, region_patterns, sector_patterns
from manifold_lab.metrics import group_by_pattern, pattern_ranks


def test_cover_formula_closed_forms():
    assert [cover_count(m, 1) for m in range(1, 6)] == [2] * 5  # a line: two half-lines
    assert [cover_count(m, 2) for m in range(1, 6)] == [2, 4, 6, 8, 10]  # 2m sectors
    assert [cover_count(m, n) for m, n in ((3, 3), (4, 5), (6, 6))] == [8, 16, 64]  # m <= n: all 2^m patterns
    assert cover_count(10, 3) == 2 * (1 + 9 + 36)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_region_enumeration_reproduces_cover_exactly(n):
    rng = np.random.RandomState(n)
    for m in range(1, 8):
        B = rng.standard_normal((m, n))
        patterns = region_patterns(B)
        assert len(patterns) == cover_count(m, n), (m, n)
        assert len(np.unique(patterns, axis=0)) == len(patterns)  # one pattern per region
        # every pattern that sampled points show is one of the enumerated ones (and sampling finds no other)
        X = rng.standard_normal((4000, n))
        seen, _ = group_by_pattern(X @ B.T > 0)
        assert {p.tobytes() for p in seen} <= {p.tobytes() for p in patterns}


def test_angular_sweep_is_the_lp_enumeration_for_n_2():
    rng = np.random.RandomState(0)
    for m in (1, 2, 5, 9):
        B = rng.standard_normal((m, 2))
        sweep, lp = sector_patterns(B), region_patterns(B)
        assert len(sweep) == 2 * m
        assert {p.tobytes() for p in sweep} == {p.tobytes() for p in lp}


def test_min_active_rows_against_brute_force_and_closed_forms():
    rng = np.random.RandomState(1)
    for m, n in ((6, 2), (9, 3), (12, 3), (9, 4)):
        B = rng.standard_normal((m, n))
        regions = region_patterns(B)
        assert min_active_rows(B) == regions.sum(1).min()
        # injective iff every region's active rows have rank n (Lemma 2's rank, pattern by pattern)
        assert is_injective(B) == bool((pattern_ranks(B, regions) == n).all())
    # m unit vectors at angles 2 pi k / m, m odd (no two parallel): an open half-plane holds (m - 1) / 2 of them
    for m in (3, 5, 7, 11):
        angles = 2 * np.pi * np.arange(m) / m
        polygon = np.column_stack([np.cos(angles), np.sin(angles)])
        assert min_active_rows(polygon) == (m - 1) // 2
        assert is_injective(polygon) == (m >= 5)
    assert not is_injective(np.eye(3) + 0.1 * rng.standard_normal((3, 3)))  # m = n: some x has no active row
    with pytest.raises(ValueError, match="general position"):
        min_active_rows(np.vstack([np.eye(3), -np.eye(3)]))  # e_i and -e_i: the same hyperplane
    # m < 2n is never injective (Puthawala et al.: expansivity 2 is necessary)
    assert not any(is_injective(rng.standard_normal((2 * n - 1, n))) for n in (2, 3, 4) for _ in range(20))


def test_min_active_rows_bounds():
    with pytest.raises(ValueError, match="at least as many rows"):
        min_active_rows(np.ones((2, 3)))
    big = math.comb(400, 4)
    with pytest.raises(ValueError, match=f"{big} vertex rays"):
        min_active_rows(np.random.RandomState(0).standard_normal((400, 5)))


def test_the_two_kinds_run_and_decide():
    from types import SimpleNamespace

    from manifold_lab.kinds import cover_count as cover_kind
    from manifold_lab.kinds import relu_injectivity as inj_kind

    ctx = SimpleNamespace()
    m = cover_kind.run(cover_kind.CoverCountParams(m=5, n=2, n_matrices=2), 0, ctx)
    assert m == {"cover": 10, "regions_min": 10, "regions_max": 10, "exact_matches": 2, "draws": 2, "sweep_matches": 2}
    below = inj_kind.run(inj_kind.InjectivityParams(n=3, ratio=1.67, n_matrices=20), 0, ctx)
    assert below["m"] == 5 and below["p_injective"] == 0.0  # m < 2n: never
    above = inj_kind.run(inj_kind.InjectivityParams(n=2, ratio=12, n_matrices=50), 0, ctx)
    assert above["m"] == 24 and above["p_injective"] > 0.9 and above["ci_low"] < above["p_injective"] <= above["ci_high"]
    assert inj_kind.transition([(2, 0.0), (4, 0.25), (6, 0.75), (8, 1.0)]) == pytest.approx(5.0)
    assert inj_kind.transition([(2, 0.0), (4, 0.2)]) is None
