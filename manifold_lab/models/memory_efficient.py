"""Memory-efficient inference of the inverted residual block (paper section 5.1).

The block is one operator ``F(x) = [A o N o B] x``: ``B`` the expansion
(1x1 conv ``k -> t k``, BN, ReLU6), ``N`` per-channel (depthwise 3x3, BN,
ReLU6) and ``A`` the linear projection (1x1 conv ``t k -> k'``). Because ``B``'s
BN and activation and all of ``N`` act on each expanded channel on its own,
the ``t k`` inner channels split into ``t'`` groups ``G_1 .. G_t'``::

    F(x) = bn3( sum_i A[:, G_i] N_{G_i}( B_{G_i}(x) ) )      then act3, then the shortcut

``bn3`` (affine in eval mode) and ``act3`` act on the *sum*, so they are
applied once after accumulating: splitting them per group would be wrong.
Only one group of the expanded tensor, ``(B, |G_i|, H, W)``, and its depthwise
output ``(B, |G_i|, H / s, W / s)`` are alive at a time, besides the input and
the ``(B, k', H / s, W / s)`` accumulator: the BN of the expansion and of the
depthwise conv is folded into the group's conv weights and ReLU / ReLU6 run in
place, so no second copy of a group is made. Multiply-adds do not depend on ``t'``;
many small matrix products run slower, hence the paper's ``t'`` of 2-5.

Groups are ``numpy.array_split``-sized: ``t'`` need not divide ``t k``
(``t' > t k`` leaves some groups empty, which are skipped).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def check_inference(module: nn.Module, t_prime) -> None:
    """``ValueError`` unless ``t_prime`` is an int >= 1 and ``module`` is in eval mode."""
    if isinstance(t_prime, bool) or not isinstance(t_prime, int) or t_prime < 1:
        raise ValueError(f"t_prime must be an integer >= 1 (number of channel groups), got {t_prime!r}")
    if module.training:
        raise ValueError("memory-efficient inference needs the model in eval mode (call model.eval())")


def _bn_affine(bn, index: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, beta - mu a)`` with ``a = gamma / sqrt(var + eps)``: eval-mode ``bn`` on channels ``index``."""
    a = bn.weight[index] / torch.sqrt(bn.running_var[index] + bn.eps)
    return a, bn.bias[index] - bn.running_mean[index] * a


def _folded(conv_weight: torch.Tensor, bn, index: slice) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``conv`` then ``bn`` for the output channels ``index``: ``conv(x; w a) + (beta - mu a)``
    (folding saves the separate BN output tensor)."""
    a, shift = _bn_affine(bn, index)
    return conv_weight * a.view(-1, *([1] * (conv_weight.ndim - 1))), shift


def _act_(act, x: torch.Tensor) -> torch.Tensor:
    """Apply a registry activation in place when it is ReLU / ReLU6 (no second tensor), else out of place."""
    if isinstance(act, nn.ReLU6):
        return x.clamp_(0.0, 6.0)
    if isinstance(act, nn.ReLU):
        return x.relu_()
    return act(x)


def memory_efficient_forward(block, x: torch.Tensor, t_prime: int) -> torch.Tensor:
    """Output of ``block`` (an ``InvertedResidual``) computed in ``t_prime`` channel groups.

    ``block`` must be in eval mode (BN with running statistics, so per-group BN is exact); blocks
    with an expansion shortcut need the whole expanded tensor and are rejected. ``x`` (B, k, H, W)
    -> (B, k', H / s, W / s), equal to ``block(x)`` up to floating-point rounding; ``t_prime = 1``
    is the standard block with BN folded and in-place activations.
    """
    check_inference(block, t_prime)
    if block.expansion_residual:
        raise ValueError("memory-efficient inference cannot split a block with shortcut='expansion': "
                         "the shortcut adds the whole expanded tensor of the previous block")
    expanded = hasattr(block.conv_pw, "weight")  # t = 1: the 'expanded' tensor is the input itself
    hidden, out, start = block.hidden, None, 0
    for size in (hidden // t_prime + (i < hidden % t_prime) for i in range(t_prime)):
        if size == 0:
            continue
        g = slice(start, start + size)
        start += size
        if expanded:
            w, b = _folded(block.conv_pw.weight[g], block.bn1, g)
            e = _act_(block.act1, F.conv2d(x, w, b))
        else:
            e = x[:, g]
        w, b = _folded(block.conv_dw.weight[g], block.bn2, g)
        d = F.conv2d(e, w, b, stride=block.conv_dw.stride, padding=block.conv_dw.padding, groups=size)
        del e  # the group's expanded slice is dead once the depthwise output exists
        d = _act_(block.act2, d)
        part = F.conv2d(d, block.conv_pwl.weight[:, g])
        del d
        out = part if out is None else out.add_(part)
        del part
    # bn3 is affine on the *sum*: applied once, after accumulating, in place
    a, shift = _bn_affine(block.bn3)
    out = _act_(block.act3, out.mul_(a.view(1, -1, 1, 1)).add_(shift.view(1, -1, 1, 1)))
    return out.add_(x) if block.use_res_connect else out
