"""The information-loss probe (manifold_lab.probe) on closed-form blocks, against the random-map code, end to end."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from manifold_lab.metrics import collapsed_fraction, collapsed_mask
from manifold_lab.models import mobilenet_v2
from manifold_lab.models.mobilenetv2 import InvertedResidual
from manifold_lab.probe import probe_network, probe_summary
from manifold_lab.probe.capture import capture_blocks, folded_expansion
from manifold_lab.probe.images import balanced_indices


def _identity_bn(bn: nn.BatchNorm2d, bias: float = 0.0) -> None:
    """BN in eval mode that maps z to z + bias exactly (running stats 0 / 1, eps 0)."""
    bn.eps = 0.0
    nn.init.ones_(bn.weight)
    nn.init.constant_(bn.bias, bias)
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0)


def identity_block(k: int = 4, *, bottleneck_act="identity", bn3_shift=0.0, shortcut="none", expand_act="relu",
                   bn1_shift=0.0) -> nn.Module:
    """A non-residual block ``x -> [I; -I] -> ReLU -> [I, -I]``: the output is ``x`` exactly (ReLU(x) - ReLU(-x)).

    ``bn3_shift`` adds a constant to the bottleneck pre-activation (BN's beta): ``pre = x + bn3_shift``;
    ``bn1_shift`` the same to the expansion pre-activation ``z = [x; -x] + bn1_shift`` (activation ``expand_act``);
    ``shortcut="bottleneck"`` makes the output ``x + act3(pre)``.
    """
    block = InvertedResidual(k, k, 1, 2, bottleneck_act=bottleneck_act, shortcut=shortcut, expand_act=expand_act,
                             depthwise_act="identity")
    eye = torch.eye(k)
    with torch.no_grad():
        block.conv_pw.weight.copy_(torch.cat([eye, -eye])[:, :, None, None])
        block.conv_dw.weight.zero_()
        block.conv_dw.weight[:, 0, 1, 1] = 1.0  # the centre tap: the depthwise conv is the identity
        block.conv_pwl.weight.copy_(torch.cat([eye, -eye], 1)[:, :, None, None])
        _identity_bn(block.bn1, bn1_shift)
        _identity_bn(block.bn2)
        _identity_bn(block.bn3, bn3_shift)
    return nn.Sequential(block).eval()


def test_identity_bottleneck_recovers_its_input_exactly():
    model = identity_block()
    x = torch.randn(40, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), x)  # the block really is the identity
    (rec,) = probe_network(model, x, positions=1000)
    assert rec["positions"] == 1000
    assert rec["r2_input_linear"] > 1 - 1e-6
    assert rec["r2_pre_linear"] > 1 - 1e-6
    assert rec["r2_input_knn"] > 0.8  # 4-D Gaussian input, 750 training positions
    assert rec["lemma2_failure_fraction"] == 0.0  # [I; -I]: one of +-e_i is active for every x_i != 0
    assert rec["expansion_active_mean"] == 4.0
    assert rec["zeroed_fraction"] == 0.0 and rec["below_id_fraction"] == 0.0


def test_bn_shift_that_makes_every_unit_negative_recovers_nothing():
    model = identity_block(bottleneck_act="relu", bn3_shift=-100.0)
    x = torch.randn(40, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    (rec,) = probe_network(model, x, positions=1000)
    assert rec["zeroed_fraction"] == 1.0 and rec["active_mean"] == 0.0
    assert rec["below_id_fraction"] == 1.0
    # a constant output: the decoders predict a mean, out of sample R^2 <= 0 (a small negative number)
    assert -0.05 < rec["r2_input_linear"] <= 1e-12
    assert -0.05 < rec["r2_pre_linear"] <= 1e-12
    assert rec["r2_input_knn"] < 0.05
    assert rec["rankme"] == 0.0 and rec["twonn_mean"] == 0.0
    assert rec["lemma2_failure_fraction"] == 0.0  # the expansion itself is still invertible


def test_relu6_clipped_at_6_counts_as_outside_its_linear_piece():
    """A BN shift of +100 puts every unit above 6: ReLU6 is constant there, so nothing is active. In the
    bottleneck: no active channel, every position below the manifold's dimension. In a ReLU6 expansion: no
    active row at any position, so Lemma 2 fails everywhere (a ReLU expansion, unclipped, keeps all its rows
    active and invertible)."""
    x = torch.randn(40, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    (rec,) = probe_network(identity_block(bottleneck_act="relu6", bn3_shift=100.0), x, positions=1000)
    assert rec["clipped_fraction"] == 1.0 and rec["zeroed_fraction"] == 0.0
    assert rec["active_mean"] == 0.0 and rec["below_id_fraction"] == 1.0
    (rec,) = probe_network(identity_block(expand_act="relu6", bn1_shift=100.0), x, positions=1000)
    assert rec["expansion_active_mean"] == 0.0 and rec["lemma2_failure_fraction"] == 1.0
    (rec,) = probe_network(identity_block(expand_act="relu", bn1_shift=100.0), x, positions=1000)
    assert rec["expansion_active_mean"] == 8.0 and rec["lemma2_failure_fraction"] == 0.0


def _random_bn(model, generator, shift=-0.5):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5, generator=generator)
                m.running_var.uniform_(0.5, 2.0, generator=generator)
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.normal_(shift, 0.5, generator=generator)


def test_lemma2_rank_agrees_with_the_random_map_implementation():
    g = torch.Generator().manual_seed(0)
    model = mobilenet_v2("cifar_fast", width_mult=0.25, expand_act="relu").eval()
    _random_bn(model, g, shift=-1.0)  # a negative shift leaves few units active: Lemma 2 fails often
    x = torch.randn(30, 3, 32, 32, generator=g)
    samples = capture_blocks(model, x, positions=400)
    records = probe_network(model, x, positions=400, knn=False, n_resamples=2)
    blocks = dict(model.named_modules())
    checked = 0
    for s, rec in zip(samples, records):
        folded = folded_expansion(blocks[s.name])
        if folded is None:
            assert rec["lemma2_failure_fraction"] is None
            continue
        W, b = folded
        # the fold is the network's own expansion pre-activation
        np.testing.assert_allclose(s.x @ W.T + b, s.z, rtol=1e-4, atol=1e-4)
        # same weights, the random-map implementation: the same fraction, position by position
        assert rec["lemma2_failure_fraction"] == collapsed_fraction(s.x, W, bias=b)
        mask = collapsed_mask(s.x, W, bias=b)
        for i in range(0, len(s.x), 40):  # and an independent rank per position
            active = (s.x[i] @ W.T + b) > 0
            assert mask[i] == (np.linalg.matrix_rank(W[active]) < W.shape[1] if active.any() else True)
        checked += 1
    assert checked >= 10
    assert 0 < np.mean([r["lemma2_failure_fraction"] for r in records if r["lemma2_failure_fraction"] is not None]) < 1


def test_relu6_bottleneck_statistics_and_summary():
    g = torch.Generator().manual_seed(3)
    model = mobilenet_v2("cifar_fast", width_mult=0.25, bottleneck_act="relu6").eval()
    _random_bn(model, g, shift=0.0)
    with torch.no_grad():
        for name, m in model.named_modules():
            if name.endswith("bn3"):
                m.weight.fill_(8.0)  # a wide pre-activation: many channels clip at 6
    x = torch.randn(20, 3, 32, 32, generator=g)
    records = probe_network(model, x, positions=300, knn=False, n_resamples=2)
    assert len(records) == 17
    for rec in records:
        assert 0 < rec["zeroed_fraction"] < 1 and 0 < rec["clipped_fraction"] < 1
        assert rec["active_mean"] < rec["oup"]
    summary = probe_summary(records)
    assert summary["zeroed_mean"] == pytest.approx(np.mean([r["zeroed_fraction"] for r in records]))
    assert all(np.isfinite(v) for v in summary.values())


def test_balanced_indices_and_bounds():
    labels = np.repeat(np.arange(5), [10, 20, 30, 40, 50])
    idx, hist = balanced_indices(labels, 27, random_state=0)
    assert hist == {c: 5 for c in range(5)} and np.bincount(labels[idx]).tolist() == [5] * 5
    with pytest.raises(ValueError, match="class 0 has 10; use at most 50"):
        balanced_indices(labels, 60)
    with pytest.raises(ValueError, match="fewer than the 5 classes"):
        balanced_indices(labels, 3)
    with pytest.raises(ValueError, match="positions"):
        probe_network(identity_block(), torch.zeros(2, 4, 4, 4), positions=10**9)


@pytest.mark.slow
def test_step0_rebuild_and_command_end_to_end(tmp_path):
    """Train a digits run; its recorded step-0 probe equals the probe of the rebuilt step-0 network; the command."""
    from manifold_lab.data import load_dataset
    from manifold_lab.probe.images import normalize
    from manifold_lab.probe.network import run_probe
    from manifold_lab.probe.sources import load_source
    from manifold_lab.train.config import TrainConfig
    from manifold_lab.train.trainer import train

    cfg = TrainConfig.model_validate({
        "model": {"width_mult": 0.25}, "data": {"name": "digits", "image_size": 16, "batch_size": 64},
        "train": {"epochs": 1, "threads": 1, "relu_stats_images": 16}})
    run_dir = tmp_path / "run"
    metrics = train(cfg, run_dir, seed=3, progress=False)
    assert (run_dir / "probe.json").exists()
    src = load_source(run_dir)
    data = load_dataset("digits", split="test", image_size=16)
    again = run_probe(src.initial(), data.images, data.labels.numpy(), transform=lambda u: normalize(u, data.mean, data.std))
    for key, value in again["summary"].items():
        assert metrics[f"probe_step0_{key}"] == pytest.approx(value, rel=1e-4, abs=1e-6)
    assert metrics["probe_final_r2_input_linear_mean"] != metrics["probe_step0_r2_input_linear_mean"]

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "manifold_lab", "probe", str(run_dir), "--images", "50", "--positions", "200",
           "--step0", "--no-knn", "--resamples", "2", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    payload = json.loads((out / "probe.json").read_text())
    assert payload["meta"]["class_histogram"] == {str(c): 5 for c in range(10)}
    assert [n["stage"] for n in payload["networks"]] == ["step0", "trained"]
    rows = (out / "probe.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * len(payload["networks"][0]["records"])
    assert (out / "probe.png").stat().st_size > 0

    for bad, message in ((["--images", "0"], "images"), (["--positions", "5"], "positions"),
                         (["--images", "5000"], "per class")):
        done = subprocess.run(cmd[:5] + bad + ["--out", str(tmp_path / "bad")], capture_output=True, text=True)
        assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "bad").exists()
    done = subprocess.run(cmd[:4] + [str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert done.returncode == 2 and "does not exist" in done.stderr


@pytest.mark.parametrize("shortcut", [True, False])
def test_toy_probe_on_a_dead_bottleneck(shortcut):
    """A toy block whose projection bias kills every ReLU unit: output x (shortcut) or 0 (none)."""
    from manifold_lab.toy import ToyBottleneckNet, probe_toy

    model = ToyBottleneckNet(10, 4, depth=1, bottleneck_act="relu", shortcut=shortcut)
    model.reset_parameters(torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.blocks[0].project.bias.fill_(-1e3)
    (rec,) = probe_toy(model, torch.randn(400, 10, generator=torch.Generator().manual_seed(1)))
    assert rec["zeroed_fraction"] == 1.0 and rec["below_id_fraction"] == 1.0
    if shortcut:  # out = x + 0: the input comes back exactly
        assert rec["r2_input_linear"] > 1 - 1e-6
    else:  # out = 0: nothing comes back
        assert -0.1 < rec["r2_input_linear"] <= 1e-12 and rec["rankme"] == 0.0
