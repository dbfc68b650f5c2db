"""Element-wise activations on numpy arrays, by name.

``identity`` is the paper's *linear bottleneck*; ``relu6`` = min(max(x, 0), 6)
is MobileNetV2's non-linearity; ``leaky_relu`` uses slope 0.01 for x < 0.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from manifold_lab._checks import check_choice


def identity(x: np.ndarray) -> np.ndarray:
    return x


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 6.0)


def leaky_relu(x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    return np.where(x > 0, x, negative_slope * x)


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": identity,
    "relu": relu,
    "relu6": relu6,
    "leaky_relu": leaky_relu,
}


def get_activation(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The activation called ``name``; ``ValueError`` listing the choices otherwise."""
    return ACTIVATIONS[check_choice(name, "act", ACTIVATIONS)]
