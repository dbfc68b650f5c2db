"""Trustworthiness, kNN overlap and TwoNN on cases with known answers."""

import numpy as np
import pytest

from manifold_lab.geometry import knn_overlap, rankme, trustworthiness, twonn_ansuini, twonn_dimension
from manifold_lab.manifolds import make_ball, make_spiral


def test_isometry_keeps_neighbourhoods():
    X, _ = make_spiral(800, random_state=0)
    Q, _ = np.linalg.qr(np.random.RandomState(0).standard_normal((5, 2)))
    Y = X @ Q.T
    assert trustworthiness(X, Y) == pytest.approx(1.0)
    assert knn_overlap(X, Y) == pytest.approx(1.0)


def test_random_output_loses_neighbourhoods():
    X, _ = make_spiral(800, random_state=0)
    Y = np.random.RandomState(1).standard_normal((800, 2))
    assert knn_overlap(X, Y) < 0.05  # chance level is k / N = 0.0125
    assert trustworthiness(X, Y) < 0.7


@pytest.mark.parametrize("d", [1, 2, 4])
def test_twonn_recovers_dimension(d):
    X, _ = make_ball(4000, n_dims=d, random_state=d)
    Y = X @ np.random.RandomState(0).standard_normal((10, d)).T  # embedded in R^10
    assert twonn_dimension(Y) == pytest.approx(d, rel=0.15)


def test_bad_input():
    with pytest.raises(ValueError, match="same number of rows"):
        knn_overlap(np.ones((10, 2)), np.ones((9, 2)))
    with pytest.raises(ValueError, match="n_neighbors=6 must be < n_samples / 2"):
        trustworthiness(np.random.rand(10, 2), np.random.rand(10, 2), n_neighbors=6)


@pytest.mark.parametrize("d", [1, 3, 6])
def test_twonn_ansuini_recovers_dimension_with_a_spread(d):
    X, _ = make_ball(4000, n_dims=d, random_state=d)
    Y = X @ np.random.RandomState(0).standard_normal((12, d)).T
    mean, std = twonn_ansuini(Y, n_resamples=5, random_state=0)
    assert mean == pytest.approx(d, rel=0.15)
    assert 0 < std < 0.1 * d  # five halves of 4000 points agree closely


def test_rankme_closed_forms():
    # k orthogonal directions of equal energy: p_k = 1/k, effective rank exactly k (up to eps).
    Q, _ = np.linalg.qr(np.random.RandomState(0).standard_normal((30, 30)))
    for k in (1, 4, 9):
        X = Q[:, :k].T * 3.0  # (k, 30), singular values all 3
        assert rankme(X) == pytest.approx(k, rel=1e-5)
    # singular values (2, 1, 1): p = (1/2, 1/4, 1/4), entropy 1.5 log 2
    X = np.diag([2.0, 1.0, 1.0])
    assert rankme(X) == pytest.approx(2 ** 1.5, rel=1e-5)
    assert rankme(np.zeros((5, 3))) == 0.0
