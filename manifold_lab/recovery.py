"""Recovering the input of a ReLU layer from its output.

Decoders, from the most to the least structured:

- ``relu_preimage``: the exact inverse of Lemma 2. ``y = ReLU(Bx)`` determines
  ``x`` uniquely iff the rows of ``B`` at the non-zero coordinates ``T`` of ``y``
  have rank ``d``; then ``x = pinv(B_T) y_T`` (least squares on the active rows).
- ``pinv_projection``: the paper's Figure 1 read-out ``T^+ ReLU(T x)``.
- ``linear_decoder``: the best affine map from ``y`` back to ``x`` (least squares
  with intercept, fitted and evaluated on the same points: an in-sample optimum).
- ``ridge_decoder``: the same affine map with a ridge penalty (scikit-learn's
  ``RidgeCV`` on standardized outputs), fitted on a random 75% and evaluated on
  the held-out 25%: what a linear read-out recovers out of sample (the probe of
  trained networks, ``manifold_lab.probe``, reports it as ``r2_score``).
- ``knn_decoder``: k-nearest-neighbour regression (scikit-learn), fitted on a
  random 75% and evaluated on the held-out 25%: an empirical upper bound on
  what any smooth decoder can recover.

Errors are *normalized*: ``sum_i |x_i - x_hat_i|^2 / sum_i |x_i - mean(x)|^2``
(0 = perfect, 1 = no better than predicting the mean); ``r2_score`` is
``1 - normalized_error`` (1 = perfect, 0 or below = nothing recovered).
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import KNeighborsRegressor
from sklearn.utils import check_random_state

from manifold_lab._checks import check_float, check_int, check_points
from manifold_lab.activations import get_activation
from manifold_lab.metrics import CHUNK_FLOATS, group_by_pattern, pattern_ranks

__all__ = [
    "normalized_error",
    "r2_score",
    "relu_preimage",
    "pinv_projection",
    "linear_decoder",
    "ridge_decoder",
    "knn_decoder",
    "reconstruction_errors",
]


def normalized_error(X, X_hat) -> float:
    """``sum |x - x_hat|^2 / sum |x - mean(x)|^2`` over rows."""
    X = np.asarray(X, dtype=np.float64)
    X_hat = np.asarray(X_hat, dtype=np.float64)
    if X.shape != X_hat.shape:
        raise ValueError(f"X_hat must have the shape of X {X.shape}, got {X_hat.shape}")
    denom = float(((X - X.mean(axis=0)) ** 2).sum())
    return float(((X - X_hat) ** 2).sum() / denom) if denom > 0 else float(((X - X_hat) ** 2).sum())


def r2_score(X, X_hat) -> float:
    """Pooled coefficient of determination ``1 - normalized_error(X, X_hat)`` over all columns."""
    return 1.0 - normalized_error(X, X_hat)


def _split(n: int, test_fraction, random_state) -> tuple[np.ndarray, np.ndarray]:
    """``(test, train)`` row indices: a random ``test_fraction`` of ``n`` rows held out (at least one)."""
    test_fraction = check_float(test_fraction, "test_fraction", minimum=0.0)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = check_random_state(random_state).permutation(n)
    n_test = min(n - 1, max(1, int(round(test_fraction * n))))
    return order[:n_test], order[n_test:]


#: Ridge penalties ``RidgeCV`` chooses from (by efficient leave-one-out), on standardized outputs.
RIDGE_ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def ridge_decoder(X, Y, *, alphas=RIDGE_ALPHAS, test_fraction=0.25, random_state=None):
    """Ridge regression of ``X`` (N, d) from ``Y`` (N, m), fitted on a random split.

    ``Y`` is standardized per column (``StandardScaler``; constant columns stay
    0), then ``RidgeCV`` picks the penalty among ``alphas`` by leave-one-out on
    the training rows. Returns ``(X_test, X_hat_test)`` for the held-out rows
    (``r2_score`` of the two is the out-of-sample R^2).
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = check_points(X, "X", min_rows=4)
    Y = check_points(Y, "Y", min_rows=4)
    if len(Y) != len(X):
        raise ValueError(f"X and Y must have the same number of rows, got {len(X)} and {len(Y)}")
    test, train = _split(len(X), test_fraction, random_state)
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=tuple(alphas))).fit(Y[train], X[train])
    return X[test], model.predict(Y[test]).reshape(len(test), -1)


