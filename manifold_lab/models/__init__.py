"""The model zoo: MobileNetV2 with ablation switches, MobileNetV1 (Table 3 baseline), and their counters."""

from manifold_lab.models.complexity import count_macs, count_parameters
from manifold_lab.models.layers import ACTIVATIONS, check_resolution, make_divisible
from manifold_lab.models.mobilenetv1 import MobileNetV1
from manifold_lab.models.mobilenetv2 import (
    BOTTLENECK_ACT_BLOCKS,
    PRESETS,
    SHORTCUTS,
    TABLE2,
    InvertedResidual,
    MobileNetV2,
    bottleneck_modules,
    mobilenet_v2,
    relu_modules,
)

__all__ = [
    "ACTIVATIONS", "BOTTLENECK_ACT_BLOCKS", "PRESETS", "SHORTCUTS", "TABLE2", "InvertedResidual", "MobileNetV1", "MobileNetV2", "bottleneck_modules",
    "check_resolution", "count_macs", "count_parameters", "make_divisible", "mobilenet_v2", "relu_modules",
]
