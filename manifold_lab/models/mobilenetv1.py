"""MobileNetV1 (Howard et al. 2017), the baseline of Table 3 and Table 4.

A 3x3 stem conv (32 channels, stride 2) and 13 depthwise separable blocks,
each ``conv_dw 3x3 depthwise (stride s) -> bn1 -> act1 -> conv_pw 1x1 -> bn2 -> act2``,
then global average pooling, dropout and a linear classifier. The layout is
data, ``V1_LAYOUT`` = ``(output channels, stride)`` per block. Width multiplier:
every layer is ``make_divisible(c * width_mult, 8)`` (as timm; at width 1 the
channels are the paper's). At 1000 classes: 4,231,976 parameters (the Keras
``MobileNet`` trainable count; the paper rounds to 4.2M).
"""

from __future__ import annotations

import torch
from torch import nn

from manifold_lab.models.layers import ConvBNAct, check_resolution, init_weights, make_activation, make_divisible

#: The 13 depthwise separable blocks: (output channels, stride of the depthwise conv).
V1_LAYOUT = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
             (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


class DepthwiseSeparable(nn.Module):
    """``(B, k, H, W)`` -> ``(B, k', H / s, W / s)``: depthwise 3x3 then pointwise 1x1, BN + act after each."""

    def __init__(self, inp: int, oup: int, stride: int, act: str = "relu"):
        super().__init__()
        self.conv_dw = nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False)
        self.bn1 = nn.BatchNorm2d(inp)
        self.act1 = make_activation(act, what="act")
        self.conv_pw = nn.Conv2d(inp, oup, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(oup)
        self.act2 = make_activation(act, what="act")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act2(self.bn2(self.conv_pw(self.act1(self.bn1(self.conv_dw(x))))))


class MobileNetV1(nn.Module):
    """MobileNetV1; input ``(B, in_channels, H, W)`` -> logits ``(B, num_classes)``.

    ``width_mult``: the width multiplier alpha (> 0); ``act``: the activation after every BN (the
    paper uses ReLU); ``dropout``: before the classifier, in [0, 1).
    """

    def __init__(self, num_classes=1000, width_mult=1.0, *, act="relu", dropout=0.0, in_channels=3,
                 round_nearest=8):
        super().__init__()
        if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult!r}")
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        make_activation(act, what="act")
        channels = make_divisible(32 * width_mult, round_nearest)
        layers: list[nn.Module] = [ConvBNAct(in_channels, channels, 3, 2, act=act)]
        for c, s in V1_LAYOUT:
            out = make_divisible(c * width_mult, round_nearest)
            layers.append(DepthwiseSeparable(channels, out, s, act=act))
            channels = out
        self.features = nn.Sequential(*layers)
        self.last_channel = channels
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(channels, int(num_classes)))
        self.total_stride = 2 ** (1 + sum(s == 2 for _, s in V1_LAYOUT))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"input must be (batch, channels, height, width), got shape {tuple(x.shape)}")
        check_resolution(self, min(x.shape[-2:]))
        return self.classifier(self.pool(self.features(x)).flatten(1))
