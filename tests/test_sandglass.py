"""The sandglass block (MobileNeXt, Zhou et al. 2020) as MobileNetV2's ``shortcut="sandglass"`` option.

Checked against its definition (a block written with torch's functional primitives and the same
weights gives the same output; the shortcut joins the wide tensors; the bottleneck is linear), the
closed-form parameter count against the built network, and the Figure 6b parameter matching.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch.nn import functional as F

from manifold_lab.models import count_parameters, mobilenet_v2
from manifold_lab.models.complexity import mobilenet_v2_parameters
from manifold_lab.models.mobilenetv2 import InvertedResidual, SandglassBlock, bottleneck_modules
from manifold_lab.models.stacked import stack_models
from manifold_lab.train.config import TrainConfig
from test_memory_efficient import one_thread  # noqa: F401 (autouse: small networks run faster on one thread)


def _randomize(module: torch.nn.Module, seed: int = 0) -> None:
    """Random weights, BN affine parameters and running statistics (so no layer is an identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if t.dtype.is_floating_point:
                t.copy_(torch.rand(t.shape, generator=g) + 0.5 if "var" in name else torch.randn(t.shape, generator=g))


def _bn(x, bn, training):
    return F.batch_norm(x, bn.running_mean.clone(), bn.running_var.clone(), bn.weight, bn.bias, training, 0.0, bn.eps)


def by_hand(block: SandglassBlock, x: torch.Tensor, training: bool, bottleneck=lambda z: z):
    """The definition: dw 3x3 + BN + ReLU6 on the wide input; 1x1 reduction + BN (``bottleneck``, linear by
    default); 1x1 expansion + BN + ReLU6; dw 3x3 (stride) + BN, linear; + x between equal wide tensors."""
    w = block.conv_dw.weight
    h = F.relu6(_bn(F.conv2d(x, w, None, 1, 1, groups=w.shape[0]), block.bn2, training))
    b = bottleneck(_bn(F.conv2d(h, block.conv_pwl.weight), block.bn3, training))
    h = F.relu6(_bn(F.conv2d(b, block.conv_pw.weight), block.bn1, training))
    w2 = block.conv_dw2.weight
    out = _bn(F.conv2d(h, w2, None, block.stride, 1, groups=w2.shape[0]), block.bn4, training)
    return (x + out if x.shape == out.shape else out), b


@pytest.mark.parametrize("inp, mid, oup, stride", [(24, 4, 24, 1), (24, 4, 32, 1), (24, 6, 24, 2)])
@pytest.mark.parametrize("training", [False, True])
def test_block_is_its_definition(inp, mid, oup, stride, training):
    block = SandglassBlock(inp, mid, oup, stride)
    _randomize(block)
    block.train(training)
    x = torch.randn(3, inp, 8, 8)
    expected, bottleneck = by_hand(block, x, training)
    seen = {}
    block.act3.register_forward_hook(lambda m, i, o: seen.update(b=o))
    out = block(x)
    assert out.shape == (3, oup, 8 // stride, 8 // stride)
    assert torch.allclose(out, expected, atol=1e-5)
    assert block.use_res_connect == (stride == 1 and inp == oup)
    # the bottleneck is linear: act3 passes negative values through (a ReLU6 there would clip them)
    assert torch.equal(seen["b"], bottleneck) and (bottleneck < 0).any() and seen["b"].shape[1] == mid
    relu6 = SandglassBlock(inp, mid, oup, stride, bottleneck_act="relu6")
    relu6.load_state_dict(block.state_dict())
    relu6.train(training)
    assert torch.allclose(relu6(x), by_hand(relu6, x, training, F.relu6)[0], atol=1e-5)
    assert not torch.allclose(relu6(x), out, atol=1e-3)


def test_shortcut_joins_the_wide_tensors():
    block = SandglassBlock(16, 4, 16, 1).eval()
    _randomize(block, 1)
    x = torch.randn(2, 16, 6, 6)
    with torch.no_grad():
        torch.nn.init.zeros_(block.bn4.weight), torch.nn.init.zeros_(block.bn4.bias)  # the branch gives 0
    assert torch.equal(block(x), x)  # y = x + F(x) on the 16-channel (wide) input, not on the 4-channel bottleneck


def test_network_walks_the_wide_tensors():
    v2 = mobilenet_v2("cifar_fast", width_mult=0.5)
    sg = mobilenet_v2("cifar_fast", width_mult=0.5, shortcut="sandglass")
    irs = [m for m in v2.features if isinstance(m, InvertedResidual)]
    sgs = [m for m in sg.features if isinstance(m, SandglassBlock)]
    assert len(sgs) == len(irs) == len(sg.features) - 1  # the stem, then blocks; no last 1x1 conv
    # block i maps MobileNetV2's expanded tensor i to expanded tensor i + 1 through bottleneck i, at its stride
    assert [(b.inp, b.mid, b.stride) for b in sgs] == [(b.hidden, b.oup, b.stride) for b in irs]
    assert [b.oup for b in sgs] == [b.hidden for b in irs[1:]] + [sg.last_channel]
    assert sg.num_shortcuts == v2.num_shortcuts == mobilenet_v2("cifar_fast", width_mult=0.5,
                                                                shortcut="expansion").num_shortcuts == 10
    assert [name for name, _ in bottleneck_modules(sg)] == [f"features.{i}.act3" for i in range(1, len(sg.features))]
    assert sg(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="sandglass"):
        with sg.eval().memory_efficient(2):
            pass


@pytest.mark.parametrize("preset", ["imagenet", "cifar", "cifar_fast"])
@pytest.mark.parametrize("shortcut", ["bottleneck", "expansion", "none", "sandglass"])
@pytest.mark.parametrize("width, bottleneck_mult", [(0.25, 1.0), (0.465, 1.0), (1.0, 0.5), (1.4, 1.0)])
def test_parameter_count_in_closed_form(preset, shortcut, width, bottleneck_mult):
    kw = dict(width_mult=width, shortcut=shortcut, bottleneck_mult=bottleneck_mult)
    assert mobilenet_v2_parameters(preset, **kw) == count_parameters(mobilenet_v2(preset, **kw))


def test_parameter_count_in_closed_form_other_inputs():
    assert mobilenet_v2_parameters("imagenet") == 3_504_872  # torchvision's
    kw = dict(num_classes=7, in_channels=1, expand_ratio=4, shortcut="sandglass")
    assert mobilenet_v2_parameters("cifar", **kw) == count_parameters(mobilenet_v2("cifar", **kw))
    with pytest.raises(ValueError, match="shortcut='dense' is not one of"):
        mobilenet_v2_parameters("cifar", shortcut="dense")


def _arm(shortcut: str) -> TrainConfig:
    return TrainConfig.model_validate({"model": {"preset": "cifar_fast", "width_mult": 0.5, "shortcut": shortcut,
                                                 "sandglass_width_mult": 0.465}})


def test_sandglass_width_matches_the_other_arms_parameters():
    counts = {s: mobilenet_v2_parameters("cifar_fast", width_mult=_arm(s).model.width_mult, shortcut=s)
              for s in ("bottleneck", "expansion", "none", "sandglass")}
    assert abs(counts["sandglass"] / counts["bottleneck"] - 1) < 0.02, counts
    assert mobilenet_v2_parameters("cifar_fast", width_mult=0.5, shortcut="sandglass") > 1.05 * counts["bottleneck"]


def test_sandglass_width_is_folded_into_width_mult():
    assert _arm("sandglass").model.width_mult == 0.465
    # the other arms ignore it and store nothing of it: their run ids stay those of the plain network
    plain = TrainConfig.model_validate({"model": {"preset": "cifar_fast", "width_mult": 0.5}})
    assert _arm("bottleneck").model_dump() == plain.model_dump()
    assert "sandglass_width_mult" not in _arm("sandglass").model_dump()["model"]
    with pytest.raises(ValueError, match="shortcut=sandglass does not have"):
        TrainConfig.model_validate({"model": {"shortcut": "sandglass", "bottleneck_act": "relu6",
                                              "bottleneck_act_blocks": "with_shortcut"}})


def test_seed_batched_sandglass_members():
    """``stack_models`` (seed-batched training) takes sandglass members: member k's features are its own."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the same sums in another order: equal up to float64 rounding
    try:
        members = [mobilenet_v2("cifar_fast", width_mult=0.25, shortcut="sandglass", bottleneck_act=a,
                                last_channel=64) for a in ("identity", "relu6")]
        for k, m in enumerate(members):
            _randomize(m.eval(), k)
        stacked = stack_models(members).eval()
        xs = [torch.randn(2, 3, 8, 8) for _ in members]
        with torch.no_grad():
            out = stacked.forward_features(torch.cat(xs, dim=1)).chunk(len(members), dim=1)
            for k, m in enumerate(members):
                alone = m.forward_features(xs[k])
                assert (out[k] - alone).abs().max() <= 1e-9 * alone.abs().max()
    finally:
        torch.set_default_dtype(before)


def test_probe_skips_the_sandglass_network():
    from manifold_lab.train.trainer import _probe

    loader = SimpleNamespace(images=torch.zeros(4, 3, 32, 32), labels=torch.zeros(4, dtype=torch.long))
    assert _probe(mobilenet_v2("cifar_fast", width_mult=0.25, shortcut="sandglass"), loader) is None


def test_figure6b_converged_arms_have_matched_parameters():
    from manifold_lab.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parents[1] / "experiments" / "figure6b_converged_cifar10.yaml")
    counts = {p.params.model.shortcut: mobilenet_v2_parameters(p.params.model.preset, width_mult=p.params.model.width_mult,
                                                               shortcut=p.params.model.shortcut) for p in spec.points}
    assert sorted(counts) == ["bottleneck", "expansion", "none", "sandglass"]
    assert max(counts.values()) / min(counts.values()) - 1 < 0.02, counts
