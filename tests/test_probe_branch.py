"""The branch and label measures of the probe (issue 22, section 1), on closed-form blocks.

The old loss measure (``r2_input_*``: the block input decoded from the block
output ``out = x + act3(pre)``) reads a dead branch as no loss, since then
``out = x``. The branch measure (``r2_branch_*``: ``pre`` decoded from
``act3(pre)``) must read it as total loss, the identity as none, and an
injective ``act3`` as none for the k-NN decoder.
"""

import numpy as np
import pytest
import torch
from torch import nn

from manifold_lab.models import mobilenet_v2
from manifold_lab.probe import probe_network, probe_summary
from manifold_lab.probe.capture import activation_name
from manifold_lab.probe.label_probe import label_accuracy
from tests.test_probe import _random_bn, identity_block


def _images(k: int, seed: int, n: int = 40) -> torch.Tensor:
    return torch.randn(n, k, 8, 8, generator=torch.Generator().manual_seed(seed))


def _probe_block(model, x, **kw) -> dict:
    (rec,) = probe_network(model, x, positions=2000, n_resamples=2, **kw)
    return rec


def test_dead_branch_is_total_loss_for_the_branch_measure_and_none_for_the_old_one():
    # pre = x - 100 < 0 everywhere: ReLU6 zeroes the whole branch, out = x + 0
    model = identity_block(2, bottleneck_act="relu6", bn3_shift=-100.0, shortcut="bottleneck")
    x = _images(2, 0)
    with torch.no_grad():
        assert torch.equal(model(x), x)
    rec = _probe_block(model, x)
    assert rec["residual"] and rec["zeroed_fraction"] == 1.0
    # the old measure: the input comes back exactly, "no loss"
    assert rec["r2_input_linear"] > 1 - 1e-6 and rec["r2_input_knn"] > 0.95  # observed 1.0 and 0.99
    # the branch measure: act3(pre) is constant, the decoders predict a mean, R^2 <= 0 (a small negative number)
    assert -0.05 < rec["r2_branch_linear"] <= 1e-12
    assert -0.05 < rec["r2_branch_knn"] <= 1e-12  # observed -0.004 and -0.011


def test_identity_branch_is_no_loss():
    model = identity_block(2, bottleneck_act="identity", shortcut="bottleneck")
    x = _images(2, 1)
    with torch.no_grad():
        assert torch.allclose(model(x), 2 * x)
    rec = _probe_block(model, x)
    assert rec["r2_branch_linear"] > 1 - 1e-6
    assert rec["r2_branch_knn"] > 0.98  # observed 0.990: 2-D Gaussian, 1500 training positions


@pytest.mark.parametrize("act", [nn.LeakyReLU(0.1), nn.LeakyReLU(0.3), nn.ELU(), nn.Softplus()],
                         ids=["leaky_relu_0.1", "leaky_relu_0.3", "elu", "softplus"])
def test_injective_branch_is_no_loss_for_the_knn_decoder(act):
    """An injective act3 keeps pre: k-NN recovers it to within its own error on the identity (0.99 here)."""
    x = _images(2, 2)
    model = identity_block(2, shortcut="bottleneck")
    model[0].act3 = act
    rec = _probe_block(model, x)
    assert rec["active_mean"] == 2.0 and rec["zeroed_fraction"] == 0.0
    assert rec["r2_branch_knn"] > 0.95  # observed 0.975 (leaky 0.1) to 0.988 (leaky 0.3)
    # the linear decoder sees the bend: it recovers less (0.80 for leaky 0.1), which is why k-NN decides
    assert 0.5 < rec["r2_branch_linear"] < rec["r2_branch_knn"]


@pytest.mark.parametrize("act", ["relu", "relu6"])
def test_non_injective_branch_loses_what_the_old_measure_keeps(act):
    """ReLU / ReLU6 at pre = x (Gaussian, so ReLU6 never clips): x < 0 all map to 0.

    The best guess of x < 0 from 0 is E[x | x < 0], so (1 - 2/pi) / 2 = 0.18 of the variance is lost
    (k-NN R^2 0.82 in the limit; 0.79 observed); out = x + act3(x) is injective, so the old measure sees none.
    """
    rec = _probe_block(identity_block(2, bottleneck_act=act, shortcut="bottleneck"), _images(2, 2))
    assert 0.7 < rec["r2_branch_knn"] < 0.87
    assert rec["r2_input_knn"] > 0.95


