"""Figure 7 of the paper: how many channels each ReLU keeps positive.

For every ReLU / ReLU6 module (``manifold_lab.models.relu_modules``) and a
fixed class-balanced batch of test images (``manifold_lab.data.sample``), count
at every spatial position of every image the channels with a positive output;
report min / max / mean of the count, the channel total ``C`` and the layer's
*invertibility threshold* ``d``, the paper's reading of Figure 7: by Lemma 2 a
ReLU layer can be inverted where at least ``d`` channels stay positive, ``d`` the
dimension of the manifold the layer must keep. ``THRESHOLDS`` states it per kind
of layer, with the reason, as data (``relu_layers`` applies it to a network); a
layer's *margin* is ``mean positive channels / d`` (below 1: the layer is below).

Batch-norm statistics (``bn``): ``"running"`` evaluates in eval mode with the
running statistics (a trained network); ``"calibrated"`` first sets the running
statistics of a copy of the model by a calibration pass (its batch norms alone in
train mode, every other module in eval mode, no gradient, ``momentum=None``: the
cumulative average over ``calibration`` images, in batches of ``CALIBRATION_BATCH``),
then evaluates it as ``"running"``; ``"batch"`` normalises with the sample's own
batch statistics (in a copy). At step 0 the running statistics are the fresh
``mean 0, var 1``, which says nothing about a normalised network, so step 0 is
measured ``"calibrated"`` on class-balanced clean training images and the end
``"running"``: both in eval mode with running statistics estimated on training
images, one the initial network's (cumulative average), the other training's
(momentum average). Statistics measured one way at step 0 and another at the end
(``"batch"``, before issue 22) are not comparable: the margins would differ by
the way of measuring. The calibration draws no random numbers (no dropout runs,
the images are fixed), so adding it leaves a run's training unchanged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from manifold_lab.models import InvertedResidual, relu_modules

BN_MODES = ("running", "calibrated", "batch")
CALIBRATION_BATCH = 128

#: Figure 7's threshold per kind of ReLU layer: ``kind: (the dimension of the manifold it must keep, why)``,
#: ``k`` / ``k'`` a block's input / output (bottleneck) channels, ``t`` its expansion ratio.
THRESHOLDS = {
    "stem": ("the conv's input channels (3)",
             "the stem sees the image, whose pixels have 3 channels"),
    "block": ("min(k, k')",
              "the manifold flowing through a block lives in its bottlenecks: it enters through k channels and the "
              "projection passes on k', so the expansion and depthwise ReLUs must keep at most min(k, k') "
              "dimensions; that is k = C / t for an expanding block (the paper's C / 6), and k' for the t = 1 block, "
              "whose depthwise ReLU works on the stem's C = k channels directly"),
    "head": ("the conv's input channels (the last block's k')",
             "the head's 1x1 conv widens the last bottleneck, which holds the manifold, to 1280 channels"),
    "bottleneck": ("min(k, k')", "a non-linear bottleneck (act3) keeps what both bottlenecks hold; not a "
                                 "Figure 7 layer: layers_below_threshold leaves it out"),
}


def relu_layers(model: nn.Module) -> dict[str, tuple[str, int]]:
    """``{relu module name: (kind of ``THRESHOLDS``, threshold d)}``: the stem and the head are the first and
    the other ``conv + BN + act`` layers, ``act1`` / ``act2`` of a block ``"block"``, its ``act3`` ``"bottleneck"``."""
    out: dict[str, tuple[str, int]] = {}
    for name, m in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(m, InvertedResidual):
            d = int(min(m.inp, m.oup))
            out[f"{prefix}act1"], out[f"{prefix}act2"], out[f"{prefix}act3"] = ("block", d), ("block", d), \
                ("bottleneck", d)
        elif isinstance(getattr(m, "conv", None), nn.Conv2d) and hasattr(m, "act"):
            out[f"{prefix}act"] = ("head" if out else "stem", int(m.conv.in_channels // m.conv.groups))
    return out


def relu_thresholds(model: nn.Module) -> dict[str, int]:
    """``{relu module name: invertibility threshold d}`` (``relu_layers`` without the kinds)."""
    return {name: d for name, (_, d) in relu_layers(model).items()}


@torch.no_grad()
def relu_stats(model: nn.Module, images: torch.Tensor, *, bn: str = "running", expand_ratio: int = 6,
               calibration: torch.Tensor | None = None) -> list[dict]:
    """One record per ReLU module: ``name, channels, min, max, mean, threshold, below_threshold``.

    ``images``: (B, C, H, W). ``threshold`` is ``relu_thresholds(model)[name]`` (``C / expand_ratio``
    for a ReLU outside the known layers); ``below_threshold`` the share of positions with
    fewer positive channels than it. ``bn`` is one of ``BN_MODES`` (module docstring);
    ``"calibrated"`` needs ``calibration`` (N, C, H, W) images.
    """
    if bn not in BN_MODES:
        raise ValueError(f"bn={bn!r} is not one of {', '.join(map(repr, BN_MODES))}")
    if bn == "calibrated" and calibration is None:
        raise ValueError("bn='calibrated' needs calibration images (calibration=...)")
    was_training = model.training
    if bn != "running":  # batch or calibrated statistics in a throw-away copy: the model's own stay
        model = copy.deepcopy(model).eval()
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for m in norms:
            m.train()
        if bn == "calibrated":
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the calibration batches
            for batch in calibration.split(CALIBRATION_BATCH):
                model(batch.to(images.device))
    thresholds = relu_thresholds(model)
    records = []

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

    hooks = [module.register_forward_hook(hook(name)) for name, module in relu_modules(model)]
    if bn != "batch":
        model.eval()
    try:
        model(images)
    finally:
        if bn != "batch":
            model.train(was_training)
        for h in hooks:
            h.remove()
    return records


#: How the trainer measures (``sample.bn`` of ``relu_stats.json``): step 0 calibrated, the end with running statistics.
STEP0_BN = ("running statistics of a calibration pass over {images} class-balanced clean training images "
            "(cumulative average, eval mode)")
FINAL_BN = "running statistics (eval mode)"


def step0_stats(model: nn.Module, sample: torch.Tensor, train_loader, per_class: int) -> tuple[list[dict], str]:
    """Figure 7 at step 0 measured as the end is (module docstring): ``relu_stats`` of ``sample`` with ``bn=
    "calibrated"`` on ``per_class`` clean training images of every class (``balanced_sample``, no random draw),
    and the ``STEP0_BN`` text saying so; a streaming training loader (it augments every image) calibrates on
    ``sample`` itself and says that instead."""
    from manifold_lab.data.sample import balanced_sample

    try:
        calibration = balanced_sample(train_loader, per_class)[0]
        how = STEP0_BN.format(images=len(calibration))
    except ValueError:
        calibration, how = sample.cpu(), "running statistics of a calibration pass over the sample (eval mode)"
    return relu_stats(model, sample, bn="calibrated", calibration=calibration), how


def margins(records: list[dict], thresholds: dict[str, int] | None = None) -> dict[str, float]:
    """``{layer: mean positive channels / threshold}`` of the Figure 7 layers of ``relu_stats`` output (stem,
    expansion, depthwise and head ReLUs; the bottleneck activations ``*.act3`` are left out). ``thresholds``
    (``{name: d}``, e.g. ``relu_thresholds`` of the network rebuilt from its configuration) replaces each
    record's own ``threshold`` (records written before issue 22 carry the t = 1 block's C, before issue 11
    ``C / 6`` for every layer)."""
    return {rec["name"]: rec["mean"] / (thresholds or {}).get(rec["name"], rec["threshold"])
            for rec in records if not rec["name"].endswith(".act3")}


def layers_below_threshold(records: list[dict], thresholds: dict[str, int] | None = None) -> tuple[int, int]:
    """``(below, layers)``: Figure 7 layers whose margin (``margins``) is below 1, i.e. whose mean
    positive-channel count is below the threshold. The paper's reading of Figure 7: fully trained, all but
    two layers stay above it."""
    m = margins(records, thresholds)
    return sum(v < 1 for v in m.values()), len(m)
