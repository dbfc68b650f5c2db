"""Generators of low-dimensional manifolds and their random embedding into R^n.

Every generator follows scikit-learn's ``make_swiss_roll`` convention::

    X, t = make_<name>(n_samples, *, noise=0.0, random_state=None, ...)

``X`` has shape ``(n_samples, D)`` (float64), ``t`` shape ``(n_samples,)`` is
the intrinsic coordinate used to colour points (position along a curve, angle,
radius). Gaussian noise of standard deviation ``noise`` is added to ``X``.
With ``noise=0`` each ``X`` is the stated closed form of ``t`` (and, for the
2-D manifolds, of a second coordinate).

``embed(X, n_dims)`` maps d-dimensional points into ``R^n`` with a random
``n x d`` matrix ``T`` (Figure 1 of the paper: ``Y = X T^T``).
"""

from __future__ import annotations

import functools

import numpy as np
from sklearn.utils import check_random_state

from manifold_lab._checks import check_choice, check_float, check_int, check_points

__all__ = [
    "MANIFOLDS",
    "INTRINSIC_DIM",
    "embed",
    "get_manifold",
    "make_ball",
    "make_circle",
    "make_helix",
    "make_s_curve",
    "make_sphere",
    "make_spiral",
    "make_swiss_roll",
    "make_torus",
    "make_two_spirals",
]


def _start(n_samples, noise, random_state):
    n = check_int(n_samples, "n_samples", minimum=1)
    noise = check_float(noise, "noise", minimum=0.0)
    return n, noise, check_random_state(random_state)


def _finish(X: np.ndarray, noise: float, rng) -> np.ndarray:
    if noise > 0:
        X = X + noise * rng.standard_normal(X.shape)
    return X


def _angle_span(turns) -> float:
    """``2 pi turns`` for ``turns`` > 0 small enough that the angle is a finite float."""
    turns = check_float(turns, "turns", minimum=1e-9)
    if not np.isfinite(2 * np.pi * turns):
        raise ValueError(f"turns={turns} is too large: the angle 2 pi turns overflows float64")
    return 2 * np.pi * turns


def _finite_points(generator):
    """Reject, in one line naming the arguments, parameters so large that the points overflow float64."""

    @functools.wraps(generator)
    def checked(*args, **kwargs):
        with np.errstate(over="ignore", invalid="ignore"):
            out = generator(*args, **kwargs)
        if not np.all(np.isfinite(out[0])):
            given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if k != "random_state")
            raise ValueError(f"{generator.__name__}({given}): the points overflow float64; use smaller values")
        return out

    return checked


@_finite_points
def make_spiral(n_samples=5000, *, turns=4.0, noise=0.0, random_state=None):
    """The paper's 2-D spiral (Figure 1): ``x = (t cos t, t sin t) / t_max``.

    ``t`` is uniform in ``[0, t_max]`` with ``t_max = 2 pi turns`` (the default,
    4 turns, is ``t`` in ``[0, 8 pi]``, the range of public re-creations);
    dividing by ``t_max`` keeps the spiral in the unit disc.

    Returns ``X`` (N, 2) and ``t`` (N,).
    """
    n, noise, rng = _start(n_samples, noise, random_state)
    t_max = _angle_span(turns)
    t = np.sort(rng.uniform(0.0, t_max, n))
    X = np.column_stack([t * np.cos(t), t * np.sin(t)]) / t_max
    return _finish(X, noise, rng), t


@_finite_points
def make_swiss_roll(n_samples=2000, *, noise=0.0, random_state=None):
    """scikit-learn's swiss roll: ``x = (t cos t, h, t sin t)``.

    ``t = 1.5 pi (1 + 2u)`` with ``u`` uniform in [0, 1), ``h`` uniform in [0, 21).
    Returns ``X`` (N, 3) and ``t`` (N,).
    """
    n, noise, rng = _start(n_samples, noise, random_state)
    t = 1.5 * np.pi * (1 + 2 * rng.uniform(size=n))
    h = 21 * rng.uniform(size=n)
    X = np.column_stack([t * np.cos(t), h, t * np.sin(t)])
    return _finish(X, noise, rng), t


