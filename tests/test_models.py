"""MobileNetV2: exact counts, rounding, switches, shortcuts, conversion, bad input."""

import pytest
import torch

from manifold_lab.models import (
    InvertedResidual,
    MobileNetV2,
    bottleneck_modules,
    check_resolution,
    count_macs,
    count_parameters,
    make_divisible,
    mobilenet_v2,
    relu_modules,
)
from manifold_lab.models.convert import from_torchvision_state_dict, to_torchvision_state_dict


def blocks(model):
    return [m for m in model.features if isinstance(m, InvertedResidual)]


def test_reference_parameter_and_mac_counts():
    model = MobileNetV2()
    assert count_parameters(model) == 3_504_872  # torchvision's mobilenet_v2()
    macs = count_macs(model, (1, 3, 224, 224))
    assert abs(macs - 300.0e6) / 300.0e6 < 0.015  # paper: 300M; torchvision's flop counter: 300.77M


def test_channel_rounding_and_last_channel():
    assert make_divisible(32 * 1.4) == 48  # not 44 (the rounding bug users reported)
    assert make_divisible(32 * 0.35) == 16 and make_divisible(24 * 0.35) == 8
    assert make_divisible(10) == 16 - 8 + 8  # 10 -> 8 would drop 20%: bumped to 16
    assert MobileNetV2(width_mult=1.4).features[0].conv.out_channels == 48
    assert MobileNetV2(width_mult=0.5).last_channel == 1280
    assert MobileNetV2(width_mult=1.4).last_channel == 1792


def test_block_structure_and_stable_names():
    model = MobileNetV2(num_classes=10)
    names = dict(model.named_modules())
    for i in range(1, 18):
        for part in ("conv_pw", "bn1", "act1", "conv_dw", "bn2", "act2", "conv_pwl", "bn3", "act3"):
            assert f"features.{i}.{part}" in names
    assert isinstance(names["features.1.conv_pw"], torch.nn.Identity)  # t = 1: no expansion
    assert len(blocks(model)) == 17 and sum(b.use_res_connect for b in blocks(model)) == 10
    assert all(isinstance(m, torch.nn.Identity) for _, m in bottleneck_modules(model))  # linear bottleneck
    relu6 = MobileNetV2(num_classes=10, bottleneck_act="relu6")
    assert all(isinstance(m, torch.nn.ReLU6) for _, m in bottleneck_modules(relu6))
    assert len(relu_modules(relu6)) == len(relu_modules(model)) + 17
    assert set(relu6.state_dict()) == set(model.state_dict())  # same keys in every variant


def test_bottleneck_activation_really_applied():
    torch.manual_seed(0)
    model = MobileNetV2(num_classes=10, bottleneck_act="relu", shortcut="none", **{"stem_stride": 1}).eval()
    seen = []
    model.features[3].bn3.register_forward_hook(lambda m, i, o: seen.append(o))
    out_block = []
    model.features[3].register_forward_hook(lambda m, i, o: out_block.append(o))
    model(torch.randn(2, 3, 32, 32))
    assert (seen[0] < 0).any() and (out_block[0] >= 0).all()


def test_expansion_shortcut_adds_expanded_tensors():
    model = mobilenet_v2("cifar_fast", shortcut="expansion").eval()
    flags = [b.expansion_residual for b in blocks(model)]
    assert not any(b.use_res_connect for b in blocks(model))
    # stages (n = 1, 2, 3, 4, 3, 3, 1): n - 2 joins per stage with n >= 2 and a shape-keeping predecessor
    assert sum(flags) == 0 + 1 + 2 + 1 + 1
    block = blocks(model)[flags.index(True)]
    captured = {}
    block.conv_dw.register_forward_hook(lambda m, i, o: captured.setdefault("dw_in", i[0]))
    x = torch.randn(2, 3, 32, 32)
    model(x)
    assert captured["dw_in"].shape[1] == block.hidden == 6 * block.inp  # the add is on t*k channels
    # and the result differs from the same weights without the join
    plain = mobilenet_v2("cifar_fast", shortcut="none").eval()
    plain.load_state_dict(model.state_dict())
    # train mode: BN batch statistics keep activations O(1) at initialisation
    model.train(), plain.train()
    with torch.no_grad():
        a, b = model.forward_features(x), plain.forward_features(x)
    assert a.abs().mean() > 1e-2 and (a - b).abs().mean() > 1e-3 * a.abs().mean()


