"""Figure 7 of the paper: how many channels each ReLU keeps positive.

For every ReLU / ReLU6 module (``manifold_lab.models.relu_modules``) and a
fixed batch of test images, count at every spatial position of every image the
channels with a positive output; report min / max / mean of the count and the
channel total ``C``. The paper's *invertibility threshold* is ``C / 6`` (the
expansion ratio is 6, so a block's input has ``C / 6`` dimensions): by Lemma 2
a layer whose count stays above it can be inverted.
"""

from __future__ import annotations

import torch
from torch import nn

from manifold_lab.models import relu_modules


@torch.no_grad()
def relu_stats(model: nn.Module, images: torch.Tensor, *, expand_ratio: int = 6) -> list[dict]:
    """One record per ReLU module: ``name, channels, min, max, mean, threshold, below_threshold``."""
    records, hooks = [], []

    def hook(name):
        def fn(_module, _inputs, out):
            counts = (out > 0).sum(dim=1).float()  # (B, H, W) positive channels per position
            c = out.shape[1]
            records.append({
                "name": name, "channels": c, "min": counts.min().item(), "max": counts.max().item(),
                "mean": counts.mean().item(), "threshold": c / expand_ratio,
                "below_threshold": (counts < c / expand_ratio).float().mean().item(),
            })
        return fn

    for name, module in relu_modules(model):
        hooks.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        model(images)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return records


def layers_below_threshold(records: list[dict]) -> tuple[int, int]:
    """``(below, layers)``: layers of ``relu_stats`` output whose mean positive-channel count is below ``C / 6``.

    Only the layers Figure 7 has (stem, expansion, depthwise and head ReLUs): the bottleneck
    activations ``*.act3`` of a non-linear-bottleneck variant are left out, since their input is
    the expanded tensor and C/6 is no threshold for them. The paper's reading of Figure 7: fully
    trained, all but two layers stay above the threshold.
    """
    kept = [rec for rec in records if not rec["name"].endswith(".act3")]
    return sum(rec["mean"] < rec["threshold"] for rec in kept), len(kept)
