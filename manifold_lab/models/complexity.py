"""Parameter and multiply-add counts (MACs) of a model.

MACs come from ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and
matrix products), halved: one multiply-add is two flops.
"""

from __future__ import annotations

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size=(1, 3, 224, 224)) -> int:
    """Multiply-adds of one forward pass in eval mode for an input of ``input_size``."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(input_size))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
