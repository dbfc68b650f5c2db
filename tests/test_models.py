"""MobileNetV2: exact counts, rounding, switches, shortcuts, conversion, bad input."""

import numpy as np
import pytest
import torch

from manifold_lab.models import (
    InvertedResidual,
    TABLE2,
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
    # every block after a shape-keeping one: as many joins as the bottleneck arm has shortcuts
    # (the rule before issue 11 also asked block i to keep its shape: n - 2 per stage, 5 joins)
    assert sum(flags) == model.num_shortcuts == mobilenet_v2("cifar_fast").num_shortcuts == 10
    block = blocks(model)[flags.index(True)]
    captured = {}
    # (a forward hook that returns a value replaces the output: update() returns None)
    block.conv_dw.register_forward_hook(lambda m, i, o: captured.update(dw_in=i[0]))
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
        (dict(bottleneck_act="gelu"), "bottleneck_act='gelu' is not one of identity, relu, relu6, elu, softplus"),
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


def shortcut_counts_closed_form(preset, width, bottleneck_mult=1.0):
    """(bottleneck, expansion) shortcut counts from Table 2 alone, without building the model.

    Bottleneck arm: every repeat after the first of a row keeps its shape (n - 1 per row), and a
    row's first block does when its stride is 1 and its channels round to those of the row before
    (the stem for row 1). Expansion arm (one t for every expanding row): block i is joined to block
    i - 1 exactly when block i - 1 keeps its shape, both expand (t > 1) and block i exists; so it
    has the bottleneck count less the t = 1 block's and the last block's own shortcut if any.
    """
    from manifold_lab.models import PRESETS

    strides = PRESETS[preset].get("stage_strides") or [row[3] for row in TABLE2]

    def channels(c):
        full = make_divisible(c * width)
        return full if bottleneck_mult == 1 else max(1, round(bottleneck_mult * full))

    prev, keeps = make_divisible(32 * width), []  # keeps: (t, block keeps its shape) in forward order
    for (t, c, n, _), s in zip(TABLE2, strides):
        out = channels(c)
        keeps += [(t, s == 1 and prev == out)] + [(t, True)] * (n - 1)
        prev = out
    bottleneck = sum(k for _, k in keeps)
    expansion = bottleneck - (keeps[0][0] == 1 and keeps[0][1]) - keeps[-1][1]
    return bottleneck, expansion


@pytest.mark.parametrize("preset", ["imagenet", "cifar", "cifar_fast"])
@pytest.mark.parametrize("width", [0.25, 0.35, 0.5, 0.75, 1.0, 1.4])
def test_shortcut_counts_in_closed_form(preset, width):
    bottleneck, expansion = shortcut_counts_closed_form(preset, width)
    arms = {s: mobilenet_v2(preset, width_mult=width, shortcut=s) for s in ("bottleneck", "expansion", "none")}
    assert arms["bottleneck"].num_shortcuts == bottleneck
    assert arms["expansion"].num_shortcuts == expansion
    assert arms["none"].num_shortcuts == 0
    if width >= 0.5:  # the studies' widths: the same count in both arms, 10 as in Table 2
        assert bottleneck == expansion == 10
    # below, the t = 1 block keeps its shape (stem and row 1 both round to 8 channels at 0.25) and has
    # no expansion to pass on: the expansion arm has one shortcut fewer (docstring of the model)
    elif width == 0.25:
        assert expansion == bottleneck - 1
    # the expansion shortcuts sit on the blocks right after those with a bottleneck shortcut
    res = [b.use_res_connect for b in blocks(arms["bottleneck"])]
    exp = [b.expansion_residual for b in blocks(arms["expansion"])]
    assert exp == [False] + [r and i > 0 for i, r in enumerate(res[:-1])]


def test_expansion_shortcut_crosses_stages_and_runs():
    # Table 2 at width 1: features.4 (first block of the c=32 row, stride 2) takes e_3, formed by the
    # stride-1 block 3 (24 -> 24, 144 channels) at the same resolution as e_4 (24 -> 32, 144 channels)
    model = mobilenet_v2("cifar_fast", shortcut="expansion").eval()
    bs = blocks(model)
    assert [i + 1 for i, b in enumerate(bs) if b.expansion_residual] == [4, 6, 7, 9, 10, 11, 13, 14, 16, 17]
    assert bs[3].stride == 2 and bs[2].hidden == bs[3].hidden == 144
    seen = {}
    bs[3].conv_dw.register_forward_hook(lambda m, i, o: seen.update({"in": i[0]}) if "in" not in seen else None)
    with torch.no_grad():
        x = torch.randn(2, 3, 32, 32)
        model(x)
        e = None
        h = model.features[0](x)
        for b in bs[:4]:
            h_next, e_new = b.forward_expanded(h, e)
            if b is bs[3]:
                assert torch.allclose(e_new, b.expand(h) + e)  # e_4 + e_3 entered block 4's depthwise
            h, e = h_next, e_new
    assert torch.allclose(seen["in"], e)


@pytest.mark.parametrize("mult, widths", [(0.5, [8, 12, 16, 32, 48, 80, 160]), (0.25, [4, 6, 8, 16, 24, 40, 80])])
def test_bottleneck_mult_narrows_only_the_bottlenecks(mult, widths):
    wide, narrow = mobilenet_v2("cifar_fast"), mobilenet_v2("cifar_fast", bottleneck_mult=mult)
    # block outputs: round(mult * c) with no floor at 8; expanded layers exactly as wide as at mult 1
    outs = []
    for b in blocks(narrow):
        if not outs or outs[-1] != b.oup:
            outs.append(b.oup)
    assert outs == widths
    assert [b.hidden for b in blocks(narrow)] == [b.hidden for b in blocks(wide)]
    assert [b.inp for b in blocks(narrow)][1:] == [b.oup for b in blocks(narrow)][:-1]
    assert blocks(narrow)[0].inp == 32 and narrow.last_channel == wide.last_channel == 1280
    assert count_parameters(narrow) < count_parameters(wide)
    assert narrow.num_shortcuts == mobilenet_v2("cifar_fast", bottleneck_mult=mult, shortcut="expansion").num_shortcuts \
        == shortcut_counts_closed_form("cifar_fast", 1.0, mult)[0] == 10
    assert narrow(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert set(narrow.state_dict()) == set(wide.state_dict())


@pytest.mark.parametrize("where, expected", [
    ("all", [True] * 17),
    ("none", [False] * 17),
    ("with_shortcut", None),
    ("without_shortcut", None),
])
def test_bottleneck_act_blocks(where, expected):
    model = MobileNetV2(num_classes=10, bottleneck_act="relu6", bottleneck_act_blocks=where)
    res = [b.use_res_connect for b in blocks(model)]
    assert sum(not r for r in res) == 7  # seven of seventeen blocks change shape
    relu6 = [isinstance(b.act3, torch.nn.ReLU6) for b in blocks(model)]
    assert relu6 == (expected if expected is not None else
                     res if where == "with_shortcut" else [not r for r in res])
    assert set(model.state_dict()) == set(MobileNetV2(num_classes=10).state_dict())
    assert [n for n, _ in bottleneck_modules(model)] == [f"features.{i}.act3" for i in range(1, 18)]


def test_the_rule_before_issue_11_is_counted_for_old_records():
    from manifold_lab.models.mobilenetv2 import expansion_shortcuts_before_issue11

    # n - 2 per stage of Table 2 with n >= 2 (0 + 1 + 2 + 1 + 1), at the studies' width
    assert expansion_shortcuts_before_issue11(mobilenet_v2("cifar_fast", width_mult=0.5)) == 5
    assert mobilenet_v2("cifar_fast", width_mult=0.5, shortcut="expansion").num_shortcuts == 10


@pytest.mark.parametrize("act, where", [("relu6", "none"), ("identity", "with_shortcut"), ("identity", "none")])
def test_every_spelling_of_the_linear_network_is_one_config_one_network(act, where):
    """relu6 in no block (or identity anywhere) is the linear-bottleneck network: it is stored as
    identity / all, so it has the run id of Figure 6a's linear arm, and it is the same network at init."""
    from manifold_lab.spec.sweep import run_id
    from manifold_lab.train.config import TrainConfig
    from manifold_lab.train.trainer import initial_model

    spelled = TrainConfig.model_validate({"model": {"bottleneck_act": act, "bottleneck_act_blocks": where}})
    linear = TrainConfig.model_validate({"model": {"bottleneck_act": "identity"}})
    assert (spelled.model.bottleneck_act, spelled.model.bottleneck_act_blocks) == ("identity", "all")
    assert run_id("mobilenetv2", spelled.model_dump(mode="json"), 3) == \
        run_id("mobilenetv2", linear.model_dump(mode="json"), 3)
    a, b = initial_model(spelled, 3, 10, 3), initial_model(linear, 3, 10, 3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(a.eval()(x), b.eval()(x))
    # a non-linear bottleneck in some blocks is left as written
    some = TrainConfig.model_validate({"model": {"bottleneck_act": "relu6", "bottleneck_act_blocks": "with_shortcut"}})
    assert (some.model.bottleneck_act, some.model.bottleneck_act_blocks) == ("relu6", "with_shortcut")


INJECTIVE_ARMS = ("identity", "leaky_relu_0.1", "leaky_relu_0.3", "elu", "softplus")


@pytest.mark.parametrize("name", INJECTIVE_ARMS)
def test_injective_bottleneck_activations_are_strictly_increasing_on_a_grid(name):
    """Strictly increasing on a grid from -20 to 20 (step 1e-3, float64): no two inputs share an output."""
    from manifold_lab.models.layers import make_activation

    grid = torch.arange(-20, 20, 1e-3, dtype=torch.float64)
    assert (torch.diff(make_activation(name)(grid)) > 0).all()


@pytest.mark.parametrize("name", ["relu", "relu6"])
def test_relu_and_relu6_are_not_injective_on_the_same_grid(name):
    from manifold_lab.models.layers import make_activation

    grid = torch.arange(-20, 20, 1e-3, dtype=torch.float64)
    assert not (torch.diff(make_activation(name)(grid)) > 0).all()


def test_silu_and_gelu_are_not_injective_hence_not_offered():
    """Both dip below zero and come back: two negative inputs share an output, so neither is a choice."""
    from manifold_lab.models.layers import make_activation

    from scipy.optimize import brentq

    silu = lambda v: v / (1 + np.exp(-v))  # noqa: E731
    partner = brentq(lambda v: silu(v) - silu(-3.0), -1.27, 0.0)  # the other input with SiLU's output at -3
    assert partner > -1.27 and silu(partner) == pytest.approx(silu(-3.0), abs=1e-12)
    grid = torch.arange(-6, 0, 1e-3)
    for fn in (torch.nn.functional.silu, torch.nn.functional.gelu):
        assert not (torch.diff(fn(grid)) > 0).all()
    for name in ("silu", "gelu", "leaky_relu_0", "leaky_relu_1.5", "leaky_relu_x"):
        with pytest.raises(ValueError, match="identity, relu, relu6|0 < slope < 1"):
            make_activation(name)


def test_parameter_count_is_the_same_for_every_bottleneck_activation():
    counts = {name: count_parameters(mobilenet_v2("cifar_fast", width_mult=0.5, bottleneck_act=name))
              for name in ("relu6", *INJECTIVE_ARMS)}
    assert len(set(counts.values())) == 1, counts


def test_leaky_slope_has_one_spelling():
    from manifold_lab.train.config import TrainConfig

    cfg = TrainConfig.model_validate({"model": {"bottleneck_act": "leaky_relu_0.30"}})
    assert cfg.model.bottleneck_act == "leaky_relu_0.3"
    assert isinstance(mobilenet_v2("cifar_fast", bottleneck_act="leaky_relu_0.3").features[2].act3, torch.nn.LeakyReLU)
