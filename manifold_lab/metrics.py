"""Which points does ``ReLU(Bx)`` collapse? (Theorem 1, Lemma 2 of the paper.)

For points ``X`` (N x d) and ``B`` (m x d), the rows of ``B`` *active* at ``x``
are ``T(x) = {i : (Bx + b)_i > 0}``. Near ``x`` the map is ``x -> B_T x``, so it
is locally injective iff ``rank(B_T) = d``; otherwise a neighbourhood of ``x``
is collapsed onto a lower-dimensional set. A point is *collapsed* when
``rank(B_{T(x)}) < d`` (in particular when fewer than ``d`` rows are active).

Points are grouped by activation pattern so the rank is computed once per
distinct pattern (there are at most ``O(m^d)`` of them), not once per point.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

from manifold_lab._checks import check_int
from manifold_lab.relu_maps import pre_activation

__all__ = [
    "active_mask",
    "active_counts",
    "group_by_pattern",
    "pattern_ranks",
    "rank_deficient",
    "collapsed_mask",
    "collapsed_fraction",
    "estimate_kept_fraction",
]

#: Largest temporary array (in float64 entries, 2^23 = 64 MB) built by the batched linear algebra.
CHUNK_FLOATS = 2**23


def active_mask(X, B, *, bias=None) -> np.ndarray:
    """Boolean ``(N, m)``: ``(X B^T + bias) > 0``."""
    return pre_activation(X, B, bias=bias) > 0


def active_counts(X, B, *, bias=None) -> np.ndarray:
    """Number of positive units of ``ReLU(Bx + b)`` at each point, shape ``(N,)``."""
    return active_mask(X, B, bias=bias).sum(axis=1)


def group_by_pattern(active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of a boolean ``(N, m)`` mask.

    Returns ``patterns`` (P, m) bool and ``inverse`` (N,) with
    ``active == patterns[inverse]``. Patterns of up to 64 units are packed into
    one ``uint64`` key so grouping is a sort of N integers.
    """
    N, m = active.shape
    packed = np.packbits(active, axis=1, bitorder="little")
    if m <= 64:
        width = packed.shape[1]
        buf = np.zeros((N, 8), dtype=np.uint8)
        buf[:, :width] = packed
        keys = buf.view(np.uint64).ravel()
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    else:
        _, first, inverse = np.unique(packed, axis=0, return_index=True, return_inverse=True)
    return active[first], inverse.ravel()


