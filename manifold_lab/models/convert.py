"""Load torchvision ``mobilenet_v2`` weights into ``manifold_lab.models.MobileNetV2``.

torchvision's keys and ours (block ``i``, expansion ``t``):

=================================  ====================================
torchvision                        manifold_lab
=================================  ====================================
``features.0.0`` / ``features.0.1``  ``features.0.conv`` / ``features.0.bn``
``features.i.conv.0.0`` / ``.0.1``    ``features.i.conv_pw`` / ``bn1``  (t > 1)
``features.i.conv.1.0`` / ``.1.1``    ``features.i.conv_dw`` / ``bn2``  (t > 1)
``features.i.conv.2`` / ``.3``        ``features.i.conv_pwl`` / ``bn3`` (t > 1)
``features.1.conv.0.0`` / ``.0.1``    ``features.1.conv_dw`` / ``bn2``  (t = 1)
``features.1.conv.1`` / ``.2``        ``features.1.conv_pwl`` / ``bn3`` (t = 1)
``features.18.0`` / ``.1``           ``features.18.conv`` / ``bn``
``classifier.1``                   ``classifier.1``
=================================  ====================================
"""

from __future__ import annotations

import re

from manifold_lab.models.mobilenetv2 import InvertedResidual, MobileNetV2

_EXPANDED = {"conv.0.0": "conv_pw", "conv.0.1": "bn1", "conv.1.0": "conv_dw", "conv.1.1": "bn2",
             "conv.2": "conv_pwl", "conv.3": "bn3"}
_UNEXPANDED = {"conv.0.0": "conv_dw", "conv.0.1": "bn2", "conv.1": "conv_pwl", "conv.2": "bn3"}
_CONV = {"0": "conv", "1": "bn"}


def _key_map(model: MobileNetV2) -> dict[str, str]:
    """torchvision key -> our key for every entry of ``model.state_dict()``."""
    ours = set(model.state_dict())
    mapping = {key: key for key in ours if key.startswith("classifier.")}
    for i, layer in enumerate(model.features):
        table = ((_EXPANDED if hasattr(layer.conv_pw, "weight") else _UNEXPANDED)
                 if isinstance(layer, InvertedResidual) else _CONV)
        for tv, name in table.items():
            prefix = f"features.{i}.{name}."
            mapping.update({f"features.{i}.{tv}.{key[len(prefix):]}": key for key in ours if key.startswith(prefix)})
    return mapping


def from_torchvision_state_dict(state_dict: dict, model: MobileNetV2 | None = None) -> MobileNetV2:
    """Copy a torchvision ``mobilenet_v2`` state dict into ``model`` (default: a new ``MobileNetV2``
    with the classifier size of the state dict). Raises ``ValueError`` naming missing or unknown keys.
    """
    if "classifier.1.weight" not in state_dict or not any(re.match(r"features\.\d+\.conv\.", k) for k in state_dict):
        raise ValueError("not a torchvision mobilenet_v2 state dict (expected keys like features.1.conv.0.0.weight "
                         "and classifier.1.weight)")
    if model is None:
        model = MobileNetV2(num_classes=state_dict["classifier.1.weight"].shape[0])
    mapping = _key_map(model)
    unknown = sorted(set(state_dict) - set(mapping))
    missing = sorted(set(mapping) - set(state_dict))
    if unknown or missing:
        raise ValueError(f"state dict does not fit this MobileNetV2: unknown keys {unknown[:3]}, missing keys {missing[:3]}")
    model.load_state_dict({mapping[k]: v for k, v in state_dict.items()}, strict=True)
    return model


def to_torchvision_state_dict(model: MobileNetV2) -> dict:
    """The inverse mapping: our state dict with torchvision's keys."""
    inverse = {v: k for k, v in _key_map(model).items()}
    return {inverse[k]: v for k, v in model.state_dict().items()}
