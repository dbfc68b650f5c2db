"""How much of a manifold's geometry a map keeps.

- ``trustworthiness``: scikit-learn's (Venna & Kaski): 1 minus a penalty for
  points that are among the k nearest neighbours in the output but not in the
  input; 1 = every output neighbourhood is a true one.
- ``knn_overlap``: mean over points of ``|N_k^X(i) & N_k^Y(i)| / k``, the share
  of each point's k nearest neighbours (itself excluded) kept by the map.
- ``twonn_dimension``: the TwoNN intrinsic-dimension estimate of Facco et al.
  (2017): with ``mu_i = r_2(i) / r_1(i)`` the ratio of second to first
  neighbour distances, the maximum-likelihood estimate ``d = N / sum log mu_i``.
"""

from __future__ import annotations

import numpy as np
from sklearn.manifold import trustworthiness as _sk_trustworthiness
from sklearn.neighbors import NearestNeighbors
from sklearn.utils import check_random_state

from manifold_lab._checks import check_int, check_points

__all__ = ["trustworthiness", "knn_overlap", "twonn_dimension"]


def _paired(X, Y, n_neighbors):
    X = check_points(X, "X")
    Y = check_points(Y, "Y")
    if len(X) != len(Y):
        raise ValueError(f"X and Y must have the same number of rows, got {len(X)} and {len(Y)}")
    k = check_int(n_neighbors, "n_neighbors", minimum=1)
    if k >= len(X) / 2:
        raise ValueError(f"n_neighbors={k} must be < n_samples / 2 = {len(X) / 2}")
    return X, Y, k


def _subsample(X, Y, max_points, random_state):
    if max_points is not None and len(X) > max_points:
        idx = check_random_state(random_state).choice(len(X), max_points, replace=False)
        return X[idx], Y[idx]
    return X, Y


def trustworthiness(X, Y, n_neighbors=10, *, max_points=2000, random_state=0) -> float:
    """``sklearn.manifold.trustworthiness(X, Y)`` on at most ``max_points`` random rows."""
    X, Y, k = _paired(X, Y, n_neighbors)
    X, Y = _subsample(X, Y, max_points, random_state)
    return float(_sk_trustworthiness(X, Y, n_neighbors=k))


def knn_overlap(X, Y, n_neighbors=10, *, max_points=5000, random_state=0) -> float:
    """Mean share of each point's ``k`` nearest neighbours in ``X`` that stay among its ``k`` in ``Y``."""
    X, Y, k = _paired(X, Y, n_neighbors)
    X, Y = _subsample(X, Y, max_points, random_state)
    nx = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X, return_distance=False)[:, 1:]
    ny = NearestNeighbors(n_neighbors=k + 1).fit(Y).kneighbors(Y, return_distance=False)[:, 1:]
    shared = (nx[:, :, None] == ny[:, None, :]).sum(axis=(1, 2))  # neighbour lists hold distinct indices
    return float(shared.mean() / k)


def twonn_dimension(X, *, max_points=5000, random_state=0) -> float:
    """TwoNN maximum-likelihood intrinsic dimension of points ``X`` (N, D).

    Points whose first-neighbour distance is 0 (duplicates, e.g. collapsed by a
    ReLU) are dropped; NaN is never returned: with fewer than 3 usable points
    the estimate is 0.
    """
    X = check_points(X, "X", min_rows=3)
    X, _ = _subsample(X, X, max_points, random_state)
    dist, _ = NearestNeighbors(n_neighbors=3).fit(X).kneighbors(X)
    r1, r2 = dist[:, 1], dist[:, 2]
    ok = r1 > 0
    if ok.sum() < 3:
        return 0.0
    log_mu = np.log(r2[ok] / r1[ok])
    total = log_mu.sum()
    return float(ok.sum() / total) if total > 0 else 0.0
