"""What the probe reads inside a MobileNetV2: per-block tensors at sampled positions.

For every ``InvertedResidual`` block ``features.<i>`` (input ``k`` channels,
expansion ``t k``, output ``k'``, stride ``s``) and a batch of images, forward
hooks on the fixed submodule names record, at ``P`` sampled *positions*
(image, row, column of the block's output grid):

- ``x`` (P, k): the block input at the centre of the position's receptive
  field, input pixel ``(s i, s j)`` for output pixel ``(i, j)`` (the 3x3
  depthwise conv has padding 1, so that is its centre tap);
- ``z`` (P, t k): the expansion pre-activation ``bn1(conv_pw(x))`` at the same
  input pixel (None when ``t = 1``: no expansion);
- ``pre`` (P, k'): the bottleneck pre-activation ``bn3(conv_pwl(...))``;
- ``act`` (P, k'): the bottleneck activation ``act3(pre)``;
- ``out`` (P, k'): the block output, ``x + act`` with a bottleneck shortcut, else ``act``;
- ``rep`` (N, D): the block output of every image, flattened (``D = k' H' W'``,
  a fixed random subset of at most ``max_features`` coordinates when larger):
  the points whose geometry the probe measures.

Positions are drawn without replacement, ``P`` in all spread over the batches
in proportion to their size, from one ``numpy.random.RandomState`` per block
(seeded from ``random_state`` and the block index), so they do not depend on
the batch size as long as the batches are the same.

Batch norm: the model runs in eval mode, so every BN uses its *running* statistics, the same
ones ``folded_expansion`` folds in. At step 0 those are the fresh ones (mean 0, variance 1), so
each BN is the identity up to its eps; Figure 7's step-0 statistics (``train.relu_stats``,
``bn="calibrated"``) use the running statistics of a calibration pass over clean training images instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from manifold_lab.models.layers import ACTIVATIONS, evaluating
from manifold_lab.models.mobilenetv2 import InvertedResidual


@dataclass
class BlockSample:
    """The tensors of one block at the sampled positions (see the module docstring); numpy float64."""

    name: str
    inp: int
    oup: int
    hidden: int
    stride: int
    residual: bool
    expand_act: str
    bottleneck_act: str
    x: list = field(default_factory=list)
    z: list = field(default_factory=list)
    pre: list = field(default_factory=list)
    act: list = field(default_factory=list)
    rep: list = field(default_factory=list)

    def finish(self) -> "BlockSample":
        """Concatenate the per-batch pieces into arrays and form ``out``."""
        for key in ("x", "z", "pre", "act", "rep"):
            parts = getattr(self, key)
            setattr(self, key, np.concatenate(parts).astype(np.float64) if parts else None)
        self.out = self.act + self.x if self.residual else self.act.copy()
        return self


def activation_name(module: nn.Module) -> str:
    """The config name of an activation module of the model zoo (``nn.LeakyReLU(0.1)`` is ``leaky_relu_0.1``)."""
    if isinstance(module, nn.LeakyReLU):
        return f"leaky_relu_{module.negative_slope:g}"
    for name, cls in ACTIVATIONS.items():
        if isinstance(module, cls):
            return name
    raise ValueError(f"unsupported activation module {type(module).__name__}; expected ReLU, ReLU6, Identity, "
                     "LeakyReLU, ELU or Softplus")


def blocks(model: nn.Module) -> list[tuple[str, InvertedResidual]]:
    """The inverted-residual blocks of ``model`` with their names, in forward order."""
    out = [(name, m) for name, m in model.named_modules() if isinstance(m, InvertedResidual)]
    if not out:
        raise ValueError(f"{type(model).__name__} has no InvertedResidual blocks; the probe needs a MobileNetV2")
    return out


@torch.no_grad()
def folded_expansion(block: InvertedResidual) -> tuple[np.ndarray, np.ndarray] | None:
    """``(W, b)`` with ``bn1(conv_pw(x)) = W x + b`` in eval mode: W (t k, k), b (t k,); None when ``t = 1``.

    ``W = diag(gamma / sqrt(var + eps)) W_pw``, ``b = beta - gamma mean / sqrt(var + eps)``.
    """
    if not isinstance(block.conv_pw, nn.Conv2d):
        return None
    bn = block.bn1
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).double()
    W = block.conv_pw.weight.double().flatten(1) * scale[:, None]
    b = bn.bias.double() - bn.running_mean.double() * scale
    return W.cpu().numpy(), b.cpu().numpy()


def _split_counts(total: int, sizes: list[int]) -> np.ndarray:
    """``total`` positions over batches in proportion to ``sizes`` (sums to ``total``)."""
    cum = np.round(total * np.cumsum(sizes) / sum(sizes)).astype(int)
    return np.diff(np.concatenate([[0], cum]))


@torch.no_grad()
def capture_blocks(model: nn.Module, images: torch.Tensor, *, positions: int = 2000, batch_size: int = 100,
                   max_features: int = 8192, random_state: int = 0) -> list[BlockSample]:
    """Run ``model`` (eval mode) on ``images`` (N, C, H, W) and return one ``BlockSample`` per block.

    At most ``positions`` positions per block (all of them when the block has
    fewer), at most ``max_features`` coordinates per image in ``rep``.
    """
    n = len(images)
    sizes = [len(images[i:i + batch_size]) for i in range(0, n, batch_size)]
    samples, handles = [], []
    state = {"batch": 0}  # index of the batch being run
    for b_index, (name, block) in enumerate(blocks(model)):
        s = BlockSample(name=name, inp=block.inp, oup=block.oup, hidden=block.hidden, stride=block.stride,
                        residual=block.use_res_connect, expand_act=activation_name(block.act1),
                        bottleneck_act=activation_name(block.act3))
        rng = np.random.RandomState([random_state, b_index])
        cache: dict = {}

        def on_input(_m, inputs, _out, s=s, rng=rng, cache=cache):
            x = inputs[0]
            bn, _, h, w = x.shape
            ho, wo = (h - 1) // s.stride + 1, (w - 1) // s.stride + 1
            if "counts" not in cache:  # first batch: the output grid is known now
                cache["counts"] = _split_counts(min(positions, n * ho * wo), sizes)
                cache["features"] = (np.sort(rng.choice(s.oup * ho * wo, max_features, replace=False))
                                     if s.oup * ho * wo > max_features else None)
            flat = rng.choice(bn * ho * wo, min(bn * ho * wo, cache["counts"][state["batch"]]), replace=False)
            img, rest = np.divmod(flat, ho * wo)
            i, j = np.divmod(rest, wo)
            cache["out_idx"] = (torch.as_tensor(img), torch.as_tensor(i), torch.as_tensor(j))
            cache["in_idx"] = (torch.as_tensor(img), torch.as_tensor(i * s.stride), torch.as_tensor(j * s.stride))
            cache["x_full"] = x if s.residual else None
            s.x.append(_gather(x, cache["in_idx"]))

        def on_bn1(_m, _inputs, out, s=s, cache=cache):
            s.z.append(_gather(out, cache["in_idx"]))

        def on_bn3(_m, _inputs, out, s=s, cache=cache):
            s.pre.append(_gather(out, cache["out_idx"]))

        def on_act3(_m, _inputs, out, s=s, cache=cache):
            s.act.append(_gather(out, cache["out_idx"]))
            rep = (out + cache["x_full"] if s.residual else out).flatten(1)
            if cache["features"] is not None:
                rep = rep[:, torch.as_tensor(cache["features"])]
            s.rep.append(rep.float().cpu().numpy())

        handles.append(block.conv_pw.register_forward_hook(on_input))
        if isinstance(block.bn1, nn.BatchNorm2d):
            handles.append(block.bn1.register_forward_hook(on_bn1))
        handles.append(block.bn3.register_forward_hook(on_bn3))
        handles.append(block.act3.register_forward_hook(on_act3))
        samples.append(s)
    with evaluating(model, handles):
        for state["batch"], start in enumerate(range(0, n, batch_size)):
            model(images[start:start + batch_size])
    return [s.finish() for s in samples]


def _gather(t: torch.Tensor, idx) -> np.ndarray:
    """Rows ``t[img, :, i, j]`` for index tensors ``(img, i, j)``: (P, C) float32 numpy."""
    img, i, j = (v.to(t.device) for v in idx)
    return t[img, :, i, j].float().cpu().numpy()
