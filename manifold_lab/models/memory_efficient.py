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
the ``(B, k', H / s, W / s)`` accumulator. Multiply-adds do not depend on ``t'``;
many small matrix products run slower, hence the paper's ``t'`` of 2-5.

Groups are ``numpy.array_split``-sized: ``t'`` need not divide ``t k``
(``t' > t k`` leaves some groups empty, which are skipped).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def check_t_prime(t_prime) -> int:
    """``t_prime`` as an int >= 1; ``ValueError`` otherwise."""
    if isinstance(t_prime, bool) or not isinstance(t_prime, int) or t_prime < 1:
        raise ValueError(f"t_prime must be an integer >= 1 (number of channel groups), got {t_prime!r}")
    return t_prime


def _eval_bn(bn, x: torch.Tensor, index: slice) -> torch.Tensor:
    """BatchNorm2d ``bn`` in eval mode restricted to the channels ``index`` of its input."""
    return F.batch_norm(x, bn.running_mean[index], bn.running_var[index], bn.weight[index], bn.bias[index],
                        training=False, eps=bn.eps)


def memory_efficient_forward(block, x: torch.Tensor, t_prime: int) -> torch.Tensor:
    """Output of ``block`` (an ``InvertedResidual`` in eval mode) computed in ``t_prime`` channel groups.

    Parameters
    ----------
    block : manifold_lab.models.InvertedResidual
        In eval mode (BN with running statistics, so per-group BN is exact); blocks with an
        expansion shortcut need the whole expanded tensor and are rejected.
    x : torch.Tensor, shape (B, k, H, W)
    t_prime : int
        Number of groups of the ``t k`` expanded channels (1 = the standard forward).

    Returns
    -------
    torch.Tensor, shape (B, k', H / s, W / s)
        Equal to ``block(x)`` up to floating-point summation order.
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
            e = F.conv2d(x, block.conv_pw.weight[g])
            e = block.act1(_eval_bn(block.bn1, e, g))
        else:
            e = x[:, g]
        d = F.conv2d(e, block.conv_dw.weight[g], stride=block.conv_dw.stride, padding=block.conv_dw.padding,
                     groups=size)
        del e  # the group's expanded slice is dead once the depthwise output exists
        d = block.act2(_eval_bn(block.bn2, d, g))
        part = F.conv2d(d, block.conv_pwl.weight[:, g])
        del d
        out = part if out is None else out.add_(part)
    out = block.act3(block.bn3(out))
    return x + out if block.use_res_connect else out
