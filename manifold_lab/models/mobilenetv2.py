"""MobileNetV2 (Sandler et al. 2018, Table 2) with the ablation switches of section 6.

The architecture is data: the ``[t, c, n, s]`` table (expansion, output
channels, repeats, stride of the first repeat) walked by one loop.

Block (Table 1), from ``k`` to ``k'`` channels, stride ``s``, expansion ``t``::

    conv_pw  1x1, k -> t k      bn1  act1 (expand_act, ReLU6)     [omitted when t = 1]
    conv_dw  3x3 depthwise, s   bn2  act2 (depthwise_act, ReLU6)
    conv_pwl 1x1, t k -> k'     bn3  act3 (bottleneck_act: identity = the linear bottleneck)

Disabled parts are ``nn.Identity`` so state-dict keys and hook names are the
same in every variant; every block is ``features.<i>`` and its bottleneck
activation ``features.<i>.act3``.

``shortcut`` (Figure 6b):

- ``"bottleneck"`` (default, Figure 3b): ``y = x + F(x)`` between the narrow
  k-channel tensors, for blocks with stride 1 and ``k = k'``.
- ``"none"``: no residual connections.
- ``"expansion"``: the identity shortcut joins the *expanded* tensors. Write
  ``e_i = act1(bn1(conv_pw(x_i)))`` for the expanded (``t_i k_i``-channel) tensor of
  block ``i``, formed at block ``i``'s *input* resolution. Block ``i`` uses
  ``e_i + e_{i-1}`` in place of ``e_i`` when both blocks expand (``t > 1``), block
  ``i - 1`` has stride 1 (same resolution) and ``t_{i-1} k_{i-1} = t_i k_i`` (same
  channels); block ``i``'s own stride and ``k'`` do not matter. With one ``t`` for
  every expanding row that is exactly when block ``i - 1`` has a bottleneck
  shortcut, so the two arms have the same count (``num_shortcuts``), 10 in Table 2
  at width 1, except where the ``t = 1`` block keeps its shape (e.g.
  ``width_mult <= 0.25``: it has no expansion to pass on, one shortcut fewer) or
  the last block does (no block after it). The first Figure 6b runs used a
  narrower rule (``expansion_shortcuts_before_issue11``).
- ``"sandglass"``: MobileNeXt's ``SandglassBlock`` (Zhou et al. 2020; its layers there) in place
  of every inverted residual, so the tensors between blocks are the wide ones: block ``i`` maps
  ``e_i`` (``t_i k_i`` channels; the stem's for ``t = 1``) through block ``i``'s bottleneck
  ``k'_i`` to ``e_{i+1}``'s width (``last_channel`` after the last block, which replaces the last
  1x1 conv) at block ``i``'s stride; its shortcut joins ``e_i`` and ``e_{i+1}`` when they have the
  same shape, the expansion arm's condition, so the count is the other arms' (10 at width 0.5).
  Parameters: ``complexity.mobilenet_v2_parameters``; ``architecture()`` gives every layer's
  shape without building the network.

Width multiplier: every layer is ``make_divisible(c * width_mult, 8)`` except
the last 1x1 conv, which stays 1280 for ``width_mult < 1`` and scales above.
It scales expanded layers and bottlenecks together (their ratio stays ``t``).

Bottleneck multiplier (``bottleneck_mult``, section 3 of issue 11): narrows only
the bottlenecks, the block outputs (``conv_pwl``) and hence the block inputs, to
``max(1, round(bottleneck_mult * make_divisible(c * width_mult, 8)))`` channels (no
floor at 8: at width 1 and multiplier 0.25 the rows get 4, 6, 8, 16, 24, 40, 80),
while every expanded layer keeps its width at ``bottleneck_mult = 1`` (``t`` times
the unnarrowed input width), so the effective expansion is ``t / bottleneck_mult``.
The stem (the ``t = 1`` block's expanded tensor) and the last 1x1 conv keep their
width; ``bottleneck_mult = 1`` is the standard network.

``bottleneck_act_blocks`` (section 5 of issue 11): which blocks get
``bottleneck_act`` after the projection; the others get the linear bottleneck
(``act3`` is then ``nn.Identity``, so names and state-dict keys do not change).
``"all"`` (default), ``"with_shortcut"`` (blocks that keep their shape, stride 1
and ``k = k'``: the blocks with a bottleneck shortcut), ``"without_shortcut"``
(the others: 7 of 17 in Table 2, where the whole representation passes through
the bottleneck), ``"none"`` (the linear-bottleneck network) or ``"block_N"``
(the block ``features.N`` alone, N from 1; issue 22's one-block-at-a-time study).

``stem_stride`` and ``stage_strides`` (one per row of the table) adapt the
network to small inputs (the CIFAR presets in ``PRESETS``); pooling is
adaptive, so any input resolution at least the total stride works.

``with model.eval().memory_efficient(t_prime):`` runs every block in ``t_prime``
channel groups (section 5.1, ``manifold_lab.models.memory_efficient``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

import torch
from torch import nn

from manifold_lab.activations import ACT_BLOCKS, check_act_blocks
from manifold_lab.models.layers import ConvBNAct, check_resolution, init_weights, make_activation, make_divisible
from manifold_lab.models.memory_efficient import check_inference, memory_efficient_forward

#: Table 2 of the paper: [t, c, n, s].
TABLE2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
SHORTCUTS = ("bottleneck", "expansion", "none", "sandglass")
#: Which blocks get ``bottleneck_act`` (module docstring).
BOTTLENECK_ACT_BLOCKS = ACT_BLOCKS  # and "block_N": manifold_lab.activations.check_act_blocks

#: Named configurations. ``cifar`` follows kuangliu/pytorch-cifar (stem stride 1 and the c=24
#: stage at stride 1: 32x32 -> 4x4 features); ``cifar_fast`` keeps the c=24 stage at stride 2
#: (about 3x less compute, 32x32 -> 2x2). Counts: ``manifold-lab models``.
PRESETS = {
    "imagenet": dict(num_classes=1000),
    "cifar": dict(num_classes=10, stem_stride=1, stage_strides=(1, 1, 2, 2, 1, 2, 1)),
    "cifar_fast": dict(num_classes=10, stem_stride=1, stage_strides=(1, 2, 2, 2, 1, 2, 1)),
}


class InvertedResidual(nn.Module):
    """One bottleneck residual block (Table 1); see the module docstring for names and shortcuts.

    Input ``(B, k, H, W)`` -> output ``(B, k', H / s, W / s)``.
    """

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int, *, bottleneck_act="identity",
                 shortcut="bottleneck", expand_act="relu6", depthwise_act="relu6", expansion_residual=False,
                 hidden: int | None = None):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        # hidden: the expanded width, t k unless given (bottleneck_mult keeps it while k narrows)
        hidden = int(round(inp * expand_ratio)) if hidden is None or expand_ratio == 1 else int(hidden)
        self.stride, self.inp, self.oup, self.hidden = stride, inp, oup, hidden
        self.use_res_connect = shortcut == "bottleneck" and stride == 1 and inp == oup
        self.expansion_residual = bool(expansion_residual)
        if expand_ratio != 1:
            self.conv_pw = nn.Conv2d(inp, hidden, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(hidden)
            self.act1 = make_activation(expand_act, what="expand_act")
        else:
            self.conv_pw, self.bn1, self.act1 = nn.Identity(), nn.Identity(), nn.Identity()
        self.conv_dw = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.act2 = make_activation(depthwise_act, what="depthwise_act")
        self.conv_pwl = nn.Conv2d(hidden, oup, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(oup)
        self.act3 = make_activation(bottleneck_act, what="bottleneck_act")
        #: Channel groups of the memory-efficient forward (section 5.1); None = the standard forward.
        self.t_prime: int | None = None

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """The expanded tensor ``e = act1(bn1(conv_pw(x)))``: (B, t k, H, W)."""
        return self.act1(self.bn1(self.conv_pw(x)))

    def project(self, e: torch.Tensor) -> torch.Tensor:
        """Depthwise then linear projection of an expanded tensor: (B, k', H / s, W / s)."""
        return self.act3(self.bn3(self.conv_pwl(self.act2(self.bn2(self.conv_dw(e))))))

    def forward_expanded(self, x: torch.Tensor, e_prev: torch.Tensor | None):
        """``(output, expanded)``; adds ``e_prev`` to the expansion when this block has an expansion shortcut."""
        e = self.expand(x)
        if self.expansion_residual and e_prev is not None:
            e = e + e_prev
        out = self.project(e)
        return (x + out if self.use_res_connect else out), e

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.t_prime is not None:
            return memory_efficient_forward(self, x, self.t_prime)
        return self.forward_expanded(x, None)[0]


@dataclasses.dataclass(frozen=True)
class Architecture:
    """The layer shapes of a MobileNetV2, computed without building it (``architecture``).

    ``setting``: the ``[t, c, n, s]`` rows with the strides and ``t`` in use; ``stem``: output channels of the
    first 3x3 conv; ``blocks``: one ``(InvertedResidual or SandglassBlock, constructor keyword arguments)`` per
    block, in order; ``head``: input channels of the last 1x1 conv (None with the sandglass block, whose last
    block outputs ``last_channel`` itself); ``last_channel``: the channels pooled for the classifier.
    """

    setting: tuple
    stem: int
    blocks: tuple
    head: int | None
    last_channel: int


def architecture(width_mult=1.0, *, bottleneck_act="identity", shortcut="bottleneck", expand_ratio=None,
                 stem_stride=2, stage_strides=None, last_channel=1280, round_nearest=8, setting=None,
                 bottleneck_mult=1.0, bottleneck_act_blocks="all") -> Architecture:
    """Check the arguments of ``MobileNetV2`` that shape the network and walk its table (module docstring).

    ``ValueError`` naming the argument and its valid values otherwise.
    """
    if not isinstance(width_mult, (int, float)) or width_mult <= 0:
        raise ValueError(f"width_mult must be > 0, got {width_mult!r}")
    if isinstance(bottleneck_mult, bool) or not isinstance(bottleneck_mult, (int, float)) \
            or not 0 < bottleneck_mult <= 1:
        raise ValueError(f"bottleneck_mult must be in (0, 1], got {bottleneck_mult!r}")
    one = check_act_blocks(bottleneck_act_blocks)
    if shortcut not in SHORTCUTS:
        raise ValueError(f"shortcut={shortcut!r} is not one of {', '.join(map(repr, SHORTCUTS))}")
    setting = [tuple(row) for row in (setting if setting is not None else TABLE2)]
    if not setting or any(len(row) != 4 for row in setting):
        raise ValueError(f"setting must be a non-empty list of [t, c, n, s] rows, got {setting}")
    if stage_strides is not None:
        stage_strides = tuple(stage_strides)
        if len(stage_strides) != len(setting):
            raise ValueError(f"stage_strides needs {len(setting)} entries (one per table row), got {len(stage_strides)}")
        setting = [(t, c, n, s) for (t, c, n, _), s in zip(setting, stage_strides)]
    if expand_ratio is not None:
        if int(expand_ratio) < 1:
            raise ValueError(f"expand_ratio must be >= 1, got {expand_ratio}")
        setting = [(int(expand_ratio) if t > 1 else t, c, n, s) for (t, c, n, s) in setting]
    for name, s in [("stem_stride", stem_stride)] + [("stage stride", row[3]) for row in setting]:
        if s not in (1, 2):
            raise ValueError(f"{name} must be 1 or 2, got {s}")
    if shortcut == "sandglass" and bottleneck_act_blocks not in ("all", "none"):
        raise ValueError(f"bottleneck_act_blocks={bottleneck_act_blocks!r} selects blocks by the bottleneck "
                         "shortcut, which the sandglass network does not have; use 'all' or 'none'")
    input_channel = make_divisible(32 * width_mult, round_nearest)
    full_input = input_channel  # the block input's width at bottleneck_mult = 1
    last_channel = make_divisible(last_channel * max(1.0, width_mult), round_nearest)
    blocks = []
    prev = None  # (stride, t, hidden) of the previous block
    for t, c, n, s in setting:
        full_output = make_divisible(c * width_mult, round_nearest)
        out_channel = full_output if bottleneck_mult == 1 else max(1, round(bottleneck_mult * full_output))
        for i in range(n):
            stride = s if i == 0 else 1
            same_shape = stride == 1 and input_channel == out_channel
            hidden = int(round(full_input * t)) if t != 1 else input_channel
            act_here = len(blocks) + 1 == one if one else {
                "all": True, "none": False, "with_shortcut": same_shape, "without_shortcut": not same_shape,
            }[bottleneck_act_blocks]
            blocks.append(dict(
                inp=input_channel, oup=out_channel, stride=stride, expand_ratio=t, hidden=hidden,
                shortcut=shortcut, bottleneck_act=bottleneck_act if act_here else "identity",
                # e_{i-1} + e_i: same resolution (block i-1 has stride 1) and channels, both expanded
                expansion_residual=(shortcut == "expansion" and prev is not None and prev[0] == 1
                                    and t != 1 and prev[1] != 1 and prev[2] == hidden),
            ))
            prev = (stride, t, hidden)
            input_channel, full_input = out_channel, full_output
    if one and one > len(blocks):
        raise ValueError(f"bottleneck_act_blocks={bottleneck_act_blocks!r}: this network has blocks 1 to {len(blocks)} "
                         f"(features.1 to features.{len(blocks)})")
    if shortcut != "sandglass":
        return Architecture(tuple(setting), blocks[0]["inp"], tuple((InvertedResidual, b) for b in blocks),
                            input_channel, last_channel)
    # sandglass: the tensors between blocks are the expanded ones; block i maps hidden_i to hidden_{i+1}
    wide = [b["hidden"] for b in blocks] + [last_channel]
    return Architecture(tuple(setting), wide[0], tuple(
        (SandglassBlock, dict(inp=wide[i], mid=b["oup"], oup=wide[i + 1], stride=b["stride"],
                              bottleneck_act=b["bottleneck_act"])) for i, b in enumerate(blocks)),
        None, last_channel)


class SandglassBlock(nn.Module):
    """MobileNeXt's sandglass block (Zhou et al. 2020): shortcut and depthwise convolutions on the wide tensors.

    Input ``(B, inp, H, W)`` -> output ``(B, oup, H / s, W / s)`` through a bottleneck of ``mid`` channels;
    names as in ``InvertedResidual`` by role (``act3`` is the bottleneck activation)::

        conv_dw  3x3 depthwise on inp        bn2  act2 (depthwise_act, ReLU6)
        conv_pwl 1x1, inp -> mid             bn3  act3 (bottleneck_act: identity = the linear bottleneck)
        conv_pw  1x1, mid -> oup             bn1  act1 (expand_act, ReLU6)
        conv_dw2 3x3 depthwise on oup, s     bn4  (linear)
        y = x + F(x) when s = 1 and inp = oup (the shortcut joins the wide tensors)
    """

    def __init__(self, inp: int, mid: int, oup: int, stride: int, *, bottleneck_act="identity", expand_act="relu6",
                 depthwise_act="relu6"):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.stride, self.inp, self.mid, self.oup = stride, inp, mid, oup
        self.use_res_connect, self.expansion_residual = stride == 1 and inp == oup, False
        self.conv_dw = nn.Conv2d(inp, inp, 3, 1, 1, groups=inp, bias=False)
        self.bn2 = nn.BatchNorm2d(inp)
        self.act2 = make_activation(depthwise_act, what="depthwise_act")
        self.conv_pwl = nn.Conv2d(inp, mid, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.act3 = make_activation(bottleneck_act, what="bottleneck_act")
        self.conv_pw = nn.Conv2d(mid, oup, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(oup)
        self.act1 = make_activation(expand_act, what="expand_act")
        self.conv_dw2 = nn.Conv2d(oup, oup, 3, stride, 1, groups=oup, bias=False)
        self.bn4 = nn.BatchNorm2d(oup)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.act3(self.bn3(self.conv_pwl(self.act2(self.bn2(self.conv_dw(x))))))  # the bottleneck
        out = self.bn4(self.conv_dw2(self.act1(self.bn1(self.conv_pw(b)))))
        return x + out if self.use_res_connect else out


#: The block classes of the network (``InvertedResidual``; ``SandglassBlock`` with ``shortcut="sandglass"``).
BLOCKS = (InvertedResidual, SandglassBlock)


class MobileNetV2(nn.Module):
    """MobileNetV2; input ``(B, in_channels, H, W)`` -> logits ``(B, num_classes)``.

    ``num_classes``, ``width_mult`` (> 0), ``dropout`` (before the classifier) and ``in_channels`` are
    as in torchvision. ``bottleneck_act``, ``expand_act``, ``depthwise_act``: the activations after the
    projection (``identity`` = linear bottleneck), the expansion and the depthwise conv. ``shortcut``,
    ``bottleneck_mult`` and ``bottleneck_act_blocks``: module docstring. ``expand_ratio`` replaces ``t``
    of every row with ``t > 1`` (section 4: 5-10 perform alike). ``stem_stride``: of the first 3x3 conv
    (2 in Table 2); ``stage_strides``: of the first repeat of each table row (default the table's ``s``);
    ``setting``: the ``[t, c, n, s]`` table (default ``TABLE2``).
    """

    def __init__(self, num_classes=1000, width_mult=1.0, *, bottleneck_act="identity", shortcut="bottleneck",
                 expand_ratio=None, expand_act="relu6", depthwise_act="relu6", dropout=0.2, stem_stride=2,
                 stage_strides=None, last_channel=1280, round_nearest=8, in_channels=3, setting=None,
                 bottleneck_mult=1.0, bottleneck_act_blocks="all"):
        super().__init__()
        for name, act in (("bottleneck_act", bottleneck_act), ("expand_act", expand_act),
                          ("depthwise_act", depthwise_act)):
            make_activation(act, what=name)
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        arch = architecture(width_mult, bottleneck_act=bottleneck_act, shortcut=shortcut, expand_ratio=expand_ratio,
                            stem_stride=stem_stride, stage_strides=stage_strides, last_channel=last_channel,
                            round_nearest=round_nearest, setting=setting, bottleneck_mult=bottleneck_mult,
                            bottleneck_act_blocks=bottleneck_act_blocks)
        self.setting, self.stem_stride, self.shortcut = arch.setting, stem_stride, shortcut
        self.bottleneck_mult, self.bottleneck_act_blocks = float(bottleneck_mult), bottleneck_act_blocks
        self.last_channel = arch.last_channel
        layers: list[nn.Module] = [ConvBNAct(in_channels, arch.stem, 3, stem_stride, act=expand_act)]
        layers += [block(**kw, expand_act=expand_act, depthwise_act=depthwise_act) for block, kw in arch.blocks]
        if arch.head is not None:
            layers.append(ConvBNAct(arch.head, self.last_channel, 1, act=expand_act))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)  # a module (no parameters) so hooks see the pooled vector
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, int(num_classes)))
        init_weights(self)

    @property
    def num_shortcuts(self) -> int:
        """How many residual additions the network makes (bottleneck, expansion or sandglass, per ``shortcut``)."""
        return sum(b.use_res_connect or b.expansion_residual for b in self.features if isinstance(b, BLOCKS))

    @property
    def total_stride(self) -> int:
        return self.stem_stride * math.prod(row[3] for row in self.setting)

    def check_resolution(self, size: int) -> None:
        """``ValueError`` unless an input of ``size x size`` keeps at least one pixel at the end."""
        check_resolution(self, size, hint=f" or lower stem_stride / stage_strides (presets: {', '.join(PRESETS)})")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut != "expansion":
            return self.features(x)
        e_prev = None
        for layer in self.features:
            if isinstance(layer, InvertedResidual):
                x, e_prev = layer.forward_expanded(x, e_prev)
            else:
                x, e_prev = layer(x), None
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"input must be (batch, channels, height, width), got shape {tuple(x.shape)}")
        self.check_resolution(min(x.shape[-2:]))
        return self.classifier(self.pool(self.forward_features(x)).flatten(1))

    @contextlib.contextmanager
    def memory_efficient(self, t_prime: int):
        """Context in which every block runs the memory-efficient forward with ``t_prime`` groups.

        Paper section 5.1 (``manifold_lab.models.memory_efficient``); eval mode only. The
        previous setting is restored on exit. ``with model.eval().memory_efficient(3): model(x)``
        """
        check_inference(self, t_prime)
        if self.shortcut in ("expansion", "sandglass"):
            raise ValueError(f"memory-efficient inference is not available with shortcut={self.shortcut!r} "
                             "(the shortcut adds whole expanded tensors)")
        blocks = [m for m in self.features if isinstance(m, InvertedResidual)]
        before = [b.t_prime for b in blocks]
        for b in blocks:
            b.t_prime = t_prime
        try:
            yield self
        finally:
            for b, t in zip(blocks, before):
                b.t_prime = t


