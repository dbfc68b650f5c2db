"""How much of a manifold's geometry a map keeps.

- ``trustworthiness``: scikit-learn's (Venna & Kaski): 1 minus a penalty for
  points that are among the k nearest neighbours in the output but not in the
  input; 1 = every output neighbourhood is a true one.
- ``knn_overlap``: mean over points of ``|N_k^X(i) & N_k^Y(i)| / k``, the share
  of each point's k nearest neighbours (itself excluded) kept by the map.
- ``twonn_dimension``: the TwoNN intrinsic-dimension estimate of Facco et al.
  (2017): with ``mu_i = r_2(i) / r_1(i)`` the ratio of second to first
  neighbour distances, the maximum-likelihood estimate ``d = N / sum log mu_i``.
- ``twonn_ansuini``: TwoNN with the protocol of Ansuini et al. (2019) for the
  layers of trained networks: the linear fit of Facco et al. on the ``fraction``
  (90%) of points with the smallest ``mu``, repeated on random halves of the
  points; returns the mean and the standard deviation over the resamples.
- ``rankme``: the effective rank of Garrido et al. (2023, RankMe),
  ``exp(-sum_k p_k log p_k)`` with ``p_k = s_k / sum s + eps`` over the
  singular values ``s`` of the representation matrix.
"""

from __future__ import annotations

import numpy as np
from sklearn.manifold import trustworthiness as _sk_trustworthiness
from sklearn.neighbors import NearestNeighbors
from sklearn.utils import check_random_state

from manifold_lab._checks import check_int, check_points

__all__ = ["trustworthiness", "knn_overlap", "twonn_dimension", "twonn_ansuini", "rankme"]


def _paired(X, Y, n_neighbors, max_points, random_state):
    """Checked ``X``, ``Y`` (the same rows) and ``k``, then at most ``max_points`` random rows of both."""
    X = check_points(X, "X")
    Y = check_points(Y, "Y")
    if len(X) != len(Y):
        raise ValueError(f"X and Y must have the same number of rows, got {len(X)} and {len(Y)}")
    k = check_int(n_neighbors, "n_neighbors", minimum=1)
    if k >= len(X) / 2:
        raise ValueError(f"n_neighbors={k} must be < n_samples / 2 = {len(X) / 2}")
    return *_subsample(X, Y, max_points, random_state), k


def _subsample(X, Y, max_points, random_state):
    if max_points is not None and len(X) > max_points:
        idx = check_random_state(random_state).choice(len(X), max_points, replace=False)
        return X[idx], Y[idx]
    return X, Y


def trustworthiness(X, Y, n_neighbors=10, *, max_points=2000, random_state=0) -> float:
    """``sklearn.manifold.trustworthiness(X, Y)`` on at most ``max_points`` random rows."""
    X, Y, k = _paired(X, Y, n_neighbors, max_points, random_state)
    return float(_sk_trustworthiness(X, Y, n_neighbors=k))


def knn_overlap(X, Y, n_neighbors=10, *, max_points=5000, random_state=0) -> float:
    """Mean share of each point's ``k`` nearest neighbours in ``X`` that stay among its ``k`` in ``Y``."""
    X, Y, k = _paired(X, Y, n_neighbors, max_points, random_state)
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
    mu = _mu(X)
    if len(mu) < 3:
        return 0.0
    total = np.log(mu).sum()
    return float(len(mu) / total) if total > 0 else 0.0


def _mu(X) -> np.ndarray:
    """``r_2 / r_1`` of every point with ``r_1 > 0`` (duplicates, e.g. points a ReLU collapsed together, have none)."""
    dist, _ = NearestNeighbors(n_neighbors=3).fit(X).kneighbors(X)
    r1, r2 = dist[:, 1], dist[:, 2]
    return r2[r1 > 0] / r1[r1 > 0]


def _twonn_linear_fit(X, fraction: float) -> float:
    """Facco et al.'s fit: ``-log(1 - F(mu)) = d log(mu)`` through the origin, on the smallest ``fraction`` of ``mu``."""
    mu = np.sort(_mu(X))
    n = len(mu)
    keep = int(np.floor(fraction * n))
    if keep < 2:
        return 0.0
    x = np.log(mu[:keep])
    y = -np.log(1.0 - np.arange(keep) / n)  # empirical CDF F(mu_(i)) = i / n
    denom = float(x @ x)
    return float(x @ y / denom) if denom > 0 else 0.0


def twonn_ansuini(X, *, fraction=0.9, n_resamples=5, random_state=0) -> tuple[float, float]:
    """TwoNN intrinsic dimension of points ``X`` (N, D) as Ansuini et al. (2019) measure network layers.

    ``_twonn_linear_fit`` on each of ``n_resamples`` random halves of the rows (the largest ratios
    ``mu = r_2 / r_1``, from points in sparse regions, are dropped); with one resample the whole of
    ``X`` is used. Returns ``(mean, std)`` over the resamples (std 0 for one).
    """
    X = check_points(X, "X", min_rows=6)
    n_resamples = check_int(n_resamples, "n_resamples", minimum=1)
    fraction = float(fraction)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if n_resamples == 1:
        return _twonn_linear_fit(X, fraction), 0.0
    rng = check_random_state(random_state)
    half = len(X) // 2
    ids = np.array([_twonn_linear_fit(X[rng.choice(len(X), half, replace=False)], fraction)
                    for _ in range(n_resamples)])
    return float(ids.mean()), float(ids.std(ddof=1))


def rankme(X, *, eps=1e-7) -> float:
    """RankMe effective rank of a representation ``X`` (N, D) (Garrido et al. 2023, eq. 1).

    ``exp(-sum_k p_k log p_k)``, ``p_k = s_k / ||s||_1 + eps``, over the
    ``min(N, D)`` singular values ``s_k`` of ``X`` (not centred, as in the
    paper). Between 1 and ``min(N, D)``; 0 for an all-zero ``X``. The singular
    values come from the smaller Gram matrix, so a wide ``X`` costs ``N^2 D``.
    """
    X = check_points(X, "X")
    G = X @ X.T if X.shape[0] <= X.shape[1] else X.T @ X
    s = np.sqrt(np.clip(np.linalg.eigvalsh(G), 0.0, None))
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total + eps
    return float(np.exp(-(p * np.log(p)).sum()))
