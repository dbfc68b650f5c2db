"""Collapsed points: definition checks by brute force, pattern grouping, bad input."""

import numpy as np
import pytest

from manifold_lab.metrics import active_counts, collapsed_fraction, collapsed_mask, group_by_pattern, pattern_ranks


def brute_force(X, B):
    out = []
    for x in X:
        rows = B[B @ x > 0]
        out.append(len(rows) < B.shape[1] or np.linalg.matrix_rank(rows) < B.shape[1])
    return np.array(out)


@pytest.mark.parametrize("m, d", [(2, 2), (5, 2), (6, 3), (40, 3), (70, 4)])
def test_collapsed_mask_matches_brute_force(m, d):
    rng = np.random.RandomState(m * d)
    X = rng.standard_normal((400, d))
    B = rng.standard_normal((m, d))
    B[0] = 3 * B[1]  # a parallel pair: rank can be below the count of active rows
    np.testing.assert_array_equal(collapsed_mask(X, B), brute_force(X, B))


def test_known_cases_in_the_plane():
    B = np.eye(2)  # ReLU on R^2: only the open positive quadrant keeps full rank
    X = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0], [-1.0, 2.0]])
    np.testing.assert_array_equal(collapsed_mask(X, B), [False, True, True, True])
    assert collapsed_fraction(X, B) == 0.75
    np.testing.assert_array_equal(active_counts(X, B), [2, 1, 0, 1])
    # parallel rows are never rank 2, whatever the point
    assert collapsed_mask(X, np.array([[1.0, 1.0], [2.0, 2.0], [-1.0, -1.0]])).all()
    # a bias moves the hyperplanes: all four points end up in the positive quadrant
    assert not collapsed_mask(X, B, bias=[5.0, 5.0]).any()


def test_group_by_pattern_roundtrip_beyond_64_units():
    rng = np.random.RandomState(0)
    for m in (3, 64, 65, 130):
        active = rng.rand(500, m) > 0.5
        active[::7] = active[0]
        patterns, inverse = group_by_pattern(active)
        np.testing.assert_array_equal(patterns[inverse], active)
        assert len(patterns) == len(np.unique(active, axis=0))


def test_pattern_ranks_with_zeroed_rows():
    B = np.array([[1.0, 0, 0], [0, 1.0, 0], [1.0, 1.0, 0], [0, 0, 1.0]])
    patterns = np.array([[1, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(pattern_ranks(B, patterns), [2, 3, 0, 1])


@pytest.mark.parametrize(
    "X, B, message",
    [
        (np.ones((3, 2)), np.ones((4, 3)), r"B must have shape \(m, 2\)"),
        (np.ones(3), np.ones((4, 3)), "X must be 2-D"),
        (np.array([[np.inf, 0.0]]), np.ones((4, 2)), "NaN or inf"),
        (np.ones((3, 2)), np.array([[np.nan, 1.0]]), "NaN or inf"),
    ],
)
def test_bad_input(X, B, message):
    with pytest.raises(ValueError, match=message):
        collapsed_mask(X, B)


def test_pattern_ranks_screen_gives_the_svd_ranks():
    """The Gram-eigenvalue screen of pattern_ranks never changes a rank: compare with matrix_rank, pattern by pattern."""
    from manifold_lab.metrics import pattern_ranks

    rng = np.random.RandomState(0)
    cases = [rng.standard_normal((30, 5)),                                       # generic
             rng.standard_normal((30, 3)) @ rng.standard_normal((3, 5)),         # rank 3 at most
             np.vstack([rng.standard_normal((10, 4))] * 3),                      # repeated rows
             rng.standard_normal((24, 6)) * np.logspace(0, -9, 6)]               # badly scaled columns
    for B in cases:
        patterns = rng.rand(400, len(B)) < rng.uniform(0.05, 0.9, (400, 1))
        expected = [np.linalg.matrix_rank(B[p]) if p.any() else 0 for p in patterns]
        assert pattern_ranks(B, patterns).tolist() == expected
        big = 0.5  # a given tolerance above the floor is honoured by the screen too
        expected = [int((np.linalg.svd(B[p], compute_uv=False) > big).sum()) if p.any() else 0 for p in patterns]
        assert pattern_ranks(B, patterns, tol=big).tolist() == expected