def mobilenet_v2(preset: str = "imagenet", **overrides) -> MobileNetV2:
    """A ``MobileNetV2`` from a named preset (``PRESETS``) with keyword overrides."""
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is not one of {', '.join(map(repr, PRESETS))}")
    return MobileNetV2(**{**PRESETS[preset], **overrides})


def relu_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every ReLU / ReLU6 module of ``model`` with its name, in forward order (Figure 7)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]


def bottleneck_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The bottleneck activation (``act3``) of every block, with its name."""
    return [(f"{name}.act3", m.act3) for name, m in model.named_modules() if isinstance(m, BLOCKS)]


def expansion_shortcuts_before_issue11(model: MobileNetV2) -> int:
    """How many expansion shortcuts the rule of the first Figure 6b runs gave ``model``'s architecture.

    That rule joined ``e_{i-1}`` to ``e_i`` only when block ``i`` *and* block ``i - 1`` kept their
    shape (stride 1, ``k = k'``), both expanded and had equal expanded widths: ``n - 2`` per stage
    of Table 2 (5 at width 0.5), where the current rule gives the bottleneck arm's count. For
    labelling run records made before the change (they carry no ``shortcuts`` metric).
    """
    blocks = [m for m in model.features if isinstance(m, InvertedResidual)]
    keeps = [b.stride == 1 and b.inp == b.oup for b in blocks]
    return sum(keeps[i] and keeps[i - 1] and blocks[i].hidden == blocks[i - 1].hidden
               and blocks[i].hidden != blocks[i].inp and blocks[i - 1].hidden != blocks[i - 1].inp
               for i in range(1, len(blocks)))
