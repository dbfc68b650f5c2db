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


#: The network activations by config name (``manifold_lab.models.layers.make_activation`` builds them;
#: kept here, free of torch, so that configurations validate without importing it). ``leaky_relu_<slope>``
#: (any ``0 < slope < 1``, e.g. ``leaky_relu_0.1``) is parsed.
NETWORK_ACTIVATIONS = ("identity", "relu", "relu6", "elu", "softplus")
LEAKY_PREFIX = "leaky_relu_"
#: The injective choices (strictly increasing, so no two inputs share an output and no information
#: is lost): identity, ``leaky_relu_<slope>`` (x for x > 0, slope x otherwise), ``elu``
#: (x for x > 0, e^x - 1 otherwise) and ``softplus`` (log(1 + e^x)). relu and relu6 are not
#: (every x <= 0 maps to 0; relu6 also every x >= 6 to 6), and neither are SiLU (x sigmoid(x)) and
#: GELU (x Phi(x)): both dip below zero and come back, so two negative inputs share each output in
#: that dip; they are not offered as "injective" arms.
INJECTIVE = ("identity", "leaky_relu_<slope>", "elu", "softplus")
CHOICES = "identity, relu, relu6, elu, softplus, leaky_relu_<slope> (0 < slope < 1, e.g. leaky_relu_0.1)"


#: ``model.bottleneck_act_blocks``: the blocks whose bottleneck gets the activation
#: (``manifold_lab.models.mobilenetv2``), or ``block_N``, the block ``features.N`` alone.
ACT_BLOCKS = ("all", "with_shortcut", "without_shortcut", "none")


def check_act_blocks(value) -> int | None:
    """N of ``"block_N"`` (N >= 1), None for one of ``ACT_BLOCKS``; ``ValueError`` naming the choices otherwise."""
    if value in ACT_BLOCKS:
        return None
    if isinstance(value, str) and value.startswith("block_") and value[6:].isdigit() and value[6] != "0":
        return int(value[6:])
    raise ValueError(f"bottleneck_act_blocks={value!r} is not one of {', '.join(ACT_BLOCKS)} or block_N "
                     "(N >= 1: the block features.N alone, e.g. block_3)")


def canonical_activation(name: str, *, what: str = "activation") -> str:
    """A network activation ``name`` in its one spelling (``leaky_relu_0.10`` -> ``leaky_relu_0.1``);
    ``ValueError`` listing the choices otherwise."""
    if isinstance(name, str) and name in NETWORK_ACTIVATIONS:
        return name
    if isinstance(name, str) and name.startswith(LEAKY_PREFIX):
        try:
            slope = float(name[len(LEAKY_PREFIX):])
        except ValueError:
            slope = float("nan")
        if 0 < slope < 1:
            return f"{LEAKY_PREFIX}{slope:g}"
        raise ValueError(f"{what}={name!r}: the slope of leaky_relu_<slope> must be a number with 0 < slope < 1")
    raise ValueError(f"{what}={name!r} is not one of {CHOICES}")


def get_activation(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The activation called ``name``; ``ValueError`` listing the choices otherwise."""
    return ACTIVATIONS[check_choice(name, "act", ACTIVATIONS)]