def test_activation_names_of_the_injective_modules():
    assert activation_name(nn.LeakyReLU(0.3)) == "leaky_relu_0.3"
    assert activation_name(nn.ELU()) == "elu" and activation_name(nn.Softplus()) == "softplus"
    with pytest.raises(ValueError, match="unsupported activation module SiLU"):
        activation_name(nn.SiLU())


def test_dead_branches_in_a_network():
    """cifar_fast at width 0.25: a BN shift kills the branch of every shortcut block; the old R^2 says no loss there."""
    from manifold_lab.models.mobilenetv2 import InvertedResidual

    g = torch.Generator().manual_seed(4)
    model = mobilenet_v2("cifar_fast", width_mult=0.25, bottleneck_act="relu6").eval()
    _random_bn(model, g, shift=0.0)
    x = torch.randn(24, 3, 32, 32, generator=g)
    alive = probe_network(model, x, positions=300, knn=False, n_resamples=2)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, InvertedResidual) and m.use_res_connect:
                m.bn3.bias.fill_(-1e3)
    dead = probe_network(model, x, positions=300, knn=False, n_resamples=2)
    residual = [i for i, r in enumerate(dead) if r["residual"]]
    assert len(residual) >= 5
    for i in residual:
        assert dead[i]["zeroed_fraction"] == 1.0
        assert dead[i]["r2_input_linear"] > 1 - 1e-6  # the old measure: "no loss"
        assert -0.1 < dead[i]["r2_branch_linear"] <= 1e-12 < 0.1 < alive[i]["r2_branch_linear"]
    summary = probe_summary(dead)
    assert summary["r2_branch_linear_mean"] < probe_summary(alive)["r2_branch_linear_mean"] - 0.1
    assert "label_accuracy_mean" not in summary  # no labels given: left out, not 0


def test_label_probe_separable_and_independent():
    rng = np.random.RandomState(0)
    features = rng.standard_normal((400, 5))
    labels = np.argmax(features @ rng.standard_normal((5, 4)), axis=1)  # a linear function of the features
    assert label_accuracy(features, labels) > 0.9  # observed 0.96 (100 held out)
    noise = rng.standard_normal((800, 20))
    independent = np.repeat(np.arange(4), 200)
    assert abs(label_accuracy(noise, independent) - 0.25) < 0.08  # chance; observed 0.235, 200 held out, sd 0.03
    assert label_accuracy(noise[:3], [0, 1, 1]) is None  # class 0 has one image: no stratified split
    assert label_accuracy(noise, np.zeros(800)) is None


def test_label_probe_in_the_network_probe():
    """Out = x; the class moves channel 0 of every pixel by 3 per class: the labels are linear in the output."""
    labels = np.repeat(np.arange(4), 20)
    x = _images(2, 5, n=80)
    x[:, 0] += 3.0 * torch.as_tensor(labels, dtype=torch.float32)[:, None, None]
    (rec,) = probe_network(identity_block(2), x, positions=200, knn=False, n_resamples=2, labels=labels)
    assert rec["label_accuracy"] >= 0.9  # 18 of the 20 held-out images; observed 19 (the L2 penalty blurs one)
    shuffled = np.random.RandomState(0).permutation(labels)  # independent of the output: chance, 0.25
    (rec_shuffled,) = probe_network(identity_block(2), x, positions=200, knn=False, n_resamples=2, labels=shuffled)
    assert rec_shuffled["label_accuracy"] <= 0.5  # observed 0.30; 20 held out, sd about 0.1
    assert probe_summary([rec])["label_accuracy_mean"] == rec["label_accuracy"]
    with pytest.raises(ValueError, match="one entry per image"):
        probe_network(identity_block(2), x, positions=200, labels=labels[:-1])