def relu_preimage(B, Y, *, tol=None):
    """Invert ``Y = ReLU(X B^T)`` by Lemma 2.

    Parameters
    ----------
    B : array (m, d)
    Y : array (N, m)
        Non-negative ReLU outputs.
    tol : float >= 0, optional
        A coordinate counts as active when ``y > tol`` (default 0); also the
        rank tolerance of ``np.linalg.matrix_rank`` (never below its default).

    Returns
    -------
    X_hat : array (N, d)
        ``pinv(B_T) y_T`` for the active set ``T`` of each point (the
        minimum-norm least-squares solution where it is not unique; 0 when no
        unit is active).
    invertible : array (N,) bool
        Lemma 2's condition: at least ``d`` active rows and ``rank(B_T) = d``.
    """
    B = check_points(B, "B")
    m, d = B.shape
    Y = check_points(Y, "Y", n_features=m)
    if np.any(Y < 0):
        raise ValueError("Y must be a ReLU output (non-negative); it has negative values")
    if tol is not None:
        tol = check_float(tol, "tol", minimum=0.0)
    active = Y > (0.0 if tol is None else tol)
    patterns, inverse = group_by_pattern(active)
    invertible = (pattern_ranks(B, patterns, tol) == d)[inverse]
    Y_active = np.where(active, Y, 0.0)
    X_hat = np.empty((Y.shape[0], d))
    # Zeroing the inactive rows keeps pinv(B_T) (with zero columns at the
    # inactive coordinates), so the patterns of a chunk of points go through
    # one batched pinv; chunks bound the (points, d, m) gather to CHUNK_FLOATS.
    step = max(1, CHUNK_FLOATS // (m * d))
    for start in range(0, len(Y), step):
        sl = slice(start, start + step)
        used, local = np.unique(inverse[sl], return_inverse=True)
        pinvs = np.linalg.pinv(patterns[used][:, :, None] * B[None])  # (P_chunk, d, m)
        X_hat[sl] = np.einsum("nim,nm->ni", pinvs[local.ravel()], Y_active[sl])
    return X_hat, invertible


def pinv_projection(X, T, act="relu") -> np.ndarray:
    """Figure 1's read-out ``T^+ act(T x)`` for points ``X`` (N, d), ``T`` (n, d): (N, d)."""
    X = check_points(X, "X")
    T = check_points(T, "T", n_features=X.shape[1])
    return get_activation(act)(X @ T.T) @ np.linalg.pinv(T).T


def linear_decoder(X, Y) -> np.ndarray:
    """Best affine reconstruction of ``X`` (N, d) from ``Y`` (N, m) (in-sample least squares)."""
    X = check_points(X, "X")
    Y = check_points(Y, "Y")
    if len(Y) != len(X):
        raise ValueError(f"X and Y must have the same number of rows, got {len(X)} and {len(Y)}")
    Z = np.column_stack([Y, np.ones(len(Y))])
    W, *_ = np.linalg.lstsq(Z, X, rcond=None)
    return Z @ W


def knn_decoder(X, Y, *, n_neighbors=10, test_fraction=0.25, random_state=None):
    """k-NN regression of ``X`` from ``Y`` fitted on a random split.

    Returns ``(X_test, X_hat_test)`` for the held-out points.
    """
    X = check_points(X, "X", min_rows=4)
    Y = check_points(Y, "Y", min_rows=4)
    if len(Y) != len(X):
        raise ValueError(f"X and Y must have the same number of rows, got {len(X)} and {len(Y)}")
    k = check_int(n_neighbors, "n_neighbors", minimum=1)
    test, train = _split(len(X), test_fraction, random_state)
    k = min(k, len(train))
    model = KNeighborsRegressor(n_neighbors=k).fit(Y[train], X[train])
    return X[test], model.predict(Y[test])


def reconstruction_errors(X, Y, T=None, *, B=None, n_neighbors=10, random_state=None) -> dict[str, float]:
    """Normalized errors of every decoder of ``X`` (N, d) from the layer output ``Y`` (N, m).

    Keys: ``linear`` and ``knn`` always; ``pinv`` (``T^+ Y``) when the embedding
    ``T`` (m, d) is given; ``preimage`` (Lemma 2 on ``Y = ReLU(X B^T)``) when
    ``B`` (m, d) is given.
    """
    X = check_points(X, "X")
    Y = check_points(Y, "Y")
    out = {
        "linear": normalized_error(X, linear_decoder(X, Y)),
        "knn": normalized_error(*knn_decoder(X, Y, n_neighbors=n_neighbors, random_state=random_state)),
    }
    if T is not None:
        T = check_points(T, "T", n_features=X.shape[1])
        out["pinv"] = normalized_error(X, Y @ np.linalg.pinv(T).T)
    if B is not None:
        out["preimage"] = normalized_error(X, relu_preimage(B, Y)[0])
    return out
