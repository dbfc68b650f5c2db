"""Lemma 2's preimage, the paper's pseudo-inverse read-out and the decoders."""

import numpy as np
import pytest

from manifold_lab.recovery import (
    knn_decoder,
    linear_decoder,
    normalized_error,
    pinv_projection,
    reconstruction_errors,
    relu_preimage,
)


@pytest.mark.parametrize("m, d", [(8, 2), (12, 3), (40, 5), (80, 4)])
def test_preimage_exact_where_lemma_2_holds(m, d):
    rng = np.random.RandomState(m + d)
    B = rng.standard_normal((m, d))
    X = rng.standard_normal((2000, d))
    X_hat, ok = relu_preimage(B, np.maximum(X @ B.T, 0))
    counts = (X @ B.T > 0).sum(axis=1)
    np.testing.assert_array_equal(ok, counts >= d)  # Gaussian B: any d rows are independent
    assert ok.mean() > 0.5
    np.testing.assert_allclose(X_hat[ok], X[ok], atol=1e-9)


def test_fewer_than_d_active_rows_is_flagged():
    B = np.eye(3)
    X = np.array([[1.0, 2.0, -1.0], [-1.0, -1.0, -1.0], [1.0, 2.0, 3.0]])
    X_hat, ok = relu_preimage(B, np.maximum(X @ B.T, 0))
    np.testing.assert_array_equal(ok, [False, False, True])
    np.testing.assert_allclose(X_hat[0], [1.0, 2.0, 0.0])  # minimum-norm solution on the active rows
    np.testing.assert_allclose(X_hat[1], 0.0)
    np.testing.assert_allclose(X_hat[2], X[2])


def test_rank_deficient_active_rows_are_flagged():
    # four rows, all active at x, but spanning only a plane of R^3
    B = np.array([[1.0, 0, 0], [0, 1.0, 0], [1.0, 1.0, 0], [2.0, 1.0, 0]])
    x = np.array([[1.0, 1.0, 5.0]])
    Y = np.maximum(x @ B.T, 0)
    assert (Y > 0).sum() == 4
    X_hat, ok = relu_preimage(B, Y)
    assert not ok[0]
    # any x + (0, 0, c) has the same output: the third coordinate is lost
    np.testing.assert_allclose(np.maximum((x + [0, 0, 7.0]) @ B.T, 0), Y)


def test_pinv_projection_is_identity_without_relu():
    rng = np.random.RandomState(0)
    X, T = rng.standard_normal((50, 2)), rng.standard_normal((9, 2))
    np.testing.assert_allclose(pinv_projection(X, T, act="identity"), X, atol=1e-12)
    np.testing.assert_allclose(pinv_projection(X, T), np.maximum(X @ T.T, 0) @ np.linalg.pinv(T).T)


def test_decoders_and_normalized_error():
    rng = np.random.RandomState(1)
    X = rng.standard_normal((400, 2))
    assert normalized_error(X, np.repeat(X.mean(0, keepdims=True), len(X), 0)) == pytest.approx(1.0)
    A = rng.standard_normal((6, 2))
    assert normalized_error(X, linear_decoder(X, X @ A.T + 3.0)) < 1e-20  # affine codes decode exactly
    X_test, X_pred = knn_decoder(X, X @ A.T, n_neighbors=1, random_state=0)
    assert len(X_test) == 100 and normalized_error(X_test, X_pred) < 0.1
    noise = rng.standard_normal((400, 6))  # an output unrelated to X: nothing recoverable
    assert normalized_error(*knn_decoder(X, noise, random_state=0)) > 0.8


def test_reconstruction_errors_keys():
    rng = np.random.RandomState(2)
    X, T = rng.standard_normal((300, 2)), rng.standard_normal((30, 2))
    Y = np.maximum(X @ T.T, 0)
    errors = reconstruction_errors(X, Y, T, B=T, random_state=0)
    assert set(errors) == {"linear", "knn", "pinv", "preimage"}
    assert errors["preimage"] < 1e-20  # m = 30 >> d = 2: every point is invertible here
    assert set(reconstruction_errors(X, Y)) == {"linear", "knn"}


@pytest.mark.parametrize(
    "B, Y, message",
    [
        (np.ones((3, 2)), np.ones((4, 2)), "Y must have 3 columns"),
        (np.ones((3, 2)), -np.ones((4, 3)), "non-negative"),
        (np.ones((3, 2)), np.full((4, 3), np.nan), "NaN or inf"),
    ],
)
def test_bad_input(B, Y, message):
    with pytest.raises(ValueError, match=message):
        relu_preimage(B, Y)


def test_preimage_and_ranks_same_in_small_chunks(monkeypatch):
    # Memory is bounded by processing patterns / points in chunks; the chunked
    # path (here chunks of 1-2 points) must give the same answer.
    import manifold_lab.metrics as metrics_module
    import manifold_lab.recovery as recovery_module

    rng = np.random.RandomState(7)
    B = rng.standard_normal((9, 3))
    B[1] = B[0]  # a rank-deficient pair so some patterns are flagged
    X = rng.standard_normal((300, 3))
    Y = np.maximum(X @ B.T, 0)
    X_hat, ok = relu_preimage(B, Y)
    collapsed = metrics_module.collapsed_mask(X, B)
    monkeypatch.setattr(metrics_module, "CHUNK_FLOATS", 40)
    monkeypatch.setattr(recovery_module, "CHUNK_FLOATS", 40)
    X_hat_small, ok_small = relu_preimage(B, Y)
    np.testing.assert_array_equal(ok_small, ok)
    np.testing.assert_allclose(X_hat_small, X_hat, atol=1e-12)
    np.testing.assert_array_equal(metrics_module.collapsed_mask(X, B), collapsed)
    np.testing.assert_array_equal(ok, ~collapsed)  # without bias, Lemma 2's flag is "not collapsed"