@_finite_points
def make_s_curve(n_samples=2000, *, noise=0.0, random_state=None):
    """scikit-learn's S curve: ``x = (sin t, h, sign(t) (cos t - 1))``.

    ``t = 3 pi (u - 1/2)`` with ``u`` uniform in [0, 1), ``h`` uniform in [0, 2).
    Returns ``X`` (N, 3) and ``t`` (N,).
    """
    n, noise, rng = _start(n_samples, noise, random_state)
    t = 3 * np.pi * (rng.uniform(size=n) - 0.5)
    h = 2.0 * rng.uniform(size=n)
    X = np.column_stack([np.sin(t), h, np.sign(t) * (np.cos(t) - 1)])
    return _finish(X, noise, rng), t


@_finite_points
def make_helix(n_samples=2000, *, turns=3.0, radius=1.0, pitch=1.0, noise=0.0, random_state=None):
    """A helix: ``x = (r cos t, r sin t, pitch t / (2 pi))``, ``t`` uniform in [0, 2 pi turns].

    Returns ``X`` (N, 3) and ``t`` (N,).
    """
    n, noise, rng = _start(n_samples, noise, random_state)
    span = _angle_span(turns)
    radius = check_float(radius, "radius", minimum=1e-12)
    pitch = check_float(pitch, "pitch")
    t = rng.uniform(0.0, span, n)
    X = np.column_stack([radius * np.cos(t), radius * np.sin(t), pitch * t / (2 * np.pi)])
    return _finish(X, noise, rng), t


@_finite_points
def make_circle(n_samples=1000, *, radius=1.0, noise=0.0, random_state=None):
    """A circle: ``x = (r cos t, r sin t)``, ``t`` uniform in [0, 2 pi).

    Returns ``X`` (N, 2) and ``t`` (N,).
    """
    n, noise, rng = _start(n_samples, noise, random_state)
    radius = check_float(radius, "radius", minimum=1e-12)
    t = rng.uniform(0.0, 2 * np.pi, n)
    X = radius * np.column_stack([np.cos(t), np.sin(t)])
    return _finish(X, noise, rng), t


@_finite_points
def make_torus(n_samples=2000, *, major_radius=2.0, minor_radius=1.0, noise=0.0, random_state=None):
    """A torus in R^3: ``x = ((R + r cos v) cos t, (R + r cos v) sin t, r sin v)``.

    ``t`` and ``v`` uniform in [0, 2 pi); ``t`` (the angle around the axis) is returned.
    Returns ``X`` (N, 3) and ``t`` (N,).
    """
    n, noise, rng = _start(n_samples, noise, random_state)
    R = check_float(major_radius, "major_radius", minimum=1e-12)
    r = check_float(minor_radius, "minor_radius", minimum=1e-12)
    t = rng.uniform(0.0, 2 * np.pi, n)
    v = rng.uniform(0.0, 2 * np.pi, n)
    X = np.column_stack([(R + r * np.cos(v)) * np.cos(t), (R + r * np.cos(v)) * np.sin(t), r * np.sin(v)])
    return _finish(X, noise, rng), t


@_finite_points
def make_sphere(n_samples=2000, *, dim=2, radius=1.0, noise=0.0, random_state=None):
    """Uniform points on the ``dim``-sphere of radius ``r`` in R^{dim+1}.

    Normalised Gaussian vectors; ``t = arccos(x_last / r)`` is the polar angle.
    Returns ``X`` (N, dim + 1) and ``t`` (N,).
    """
    n, noise, rng = _start(n_samples, noise, random_state)
    dim = check_int(dim, "dim", minimum=1)
    radius = check_float(radius, "radius", minimum=1e-12)
    G = rng.standard_normal((n, dim + 1))
    X = radius * G / np.linalg.norm(G, axis=1, keepdims=True)
    t = np.arccos(np.clip(X[:, -1] / radius, -1.0, 1.0))
    return _finish(X, noise, rng), t


