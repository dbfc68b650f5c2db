"""ReLU maps ``act(Bx + b)`` and random inverted-residual blocks on vectors.

The paper's operator (Appendix A) is ``A ReLU(Bx)``: ``x`` in R^k (a narrow,
k-channel pixel), ``B`` (t k x k) expands, ``A`` (k x t k) projects back. The
MobileNetV2 block on vectors is

    F(x) = x + act_out(A act(B x))        (shortcut on)
    F(x) =     act_out(A act(B x))        (shortcut off)

with ``act`` the expansion non-linearity (ReLU or ReLU6) and ``act_out`` the
*bottleneck activation*: ``identity`` is the paper's linear bottleneck,
``relu`` / ``relu6`` the non-linear bottleneck it argues against.

Random initialisation (He-style, so activations stay O(1) through depth):
``B_ij ~ N(0, 1/k)`` keeps each expanded pre-activation at the scale of
``|x| / sqrt(k)``; ``A_ij ~ N(0, 2/(t k))`` compensates for ReLU zeroing half the
units. In a stack with shortcuts the residual branch is further scaled by
``1/sqrt(depth)`` so the norm grows at most by a bounded factor over depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.utils import check_random_state

from manifold_lab._checks import check_bias, check_choice, check_int, check_matrix_for, check_points
from manifold_lab.activations import ACTIVATIONS, get_activation

__all__ = ["relu_map", "InvertedResidualBlock", "BlockStack", "random_block", "random_stack"]

BOTTLENECK_ACTS = ("identity", "relu", "relu6")
EXPAND_ACTS = ("relu", "relu6", "leaky_relu")


def pre_activation(X, B, *, bias=None) -> np.ndarray:
    """``X B^T + bias`` for points ``X`` (N, d) and ``B`` (m, d), validated: (N, m)."""
    X = check_points(X, "X")
    B = check_matrix_for(X, B)
    b = check_bias(bias, B.shape[0])
    pre = X @ B.T
    if b is not None:
        pre += b
    return pre


def relu_map(X, B, *, act="relu", bias=None) -> np.ndarray:
    """``act(X B^T + bias)``: points ``X`` (N, d), ``B`` (m, d) -> (N, m).

    ``act`` is one of ``identity``, ``relu``, ``relu6``, ``leaky_relu``.
    """
    return get_activation(act)(pre_activation(X, B, bias=bias))


@dataclass
class InvertedResidualBlock:
    """``x -> [x +] act_out(A act(B x))`` on row vectors.

    Attributes
    ----------
    B : array (t k, k)
        Expansion.
    A : array (k, t k)
        Linear projection back to the bottleneck width ``k``.
    expand_act : str
        Non-linearity after the expansion (``relu``, ``relu6`` or ``leaky_relu``).
    bottleneck_act : str
        ``identity`` (linear bottleneck), ``relu`` or ``relu6``.
    shortcut : bool
        Residual connection between bottlenecks (needs ``A`` square-compatible).
    """

    B: np.ndarray
    A: np.ndarray
    expand_act: str = "relu"
    bottleneck_act: str = "identity"
    shortcut: bool = True

    def __post_init__(self):
        self.B = check_points(self.B, "B")
        self.A = check_points(self.A, "A")
        check_choice(self.expand_act, "expand_act", EXPAND_ACTS)
        check_choice(self.bottleneck_act, "bottleneck_act", BOTTLENECK_ACTS)
        k, tk = self.B.shape[1], self.B.shape[0]
        if self.A.shape != (k, tk):
            raise ValueError(f"A must have shape ({k}, {tk}) to project the expansion of B {self.B.shape}, got {self.A.shape}")

    @property
    def width(self) -> int:
        return self.B.shape[1]

    def expansion(self, X) -> np.ndarray:
        """Pre-activations of the expansion, ``X B^T``: (N, t k)."""
        return check_points(X, "X", n_features=self.width) @ self.B.T

    def active_pattern(self, X) -> np.ndarray:
        """Boolean (N, t k): expansion units with positive pre-activation (Lemma 2's set ``T(x)``)."""
        return self.expansion(X) > 0

    def forward(self, X) -> np.ndarray:
        """The block output for points ``X`` (N, k): (N, k)."""
        X = check_points(X, "X", n_features=self.width)
        h = ACTIVATIONS[self.expand_act](X @ self.B.T)
        out = ACTIVATIONS[self.bottleneck_act](h @ self.A.T)
        return X + out if self.shortcut else out

    __call__ = forward


@dataclass
class BlockStack:
    """A sequence of ``InvertedResidualBlock`` of equal width."""

    blocks: list[InvertedResidualBlock]

    def forward(self, X, return_all=True):
        """Outputs after each block (list of (N, k)) or only the last one."""
        outs = []
        for block in self.blocks:
            X = block.forward(X)
            outs.append(X)
        return outs if return_all else X

    __call__ = forward

    def __len__(self) -> int:
        return len(self.blocks)


def random_block(width, expand_ratio, *, bottleneck_act="identity", shortcut=True, expand_act="relu",
                 residual_scale=1.0, random_state=None) -> InvertedResidualBlock:
    """A block with Gaussian ``B`` (t k x k, var 1/k) and ``A`` (k x t k, var 2/(t k) * residual_scale^2)."""
    k = check_int(width, "width", minimum=1)
    t = check_int(expand_ratio, "expand_ratio", minimum=1)
    check_choice(bottleneck_act, "bottleneck_act", BOTTLENECK_ACTS)
    check_choice(expand_act, "expand_act", EXPAND_ACTS)
    rng = check_random_state(random_state)
    B = rng.standard_normal((t * k, k)) / np.sqrt(k)
    A = rng.standard_normal((k, t * k)) * np.sqrt(2.0 / (t * k)) * residual_scale
    return InvertedResidualBlock(B, A, expand_act=expand_act, bottleneck_act=bottleneck_act, shortcut=bool(shortcut))


def random_stack(width, depth, expand_ratio, *, bottleneck_act="identity", shortcut=True, expand_act="relu",
                 random_state=None) -> BlockStack:
    """``depth`` random blocks of width ``k`` and expansion ``t`` (residual branch scaled 1/sqrt(depth) with shortcuts)."""
    depth = check_int(depth, "depth", minimum=1)
    rng = check_random_state(random_state)
    scale = 1.0 / np.sqrt(depth) if shortcut else 1.0
    return BlockStack([
        random_block(width, expand_ratio, bottleneck_act=bottleneck_act, shortcut=shortcut,
                     expand_act=expand_act, residual_scale=scale, random_state=rng)
        for _ in range(depth)
    ])
