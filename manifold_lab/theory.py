"""Theorem 1 of the paper (Appendix A): how much of a full-dimensional set ReLU keeps.

For ``f_B(x) = ReLU(Bx)``, ``B`` an ``m x n`` random matrix with a sign-symmetric
density, the expected fraction of a compact n-dimensional ``S`` that is *not*
collapsed to a lower-dimensional set is

    kept_fraction(m, n) = N_{m,n} / 2^m,   N_{m,n} = sum_{k=0}^{m-n} C(m, k)
                        = P(Binomial(m, 1/2) >= n),

and the collapsed fraction is ``1 - kept_fraction(m, n)``. The appendix bounds
it from below for ``m >> n`` by ``1 - m^{n+1} / (2^m n!)``.

All three are computed in exact integer / rational arithmetic and rounded to a
float once, so they are exact to double precision for any ``m`` (tested to
``m = 1000``, where ``2^m`` overflows a float).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from manifold_lab._checks import check_int

__all__ = ["kept_fraction", "collapsed_fraction_theory", "kept_fraction_bound", "n_mn"]


def n_mn(m: int, n: int) -> int:
    """``N_{m,n} = sum_{k=0}^{m-n} C(m, k)`` as an exact integer (0 when ``m < n``, ``2^m`` when ``n <= 0``)."""
    m = check_int(m, "m", minimum=0)
    n = check_int(n, "n")
    # n <= 0 as the formula reads: every C(m, k) with k <= m is summed, N = 2^m.
    return sum(math.comb(m, k) for k in range(0, min(m, m - n) + 1))


def _kept_exact(m: int, n: int) -> Fraction:
    return Fraction(n_mn(m, n), 2**m)


def _vectorize(func, m, n):
    if np.ndim(m) == 0 and np.ndim(n) == 0:
        return func(m, n)
    m_arr, n_arr = np.broadcast_arrays(np.asarray(m), np.asarray(n))
    out = np.array([func(a.item(), b.item()) for a, b in zip(m_arr.ravel(), n_arr.ravel())], dtype=float)
    return out.reshape(m_arr.shape)


def kept_fraction(m, n):
    """Expected kept (non-collapsed) fraction ``N_{m,n} / 2^m = P(Binomial(m, 1/2) >= n)`` of Theorem 1.

    ``m`` (rows of ``B``, the output channels of ``ReLU(Bx)``, ``>= 0``) and ``n`` (columns of ``B``, the
    dimension of the input set) are ints, giving a float, or arrays of ints, giving an ndarray. 0 when
    ``m < n``; 1 when ``n <= 0`` (read by the formula, ``N_{m,n} = 2^m``).
    """
    return _vectorize(lambda a, b: float(_kept_exact(a, b)), m, n)


def collapsed_fraction_theory(m, n):
    """Expected collapsed fraction ``1 - N_{m,n} / 2^m`` (exact, see ``kept_fraction``)."""
    return _vectorize(lambda a, b: float(1 - _kept_exact(a, b)), m, n)


def kept_fraction_bound(m, n):
    """The appendix lower bound ``1 - m^{n+1} / (2^m n!)`` on ``kept_fraction(m, n)``.

    It holds for ``m >= n`` and is useful for ``m >> n``; for small ``m`` it is
    below 0 (vacuous) and is returned as is. For ``m < n`` it is not a bound
    (the kept fraction is 0 there).
    """

    def bound(a, b):
        a = check_int(a, "m", minimum=1)
        b = check_int(b, "n", minimum=0)
        return float(1 - Fraction(a ** (b + 1), 2**a * math.factorial(b)))

    return _vectorize(bound, m, n)
