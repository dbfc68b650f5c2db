"""Torch building blocks shared by the model zoo: activations by name, conv + BN + act."""

from __future__ import annotations

import contextlib
import math

from torch import nn

from manifold_lab.activations import LEAKY_PREFIX, canonical_activation

#: Activation modules by config name (``manifold_lab.activations.canonical_activation`` checks a name:
#: these and ``leaky_relu_<slope>``). ``identity`` is the linear bottleneck.
ACTIVATIONS = {"identity": nn.Identity, "relu": nn.ReLU, "relu6": nn.ReLU6, "elu": nn.ELU, "softplus": nn.Softplus}


def make_activation(name: str, *, what: str = "activation") -> nn.Module:
    """A fresh activation module; ``ValueError`` listing the valid names otherwise."""
    name = canonical_activation(name, what=what)
    if name.startswith(LEAKY_PREFIX):
        return nn.LeakyReLU(float(name[len(LEAKY_PREFIX):]))
    return ACTIVATIONS[name]()


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to the nearest multiple of ``divisor``, never below 90% of ``v``.

    The rule of the reference TF code (and torchvision's ``_make_divisible``):
    ``max(min_value, int(v + divisor / 2) // divisor * divisor)``, plus one
    ``divisor`` when that drops more than 10%. Width 1.4 gives 48 stem channels.
    """
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNAct(nn.Sequential):
    """``Conv2d(k x k, stride, groups, no bias) -> BatchNorm2d -> activation``; names ``conv``, ``bn``, ``act``."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 act: str = "relu6"):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.act = make_activation(act)


def init_weights(model: nn.Module) -> None:
    """torchvision's initialisation: Kaiming-normal (fan_out) convs, BN (1, 0), linear N(0, 0.01)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


@contextlib.contextmanager
def evaluating(model: nn.Module, hooks=()):
    """``model`` in eval mode inside the ``with`` block; on exit its mode is restored and ``hooks`` removed."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()


def check_resolution(model_or_strides, size: int, *, hint: str = "") -> int:
    """The total stride; ``ValueError`` unless a ``size x size`` input keeps at least one pixel.

    ``model_or_strides``: a model of the zoo (``MobileNetV2``, ``MobileNetV1``: its ``total_stride``)
    or its strides (e.g. the stem stride, then every stage's), whose product is the total stride.
    ``size``: input height / width in pixels (the smaller one for non-square inputs). ``hint`` is
    appended to the error message (how to adapt the network).
    """
    if isinstance(model_or_strides, nn.Module):
        if not hasattr(model_or_strides, "total_stride"):
            raise ValueError(f"model_or_strides: {type(model_or_strides).__name__} has no total_stride")
        total, what = int(model_or_strides.total_stride), type(model_or_strides).__name__
    else:
        strides = [int(s) for s in model_or_strides]
        if any(s < 1 for s in strides):
            raise ValueError(f"model_or_strides: strides must be >= 1, got {strides}")
        total, what = math.prod(strides), "this network"
    if isinstance(size, bool) or int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer number of pixels, got {size!r}")
    if size < total:
        raise ValueError(f"input resolution {size} is too small for the strides of {what} (total stride {total}); "
                         f"use inputs of at least {total} pixels{hint}")
    return total
