"""Parameter and multiply-add counts (MACs) of a model.

MACs come from ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and
matrix products), halved: one multiply-add is two flops.
"""

from __future__ import annotations

import torch
from torch import nn

from manifold_lab.models.layers import evaluating


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size=(1, 3, 224, 224)) -> int:
    """Multiply-adds of one forward pass in eval mode for an input of ``input_size``."""
    from torch.utils.flop_counter import FlopCounterMode

    with evaluating(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(input_size))
    return counter.get_total_flops() // 2


def mobilenet_v2_parameters(preset: str = "imagenet", *, num_classes: int | None = None, in_channels: int = 3,
                            **overrides) -> int:
    """Parameters of ``mobilenet_v2(preset, **overrides)`` from its layer shapes alone (no network is built).

    Convolutions have no bias: a ``k x k`` conv has ``k^2 c_in c_out / groups`` weights, a BatchNorm
    ``2 c``, the classifier ``F n + n`` (``F = last_channel``, ``n`` classes). With ``h = t k``:

    - stem: ``27 c_0 + 2 c_0`` (``9 in_channels c_0`` in general);
    - inverted residual ``k -> h -> k'``: ``[t > 1] (k h + 2 h) + 9 h + 2 h + h k' + 2 k'``;
    - sandglass ``w -> m -> w'``: ``9 w + 2 w + w m + 2 m + m w' + 2 w' + 9 w' + 2 w'``;
    - last 1x1 conv ``k -> F`` (not with the sandglass block): ``k F + 2 F``.
    """
    from manifold_lab.models.mobilenetv2 import PRESETS, InvertedResidual, architecture

    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is not one of {', '.join(map(repr, PRESETS))}")
    config = {**PRESETS[preset], **overrides}
    classes = int(config["num_classes"] if num_classes is None else num_classes)
    for unused in ("num_classes", "dropout", "expand_act", "depthwise_act"):  # no parameters
        config.pop(unused, None)
    arch = architecture(**config)
    total = 9 * in_channels * arch.stem + 2 * arch.stem
    for block, kw in arch.blocks:
        if block is InvertedResidual:
            k, h, out = kw["inp"], kw["hidden"], kw["oup"]
            total += (k * h + 2 * h if kw["expand_ratio"] != 1 else 0) + 11 * h + h * out + 2 * out
        else:
            w, m, out = kw["inp"], kw["mid"], kw["oup"]
            total += 11 * w + w * m + 2 * m + m * out + 13 * out
    if arch.head is not None:
        total += arch.head * arch.last_channel + 2 * arch.last_channel
    return total + arch.last_channel * classes + classes
