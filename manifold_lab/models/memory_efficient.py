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


def check_t_prime(t_prime) -> int:
    """``t_prime`` as an int >= 1; ``ValueError`` otherwise."""
    if isinstance(t_prime, bool) or not isinstance(t_prime, int) or t_prime < 1:
        raise ValueError(f"t_prime must be an integer >= 1 (number of channel groups), got {t_prime!r}")
    return t_prime


def _folded(conv_weight: torch.Tensor, bn, index: slice) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``conv`` followed by eval-mode ``bn``, for the output channels ``index``.

    ``bn(conv(x)) = conv(x; w * a) + (beta - mu * a)`` with ``a = gamma / sqrt(var + eps)``: folding
    saves the separate BN output tensor.
    """
    a = bn.weight[index] / torch.sqrt(bn.running_var[index] + bn.eps)
    return conv_weight * a.view(-1, *([1] * (conv_weight.ndim - 1))), bn.bias[index] - bn.running_mean[index] * a


def _act_(act, x: torch.Tensor) -> torch.Tensor:
    """Apply a registry activation in place when it is ReLU / ReLU6 (no second tensor), else out of place."""
    if isinstance(act, nn.ReLU6):
        return x.clamp_(0.0, 6.0)
    if isinstance(act, nn.ReLU):
        return x.relu_()
    return act(x)


def memory_efficient_forward(block, x: torch.Tensor, t_prime: int) -> torch.Tensor:
    """Output of ``block`` (an ``InvertedResidual`` in eval mode) computed in ``t_prime`` channel groups.

    Per group ``G``: expansion conv with ``bn1`` folded into its weights, ``act1`` in place, depthwise
    conv with ``bn2`` folded, ``act2`` in place, projection ``conv_pwl[:, G]`` added to the accumulator.
    After the last group: ``bn3`` and ``act3`` (in place) and the shortcut.

    Parameters
    ----------
    block : manifold_lab.models.InvertedResidual
        In eval mode (BN with running statistics, so per-group BN is exact); blocks with an
        expansion shortcut need the whole expanded tensor and are rejected.
    x : torch.Tensor, shape (B, k, H, W)
    t_prime : int
        Number of groups of the ``t k`` expanded channels (1 = one group: the standard block,
        with BN folded and in-place activations).

    Returns
    -------
    torch.Tensor, shape (B, k', H / s, W / s)
        Equal to ``block(x)`` up to floating-point rounding.
    """
    check_t_prime(t_prime)
    if block.training:
        raise ValueError("memory-efficient inference needs the model in eval mode (call model.eval())")
    if block.expansion_residual:
        raise ValueError("memory-efficient inference cannot split a block with shortcut='expansion': "
                         "the shortcut adds the whole expanded tensor of the previous block")
    expanded = hasattr(block.conv_pw, "weight")  # t = 1: the 'expanded' tensor is the input itself
    hidden = block.hidden
    sizes = [hidden // t_prime + (1 if i < hidden % t_prime else 0) for i in range(t_prime)]
    out = None
    start = 0
    for size in sizes:
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
    bn = block.bn3
    a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    out = out.mul_(a.view(1, -1, 1, 1)).add_((bn.bias - bn.running_mean * a).view(1, -1, 1, 1))
    out = _act_(block.act3, out)
    return out.add_(x) if block.use_res_connect else out