@_finite_points
def make_ball(n_samples=2000, *, n_dims=2, noise=0.0, random_state=None):
    """Uniform points in the unit ball of R^{n_dims} (the full-dimensional S of Theorem 1).

    A uniform direction times a radius ``u^{1/n}``; ``t`` is the radius.
    Returns ``X`` (N, n_dims) and ``t`` (N,).
    """
    n, noise, rng = _start(n_samples, noise, random_state)
    d = check_int(n_dims, "n_dims", minimum=1)
    G = rng.standard_normal((n, d))
    t = rng.uniform(size=n) ** (1.0 / d)
    X = G / np.linalg.norm(G, axis=1, keepdims=True) * t[:, None]
    return _finish(X, noise, rng), t


@_finite_points
def make_two_spirals(n_samples=1000, *, turns=1.5, noise=0.0, random_state=None, return_coordinate=False):
    """Two interleaved spiral arms with class labels 0 and 1 (a classification task).

    Arm 0 is ``x = t (cos(2 pi turns t), sin(2 pi turns t))`` with ``t`` uniform
    in [0, 1]; arm 1 is arm 0 rotated by pi (``-x``). Labels alternate between
    the arms so both classes have ``n_samples / 2`` points (+-1).

    Returns ``X`` (N, 2) and ``y`` (N,) int, and ``t`` (N,) in [0, 1] (the
    position along the arm) when ``return_coordinate=True``.
    """
    n, noise, rng = _start(n_samples, noise, random_state)
    span = _angle_span(turns)
    t = rng.uniform(size=n)
    y = np.arange(n) % 2
    angle = span * t
    X = t[:, None] * np.column_stack([np.cos(angle), np.sin(angle)])
    X[y == 1] *= -1
    X = _finish(X, noise, rng)
    return (X, y, t) if return_coordinate else (X, y)


#: The (X, t) generators by name, and the intrinsic dimension of each manifold.
MANIFOLDS = {
    "spiral": make_spiral,
    "swiss_roll": make_swiss_roll,
    "s_curve": make_s_curve,
    "helix": make_helix,
    "circle": make_circle,
    "torus": make_torus,
    "sphere": make_sphere,
    "ball": make_ball,
}
INTRINSIC_DIM = {"spiral": 1, "swiss_roll": 2, "s_curve": 2, "helix": 1, "circle": 1, "torus": 2, "sphere": 2, "ball": 2}


def get_manifold(name: str):
    """The generator called ``name``; ``ValueError`` listing the names otherwise."""
    return MANIFOLDS[check_choice(name, "manifold", MANIFOLDS)]


def embed(X, n_dims, *, kind="gaussian", random_state=None):
    """Embed points ``X`` (N, d) into R^n by a random matrix: ``Y = X T^T``.

    ``kind="gaussian"``: ``T`` has i.i.d. standard normal entries (the paper's
    random T). ``kind="orthogonal"``: ``T`` has orthonormal columns (``T^T T = I``),
    an isometric embedding.

    Returns ``Y`` (N, n_dims) and ``T`` (n_dims, d). ``n_dims < d`` is an error.
    """
    X = check_points(X, "X")
    d = X.shape[1]
    n = check_int(n_dims, "n_dims", minimum=1)
    if n < d:
        raise ValueError(f"n_dims={n} is smaller than the dimension of X ({d}); n_dims must be >= {d}")
    kind = check_choice(kind, "kind", ("gaussian", "orthogonal"))
    rng = check_random_state(random_state)
    T = rng.standard_normal((n, d))
    if kind == "orthogonal":
        Q, R = np.linalg.qr(T)
        T = Q * np.sign(np.diag(R))  # sign fix: Haar-distributed columns
    return X @ T.T, T
