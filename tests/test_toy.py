"""The toy inverted-residual network on vectors (manifold_lab.toy)."""

from __future__ import annotations

import pytest
import torch

from manifold_lab.toy import (
    ToyBottleneckNet,
    ToyInvertedResidual,
    expansion_activity,
    make_toy_data,
    run_toy,
    train_toy,
    evaluate_toy,
)


def _net(act="identity", shortcut=True, width=3, depth=2, t=4, n=7, out=2, seed=0):
    net = ToyBottleneckNet(n, width, depth, t, bottleneck_act=act, shortcut=shortcut, out_dims=out)
    net.reset_parameters(torch.Generator().manual_seed(seed))
    return net


def test_shapes_and_parameter_count():
    n, k, depth, t, out = 7, 3, 2, 4, 2
    net = _net(width=k, depth=depth, t=t, n=n, out=out)
    assert net(torch.randn(11, n)).shape == (11, out)
    # stem + depth * (expand + project) + head, weights and biases.
    expected = (n * k + k) + depth * ((k * t * k + t * k) + (t * k * k + k)) + (k * out + out)
    assert sum(p.numel() for p in net.parameters()) == expected
    block = net.blocks[0]
    assert block.expand.weight.shape == (t * k, k) and block.project.weight.shape == (k, t * k)


@pytest.mark.parametrize("act", ["identity", "relu", "relu6"])
def test_bottleneck_activation_applied_or_absent(act):
    """Hook the projection and the bottleneck activation: the output is act(projection)."""
    net = _net(act=act)
    seen = {}
    block = net.blocks[0]
    h1 = block.project.register_forward_hook(lambda m, i, o: seen.__setitem__("proj", o.detach()))
    h2 = block.bottleneck_act.register_forward_hook(lambda m, i, o: seen.__setitem__("act", o.detach()))
    with torch.no_grad():  # large projection weights so that outputs are both negative and above 6
        block.project.weight.mul_(20)
    net(3 * torch.randn(500, 7, generator=torch.Generator().manual_seed(1)))
    h1.remove(), h2.remove()
    z, y = seen["proj"], seen["act"]
    assert (z < 0).any() and (z > 6).any()
    expected = {"identity": z, "relu": z.clamp(min=0), "relu6": z.clamp(0, 6)}[act]
    torch.testing.assert_close(y, expected)
    assert isinstance(block.bottleneck_act, torch.nn.Identity) == (act == "identity")


@pytest.mark.parametrize("shortcut", [True, False])
def test_shortcut_between_bottlenecks(shortcut):
    block = ToyInvertedResidual(3, 2, "relu", shortcut)
    x = torch.randn(5, 3)
    inner = torch.relu(block.project(torch.clamp(block.expand(x), 0, 6)))
    torch.testing.assert_close(block(x), x + inner if shortcut else inner)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="bottleneck_act"):
        ToyBottleneckNet(4, 2, bottleneck_act="gelu")
    with pytest.raises(ValueError, match="width"):
        ToyBottleneckNet(4, 0)
    with pytest.raises(ValueError, match="task"):
        make_toy_data("segment")


def test_expansion_activity_counts_linear_piece():
    """Hand-set weights: known pre-activations give known active counts."""
    net = _net(width=1, depth=1, t=3, n=1)
    block = net.blocks[0]
    with torch.no_grad():
        net.stem.weight.fill_(1.0), net.stem.bias.zero_()
        block.expand.weight[:] = torch.tensor([[1.0], [-1.0], [10.0]])
        block.expand.bias.zero_()
    X = torch.tensor([[-1.0], [0.3], [2.0]])
    # x=-1: only unit 1 (z=1) active; x=0.3: units 0 and 2 (z=0.3, 3); x=2: unit 0 only (unit 2 saturates at 20).
    (stats,) = expansion_activity(net, X)
    assert stats["active_min"] == 1 and stats["active_max"] == 2
    assert stats["active_mean"] == pytest.approx(4 / 3)
    assert stats["invertible_fraction"] == 1.0 and stats["threshold"] == 1


def test_same_seed_same_metrics():
    kw = dict(task="classify", width=2, depth=1, expand_ratio=3, n_train=120, n_test=80, steps=30, batch_size=32)
    a, b = run_toy(seed=3, **kw), run_toy(seed=3, **kw)
    assert a == b
    assert run_toy(seed=4, **kw) != a


def test_linear_bottleneck_learns_two_spirals():
    """A small linear-bottleneck net separates two spirals in R^6: >= 95% test accuracy."""
    torch.set_num_threads(1)
    m = run_toy(task="classify", width=4, depth=2, expand_ratio=4, n_dims=6, n_train=400, n_test=400,
                steps=300, seed=0)
    assert m["test_accuracy"] >= 0.95, m


def test_regression_error_is_normalised():
    data = make_toy_data("regress", n_train=200, n_test=300, n_dims=5, random_state=0)
    assert data.y_train.mean().abs() < 1e-5 and data.y_train.std(unbiased=False) == pytest.approx(1, abs=1e-4)
    net = _net(width=2, depth=1, n=5, out=1)
    with torch.no_grad():  # a network predicting the test mean exactly scores 1.0
        for p in net.parameters():
            p.zero_()
        net.head.bias.fill_(float(data.y_test.mean()))
    assert evaluate_toy(net, data)["test_nmse"] == pytest.approx(1.0, abs=1e-5)
    losses = train_toy(net, data, steps=5, generator=torch.Generator().manual_seed(0))
    assert len(losses) == 5
