"""The hyperplane arrangement of ``ReLU(Bx)``: Cover's region count and global injectivity, exactly.

The rows ``b_1..b_m`` of ``B`` (m x n) are normals of ``m`` hyperplanes through
the origin of ``R^n``. Their complement splits into open convex cones
(*regions*); on each one the activation pattern ``1[Bx > 0]`` is constant, and
different regions have different patterns. So the number of activation
patterns of ``ReLU(Bx)`` is the number of regions.

- ``cover_count(m, n)``: Cover (1965), for hyperplanes in general position,
  ``C(m, n) = 2 sum_{k=0}^{n-1} C(m-1, k)`` regions (``2^m`` when ``m <= n``).
- ``region_patterns(B)``: every region's pattern, by incremental enumeration
  with linear programs, independent of any sampling: hyperplanes are added one
  at a time, and a region with sign vector ``s`` is split when both
  ``s + [+]`` and ``s + [-]`` are feasible, feasibility of ``s_i b_i . x >= 1``
  (for all ``i`` so far) decided by scipy's HiGHS LP solver. The margin 1 costs
  nothing, the regions being cones (scale any strictly feasible ``x``).
- ``sector_patterns(B)``: for ``n = 2``, the exact angular sweep: the ``2m``
  angles where a row is orthogonal to ``u(theta) = (cos, sin)`` cut the circle
  into arcs; the pattern at each arc's midpoint is that sector's.
- ``min_active_rows(B)``: ``min over x != 0 of #{i : b_i . x > 0}``, exactly,
  for rows in general position with ``m >= n``: every region is a pointed cone
  whose extreme rays are the lines ``r_J`` where ``n - 1`` hyperplanes ``J``
  meet, and around ``+-r_J`` all ``2^(n-1)`` sign choices of ``J`` occur, so
  the minimum is ``min_{J, +-} #{i not in J : b_i . (+-r_J) > 0}`` over the
  ``C(m, n-1)`` subsets ``J``.
- ``is_injective(B)``: ``ReLU(Bx)`` is injective on ``R^n`` iff for every
  ``x`` the rows active at ``x`` span ``R^n`` (Puthawala et al., JMLR 2022,
  Theorem 2, with ``b_i . x >= 0``; the binding ``x`` lie in open regions,
  whose active sets are the smallest). With rows in general position any
  ``n`` rows span ``R^n``, so: injective iff ``min_active_rows(B) >= n``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from manifold_lab._checks import check_int, check_points

__all__ = ["cover_count", "region_patterns", "sector_patterns", "min_active_rows", "is_injective"]

#: The most hyperplane subsets ``min_active_rows`` enumerates (``C(m, n - 1)``).
MAX_SUBSETS = 2_000_000


def cover_count(m: int, n: int) -> int:
    """Cover's ``C(m, n) = 2 sum_{k<n} C(m-1, k)``: regions of ``m`` hyperplanes through 0 in general position in ``R^n``."""
    m = check_int(m, "m", minimum=1)
    n = check_int(n, "n", minimum=1)
    return 2 * sum(math.comb(m - 1, k) for k in range(n))


def _feasible(A: np.ndarray) -> bool:
    """Is ``{x : A x >= 1}`` non-empty? (HiGHS LP with a zero objective.)"""
    from scipy.optimize import linprog

    res = linprog(np.zeros(A.shape[1]), A_ub=-A, b_ub=-np.ones(len(A)), bounds=(None, None), method="highs")
    if res.status not in (0, 2):  # 0 solved (feasible), 2 infeasible; anything else is not an answer
        raise RuntimeError(f"the LP solver failed: {res.message}")
    return res.status == 0


