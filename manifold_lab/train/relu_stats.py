"""Figure 7 of the paper: how many channels each ReLU keeps positive.

For every ReLU / ReLU6 module (``manifold_lab.models.relu_modules``) and a
fixed class-balanced batch of test images (``manifold_lab.data.sample``), count
at every spatial position of every image the channels with a positive output;
report min / max / mean of the count, the channel total ``C`` and the layer's
*invertibility threshold* ``d``: by Lemma 2 a ReLU layer can be inverted where
at least ``d`` channels stay positive, ``d`` the dimension of what enters it
(``relu_thresholds``):

- a block's expansion (``act1``) and depthwise (``act2``) activations: the
  block's input channels ``k``, which is ``C / t`` for an expanding block (the
  paper's ``C / 6``) and ``C`` for the ``t = 1`` block (its depthwise layer
  works on the stem's channels directly);
- a ``conv + BN + act`` layer (the stem, the last 1x1 conv of 1280 channels):
  its input channels (3 for the stem, the last block's ``k'`` for the head);
- a non-linear bottleneck activation (``act3``): ``min(k, k')``; these are no
  Figure 7 layers and ``layers_below_threshold`` leaves them out.

Batch-norm statistics (``bn``): ``"running"`` evaluates in eval mode with the
running statistics (a trained network); ``"batch"`` normalises with the
sample's own batch statistics, in a copy of the model so the running
statistics are untouched (at step 0 the running statistics are the fresh
``mean 0, var 1``, which leaves every activation at the scale of the raw
convolutions and says nothing about a normalised network). The trainer uses
``"batch"`` at step 0 and ``"running"`` at the end.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from manifold_lab.models import InvertedResidual, relu_modules

BN_MODES = ("running", "batch")


def relu_thresholds(model: nn.Module) -> dict[str, int]:
    """``{relu module name: invertibility threshold d}`` by the rules of the module docstring."""
    out: dict[str, int] = {}
    for name, m in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(m, InvertedResidual):
            out[f"{prefix}act1"] = out[f"{prefix}act2"] = int(m.inp)
            out[f"{prefix}act3"] = int(min(m.inp, m.oup))
        elif isinstance(getattr(m, "conv", None), nn.Conv2d) and hasattr(m, "act"):
            out[f"{prefix}act"] = int(m.conv.in_channels // m.conv.groups)
    return out


@torch.no_grad()
def relu_stats(model: nn.Module, images: torch.Tensor, *, bn: str = "running", expand_ratio: int = 6) -> list[dict]:
    """One record per ReLU module: ``name, channels, min, max, mean, threshold, below_threshold``.

    ``threshold`` is ``relu_thresholds(model)[name]`` (``C / expand_ratio`` for a ReLU
    outside the known layers); ``below_threshold`` the share of positions with
    fewer positive channels than it. ``bn`` is one of ``BN_MODES`` (module docstring).
    """
    if bn not in BN_MODES:
        raise ValueError(f"bn={bn!r} is not one of {', '.join(map(repr, BN_MODES))}")
    was_training = model.training
    if bn == "batch":  # batch statistics in a throw-away copy: the model's running statistics stay
        model = copy.deepcopy(model).eval()
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train()
    thresholds = relu_thresholds(model)
    records, hooks = [], []

    def hook(name):
        def fn(_module, _inputs, out):
            counts = (out > 0).sum(dim=1).float()  # (B, H, W) positive channels per position
            c = out.shape[1]
            d = thresholds.get(name, c / expand_ratio)
            records.append({
                "name": name, "channels": c, "min": counts.min().item(), "max": counts.max().item(),
                "mean": counts.mean().item(), "threshold": d,
                "below_threshold": (counts < d).float().mean().item(),
            })
        return fn

    for name, module in relu_modules(model):
        hooks.append(module.register_forward_hook(hook(name)))
    if bn == "running":
        model.eval()
    try:
        model(images)
    finally:
        if bn == "running":
            model.train(was_training)
        for h in hooks:
            h.remove()
    return records


def layers_below_threshold(records: list[dict]) -> tuple[int, int]:
    """``(below, layers)``: layers of ``relu_stats`` output whose mean positive-channel count is below the threshold.

    Only the layers Figure 7 has (stem, expansion, depthwise and head ReLUs): the bottleneck
    activations ``*.act3`` of a non-linear-bottleneck variant are left out. Each record's own
    ``threshold`` is used (records written before issue 11 carry ``C / 6`` for every layer).
    The paper's reading of Figure 7: fully trained, all but two layers stay above the threshold.
    """
    kept = [rec for rec in records if not rec["name"].endswith(".act3")]
    return sum(rec["mean"] < rec["threshold"] for rec in kept), len(kept)
