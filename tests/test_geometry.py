"""Trustworthiness, kNN overlap and TwoNN on cases with known answers."""

import numpy as np
import pytest

from manifold_lab.geometry import knn_overlap, trustworthiness, twonn_dimension
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