def pattern_ranks(B: np.ndarray, patterns: np.ndarray, tol=None) -> np.ndarray:
    """Rank of ``B[p]`` for every boolean row pattern ``p`` in ``patterns`` (P, m).

    Inactive rows are zeroed rather than removed, which leaves the singular
    values unchanged, so the patterns go through batched SVDs (in chunks of
    at most ``CHUNK_FLOATS`` floats, so memory stays bounded when every point
    has its own pattern). The default tolerance is ``np.linalg.matrix_rank``'s:
    ``S.max() * max(|p|, d) * eps``; a smaller ``tol`` (0, say) is raised to it,
    since rounding in the zeroed rows gives singular values of that size.

    A cheaper screen settles most patterns first, with the same answer: the
    Gram matrix ``B_p^T B_p`` (one matrix product for a whole chunk) has
    eigenvalues ``s_k^2``; when its smallest computed eigenvalue is above
    ``1e-8`` of its largest and above ``(2 tol)^2``, rounding (relative size
    about ``m eps``) cannot hide a singular value below the tolerance, and the
    rank is ``d``. Only the other patterns (rank-deficient or nearly so) go
    through the SVD.
    """
    B = np.asarray(B, dtype=np.float64)
    m, d = B.shape
    ranks = np.zeros(len(patterns), dtype=int)
    outer = (B[:, :, None] * B[:, None, :]).reshape(m, d * d)  # row i: vec(b_i b_i^T)
    eps = np.finfo(np.float64).eps
    step = max(1, CHUNK_FLOATS // (m * d + d * d))
    for start in range(0, len(patterns), step):
        chunk = patterns[start:start + step]
        counts = chunk.sum(axis=1)
        lam = np.linalg.eigvalsh((chunk.astype(np.float64) @ outer).reshape(-1, d, d))  # ascending s_k^2
        lam_max = np.maximum(lam[:, -1], 0.0)
        floor = np.sqrt(lam_max) * np.maximum(counts, d) * eps
        tol_chunk = floor if tol is None else np.maximum(float(tol), floor)
        sure = (lam[:, 0] > 1e-8 * lam_max) & (lam[:, 0] > (2 * tol_chunk) ** 2) & (counts >= d)
        ranks[start:start + step][sure] = d
        rest = np.flatnonzero(~sure)
        if rest.size:
            sub = chunk[rest]
            S = np.linalg.svd(sub[:, :, None] * B[None], compute_uv=False)  # (P', min(m, d))
            # The zeroed rows add rounding-sized singular values: a given tol is never below that floor.
            floor = S.max(axis=1) * np.maximum(sub.sum(axis=1), d) * eps
            tol_rest = floor if tol is None else np.maximum(float(tol), floor)
            ranks[start + rest] = (S > tol_rest[:, None]).sum(axis=1)
    return ranks


def collapsed_mask(X, B, *, bias=None, tol=None) -> np.ndarray:
    """Boolean ``(N,)``: the rows of ``B`` (m, d) active at each point of ``X`` (N, d) have rank ``< d``.

    ``bias`` (m,) is optional; ``tol`` is the singular-value tolerance of ``np.linalg.matrix_rank``
    (its default when None; never below it).
    """
    return rank_deficient(active_mask(X, B, bias=bias), B, tol=tol)


def rank_deficient(active, B, *, tol=None) -> np.ndarray:
    """Boolean ``(N,)``: ``rank(B[active[i]]) < d`` for every row ``i`` of the mask ``active`` (N, m).

    Lemma 2's test for any notion of *active* (``z > 0`` for ReLU, the linear
    piece ``0 < z < 6`` for ReLU6): fewer than ``d`` active rows is deficient
    without linear algebra; the rest are grouped by pattern and ranked once per
    distinct pattern (``pattern_ranks``). ``B`` is ``(m, d)``.
    """
    active = np.asarray(active, dtype=bool)
    B = np.asarray(B, dtype=np.float64)
    if active.ndim != 2 or B.ndim != 2 or active.shape[1] != B.shape[0]:
        raise ValueError(f"active must be (N, m) and B (m, d) with the same m, got {active.shape} and {B.shape}")
    d = B.shape[1]
    counts = active.sum(axis=1)
    collapsed = counts < d  # too few active rows: no rank to compute
    candidates = np.flatnonzero(~collapsed)
    if candidates.size:
        patterns, inverse = group_by_pattern(active[candidates])
        full = pattern_ranks(B, patterns, tol) == d
        collapsed[candidates] = ~full[inverse]
    return collapsed


def collapsed_fraction(X, B, *, bias=None, tol=None) -> float:
    """Fraction of the points of ``X`` collapsed by ``ReLU(Bx + bias)`` (see ``collapsed_mask``)."""
    return float(collapsed_mask(X, B, bias=bias, tol=tol).mean())


def estimate_kept_fraction(m, n, *, n_matrices=200, n_points=1000, random_state=None):
    """Monte Carlo estimate of Theorem 1's kept fraction ``N_{m,n} / 2^m``.

    Draws ``n_matrices`` Gaussian ``B`` (m x n, sign-symmetric as the theorem
    requires) and, for each, ``n_points`` points uniform in the unit n-ball;
    the kept fraction of one draw is ``1 - collapsed_fraction``.

    Returns
    -------
    mean : float
        Mean kept fraction over the draws of ``B``.
    stderr : float
        Standard deviation over draws / sqrt(n_matrices) (0 for one draw).
    """
    from manifold_lab.manifolds import make_ball

    m = check_int(m, "m", minimum=1)
    n = check_int(n, "n", minimum=1)
    K = check_int(n_matrices, "n_matrices", minimum=1)
    P = check_int(n_points, "n_points", minimum=1)
    rng = check_random_state(random_state)
    kept = np.empty(K)
    for k in range(K):
        B = rng.standard_normal((m, n))
        X, _ = make_ball(P, n_dims=n, random_state=rng)
        kept[k] = 1.0 - collapsed_fraction(X, B)
    stderr = float(kept.std(ddof=1) / np.sqrt(K)) if K > 1 else 0.0
    return float(kept.mean()), stderr
