"""Generators: closed forms with noise=0, shapes, determinism, embedding, bad input."""

import numpy as np
import pytest

from manifold_lab import manifolds as M


def test_spiral_closed_form():
    X, t = M.make_spiral(500, turns=4, random_state=0)
    t_max = 8 * np.pi
    np.testing.assert_allclose(X, np.column_stack([t * np.cos(t), t * np.sin(t)]) / t_max)
    assert t.min() >= 0 and t.max() <= t_max and np.all(np.diff(t) >= 0)


def test_swiss_roll_and_s_curve_closed_forms():
    X, t = M.make_swiss_roll(400, random_state=1)
    np.testing.assert_allclose(X[:, 0], t * np.cos(t))
    np.testing.assert_allclose(X[:, 2], t * np.sin(t))
    assert np.all((t >= 1.5 * np.pi) & (t <= 4.5 * np.pi)) and np.all((X[:, 1] >= 0) & (X[:, 1] < 21))
    X, t = M.make_s_curve(400, random_state=1)
    np.testing.assert_allclose(X[:, 0], np.sin(t))
    np.testing.assert_allclose(X[:, 2], np.sign(t) * (np.cos(t) - 1))


def test_helix_circle_torus_closed_forms():
    X, t = M.make_helix(300, turns=2, radius=1.5, pitch=0.5, random_state=2)
    np.testing.assert_allclose(X, np.column_stack([1.5 * np.cos(t), 1.5 * np.sin(t), 0.5 * t / (2 * np.pi)]))
    X, t = M.make_circle(300, radius=2.0, random_state=2)
    np.testing.assert_allclose(X, 2.0 * np.column_stack([np.cos(t), np.sin(t)]))
    X, t = M.make_torus(300, major_radius=2, minor_radius=0.5, random_state=2)
    rho = np.hypot(X[:, 0], X[:, 1])
    np.testing.assert_allclose((rho - 2) ** 2 + X[:, 2] ** 2, 0.25)  # the torus equation
    np.testing.assert_allclose(np.mod(np.arctan2(X[:, 1], X[:, 0]), 2 * np.pi), t)


def test_sphere_and_ball():
    X, t = M.make_sphere(500, dim=3, radius=2.0, random_state=3)
    assert X.shape == (500, 4)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 2.0)
    np.testing.assert_allclose(np.cos(t) * 2.0, X[:, -1])
    X, t = M.make_ball(20000, n_dims=3, random_state=3)
    r = np.linalg.norm(X, axis=1)
    np.testing.assert_allclose(r, t)
    assert r.max() <= 1
    # uniform in the 3-ball: P(r <= 1/2) = 1/8; 20000 draws -> s.e. 0.0023, allow 4 s.e.
    assert abs(np.mean(r <= 0.5) - 1 / 8) < 0.01


def test_two_spirals_labels_and_arms():
    X, y, t = M.make_two_spirals(401, turns=1.5, random_state=4, return_coordinate=True)
    assert set(y) == {0, 1} and abs((y == 0).sum() - (y == 1).sum()) <= 1
    a = 2 * np.pi * 1.5 * t
    arm0 = t[:, None] * np.column_stack([np.cos(a), np.sin(a)])
    np.testing.assert_allclose(X, np.where(y[:, None] == 0, arm0, -arm0))
    X2, y2 = M.make_two_spirals(401, turns=1.5, random_state=4)
    np.testing.assert_array_equal(X, X2)


@pytest.mark.parametrize("name", sorted(M.MANIFOLDS))
def test_every_generator_is_seeded_and_noisy(name):
    f = M.get_manifold(name)
    X1, t1 = f(50, random_state=7)
    X2, t2 = f(50, random_state=7)
    np.testing.assert_array_equal(X1, X2)
    assert X1.shape[0] == t1.shape[0] == 50 and X1.dtype == np.float64
    Xn, _ = f(50, noise=0.1, random_state=7)
    assert 0.03 < np.std(Xn - X1) < 0.3


def test_embed_gaussian_and_orthogonal():
    X, _ = M.make_spiral(100, random_state=0)
    Y, T = M.embed(X, 7, random_state=0)
    assert Y.shape == (100, 7) and T.shape == (7, 2)
    np.testing.assert_allclose(Y, X @ T.T)
    Y, T = M.embed(X, 7, kind="orthogonal", random_state=0)
    np.testing.assert_allclose(T.T @ T, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(Y, axis=1), np.linalg.norm(X, axis=1))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: M.make_spiral(0), "n_samples must be >= 1"),
        (lambda: M.make_spiral(-5), "n_samples must be >= 1"),
        (lambda: M.make_spiral(10.5), "n_samples must be an integer"),
        (lambda: M.make_spiral(10, noise=-1), "noise must be >= 0"),
        (lambda: M.embed(np.ones((5, 3)), 2), "n_dims=2 is smaller than the dimension of X"),
        (lambda: M.embed(np.ones((5, 3)), 4, kind="sparse"), "'gaussian', 'orthogonal'"),
        (lambda: M.embed(np.array([[np.nan, 1.0]]), 4), "NaN or inf"),
        (lambda: M.embed(np.ones(5), 4), "must be 2-D"),
        (lambda: M.get_manifold("klein_bottle"), "'spiral'"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