def test_cifar_presets_and_any_resolution():
    cifar = mobilenet_v2("cifar")
    assert abs(count_parameters(cifar) - 2.24e6) / 2.24e6 < 0.01
    fast = mobilenet_v2("cifar_fast")
    assert count_parameters(fast) == count_parameters(cifar)
    assert count_macs(fast, (1, 3, 32, 32)) * 3 < count_macs(cifar, (1, 3, 32, 32)) * 1.2
    assert MobileNetV2(num_classes=5)(torch.randn(1, 3, 64, 80)).shape == (1, 5)


def test_torchvision_key_roundtrip_without_torchvision():
    torch.manual_seed(0)
    model = MobileNetV2(num_classes=7).eval()
    sd = to_torchvision_state_dict(model)
    assert "features.1.conv.0.0.weight" in sd and "features.2.conv.3.running_var" in sd
    assert "features.18.0.weight" in sd and len(sd) == len(model.state_dict())
    copy = from_torchvision_state_dict(sd).eval()
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(copy(x), model(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="not a torchvision mobilenet_v2 state dict"):
        from_torchvision_state_dict({"fc.weight": torch.zeros(1)})


def test_matches_torchvision_logits():
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    ref = tv.models.mobilenet_v2(num_classes=1000).eval()
    ours = from_torchvision_state_dict(ref.state_dict()).eval()
    x = torch.randn(2, 3, 224, 224)
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(width_mult=0), "width_mult must be > 0"),
        (dict(width_mult=-1.0), "width_mult must be > 0"),
        (dict(bottleneck_act="gelu"), "bottleneck_act='gelu' is not one of 'identity', 'relu', 'relu6'"),
        (dict(shortcut="dense"), "shortcut='dense' is not one of 'bottleneck', 'expansion', 'none'"),
        (dict(stage_strides=(1, 2)), "stage_strides needs 7 entries"),
        (dict(stem_stride=3), "stem_stride must be 1 or 2"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MobileNetV2(**kwargs)


def test_resolution_too_small():
    with pytest.raises(ValueError, match=r"input resolution 16 is too small .*\(total stride 32\)"):
        MobileNetV2()(torch.randn(1, 3, 16, 16))


def test_check_resolution_helper():
    assert check_resolution([2, 1, 2, 2, 2, 1, 2, 1], 32) == 32
    assert check_resolution(mobilenet_v2("cifar"), 8) == 8  # stem 1, c=24 stage 1: 32 -> 4 pixels
    with pytest.raises(ValueError, match=r"input resolution 4 is too small .*\(total stride 8\).*presets"):
        mobilenet_v2("cifar").check_resolution(4)
    with pytest.raises(ValueError, match="size must be a positive integer"):
        check_resolution([2], 0)
    with pytest.raises(ValueError, match="strides must be >= 1"):
        check_resolution([2, 0], 8)


def test_expansion_shortcut_needs_equal_expansions():
    # two rows of equal c but different t: their expanded tensors (6 x 16 vs 4 x 16) cannot be added
    setting = [(1, 16, 1, 1), (6, 16, 2, 1), (4, 16, 2, 1)]
    model = MobileNetV2(num_classes=3, shortcut="expansion", setting=setting, stem_stride=1).eval()
    assert [b.expansion_residual for b in blocks(model)] == [False, False, True, False, True]
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 3)