def region_patterns(B) -> np.ndarray:
    """Boolean ``(R, m)``: the activation pattern ``1[Bx > 0]`` of every region (module docstring).

    ``R`` LPs per hyperplane added at most twice, so about ``2 m R`` LPs in all:
    meant for small arrangements (``R`` in the thousands).
    """
    B = check_points(B, "B")
    signs = [np.zeros(0, dtype=np.int8)]
    for i in range(len(B)):
        new = []
        for s in signs:
            for side in (1, -1):
                t = np.append(s, np.int8(side))
                if _feasible(t[:, None] * B[: i + 1]):
                    new.append(t)
        signs = new
    return np.array(signs) > 0


def sector_patterns(B) -> np.ndarray:
    """Boolean ``(R, m)``: the activation patterns of ``ReLU(Bx)`` for ``n = 2``, by the exact angular sweep."""
    B = check_points(B, "B", n_features=2)
    phase = np.arctan2(B[:, 1], B[:, 0])
    # b . u(theta) = |b| cos(theta - phase) vanishes at theta = phase +- pi/2
    cuts = np.sort(np.mod(np.concatenate([phase + np.pi / 2, phase - np.pi / 2]), 2 * np.pi))
    mids = (cuts + np.diff(np.append(cuts, cuts[0] + 2 * np.pi)) / 2)
    U = np.column_stack([np.cos(mids), np.sin(mids)])
    return np.unique(U @ B.T > 0, axis=0)


def _vertex_rays(B: np.ndarray, J: np.ndarray) -> np.ndarray:
    """``(S, n)``: for each row subset ``J[s]`` (n - 1 indices) a vector orthogonal to those rows.

    The generalized cross product: component ``k`` is ``(-1)^k det(B_J without column k)``.
    """
    n = B.shape[1]
    rows = B[J]  # (S, n-1, n)
    if n == 1:
        return np.ones((len(J), 1))
    cols = [np.delete(np.arange(n), k) for k in range(n)]
    return np.stack([(-1) ** k * np.linalg.det(rows[:, :, c]) for k, c in enumerate(cols)], axis=1)


def min_active_rows(B) -> int:
    """``min_{x != 0} #{i : b_i . x > 0}`` for rows in general position (module docstring), exactly.

    ``B`` is ``(m, n)`` with ``m >= n``; ``ValueError`` when ``C(m, n - 1)``
    exceeds ``MAX_SUBSETS`` or when some ``n - 1`` rows are linearly dependent.
    """
    B = check_points(B, "B")
    m, n = B.shape
    if m < n:
        raise ValueError(f"B needs at least as many rows as columns, got shape {B.shape}")
    subsets = math.comb(m, n - 1)
    if subsets > MAX_SUBSETS:
        raise ValueError(f"B of shape {B.shape} has C({m}, {n - 1}) = {subsets} vertex rays, above {MAX_SUBSETS}")
    best = m
    chunk = max(1, 2**22 // (m * n))
    combos = itertools.combinations(range(m), n - 1)
    while True:
        J = np.array(list(itertools.islice(combos, chunk)), dtype=int).reshape(-1, n - 1)
        if len(J) == 0:
            break
        R = _vertex_rays(B, J)
        size = np.prod(np.linalg.norm(B[J], axis=2), axis=1)
        if np.any(np.linalg.norm(R, axis=1) <= 1e-12 * size):
            raise ValueError("the rows of B are not in general position (some n - 1 of them are linearly "
                             "dependent); min_active_rows needs rows in general position")
        dots = R @ B.T  # (S, m); the rows of J are orthogonal to their ray
        inside = np.zeros(dots.shape, dtype=bool)
        np.put_along_axis(inside, J, True, axis=1)
        scale = np.abs(dots).max(axis=1, keepdims=True) * 1e-9
        pos = ((dots > scale) & ~inside).sum(1)
        neg = ((dots < -scale) & ~inside).sum(1)
        best = min(best, int(pos.min()), int(neg.min()))
    return best


def is_injective(B) -> bool:
    """Is ``x -> ReLU(Bx)`` injective on ``R^n``? (rows in general position, ``m >= n``; module docstring)."""
    B = check_points(B, "B")
    return B.shape[0] >= B.shape[1] and min_active_rows(B) >= B.shape[1]
