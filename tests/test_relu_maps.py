"""ReLU maps and random inverted-residual blocks on vectors."""

import numpy as np
import pytest

from manifold_lab.relu_maps import InvertedResidualBlock, random_block, random_stack, relu_map


def test_relu_map_activations():
    X = np.array([[1.0, -2.0], [10.0, 0.5]])
    B = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    np.testing.assert_array_equal(relu_map(X, B), [[1, 0, 0], [10, 0.5, 10.5]])
    np.testing.assert_array_equal(relu_map(X, B, act="relu6"), [[1, 0, 0], [6, 0.5, 6]])
    np.testing.assert_array_equal(relu_map(X, B, act="identity", bias=[0, 0, 1]), [[1, -2, 0], [10, 0.5, 11.5]])
    np.testing.assert_allclose(relu_map(X, B, act="leaky_relu")[0], [1, -0.02, -0.01])
    with pytest.raises(ValueError, match="'identity', 'relu', 'relu6', 'leaky_relu'"):
        relu_map(X, B, act="gelu")
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\)"):
        relu_map(X, B, bias=[1.0, 2.0])


def test_block_formula_and_switches():
    rng = np.random.RandomState(0)
    B, A = rng.standard_normal((12, 4)), rng.standard_normal((4, 12))
    X = rng.standard_normal((5, 4))
    inner = np.maximum(X @ B.T, 0) @ A.T
    np.testing.assert_allclose(InvertedResidualBlock(B, A).forward(X), X + inner)
    np.testing.assert_allclose(InvertedResidualBlock(B, A, shortcut=False).forward(X), inner)
    np.testing.assert_allclose(InvertedResidualBlock(B, A, bottleneck_act="relu6").forward(X), X + np.clip(inner, 0, 6))
    with pytest.raises(ValueError, match="bottleneck_act='tanh'"):
        InvertedResidualBlock(B, A, bottleneck_act="tanh")
    with pytest.raises(ValueError, match=r"A must have shape \(4, 12\)"):
        InvertedResidualBlock(B, A.T)


def test_random_stack_shapes_seed_and_scale():
    X = np.random.RandomState(1).standard_normal((2000, 8))
    stack = random_stack(8, 10, 6, random_state=3)
    outs = stack.forward(X)
    assert len(outs) == len(stack) == 10 and all(o.shape == (2000, 8) for o in outs)
    np.testing.assert_array_equal(outs[-1], random_stack(8, 10, 6, random_state=3).forward(X, return_all=False))
    rms = [np.sqrt((o**2).mean()) for o in outs]
    assert 0.3 < rms[-1] / np.sqrt((X**2).mean()) < 5  # activations stay O(1) through depth
    block = random_block(8, 6, random_state=0)
    assert block.B.shape == (48, 8) and block.A.shape == (8, 48)
    with pytest.raises(ValueError, match="depth must be >= 1"):
        random_stack(8, 0, 6)


def test_block_exposes_expansion_and_active_pattern():
    block = random_block(3, 4, random_state=5)
    X = np.random.RandomState(6).standard_normal((50, 3))
    np.testing.assert_allclose(block.expansion(X), X @ block.B.T)
    np.testing.assert_array_equal(block.active_pattern(X), X @ block.B.T > 0)
    with pytest.raises(ValueError, match="X must have 3 columns"):
        block.forward(np.ones((2, 4)))
