"""Memory-efficient inference (paper section 5.1): split forward equals the standard one."""

import pytest
import torch

from manifold_lab.models import InvertedResidual, mobilenet_v2
from manifold_lab.models.memory_efficient import memory_efficient_forward


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions: threads only add contention on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def randomize_bn(model, seed=0):
    """Non-trivial BN statistics and affine parameters, so a BN applied per group instead of
    after the sum (or with the wrong channel slice) cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(n, generator=g))
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model


@pytest.mark.parametrize("t_prime", [1, 2, 3, 6, 7])
def test_network_equals_standard_forward(t_prime):
    torch.manual_seed(0)
    # a narrow network keeps the test fast; every block type (t = 1, stride 2, residual) is present
    model = randomize_bn(mobilenet_v2("cifar_fast", width_mult=0.25, bottleneck_act="relu6")).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref = model(x)
        with model.memory_efficient(t_prime):
            out = model(x)
        after = model(x)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    assert all(b.t_prime is None for b in model.features if isinstance(b, InvertedResidual))  # restored
    torch.testing.assert_close(after, ref, rtol=0, atol=0)


@pytest.mark.parametrize("t_prime", [1, 2, 3, 6, 7, 1000])
@pytest.mark.parametrize("inp, oup, stride, t", [(24, 24, 1, 6), (16, 24, 2, 6), (32, 16, 1, 1), (10, 10, 1, 5)])
def test_block_equals_standard_forward(inp, oup, stride, t, t_prime):
    torch.manual_seed(1)
    block = randomize_bn(InvertedResidual(inp, oup, stride, t), seed=2).eval()
    x = torch.randn(3, inp, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(memory_efficient_forward(block, x, t_prime), block(x), rtol=0, atol=1e-5)


def test_only_one_group_of_the_expansion_is_alive():
    """The depthwise conv sees (B, ceil(t k / t'), H, W) slices, never the whole t k expansion."""
    block = InvertedResidual(16, 16, 1, 6).eval()  # 96 expanded channels
    seen = []
    real_conv2d = torch.nn.functional.conv2d

    def spy(x, w, *args, **kwargs):
        seen.append(x.shape[1])
        return real_conv2d(x, w, *args, **kwargs)

    torch.nn.functional.conv2d = spy
    try:
        with torch.no_grad():
            memory_efficient_forward(block, torch.randn(1, 16, 8, 8), 5)
    finally:
        torch.nn.functional.conv2d = real_conv2d
    # per group: expansion reads 16, depthwise and projection read the group (20, 19, 19, 19, 19)
    assert max(seen) == 20 and sum(c for c in seen if c != 16) == 2 * 96


@pytest.mark.parametrize("t_prime", [0, -1, 2.0, True, "2"])
def test_bad_t_prime(t_prime):
    model = mobilenet_v2("cifar_fast").eval()
    with pytest.raises(ValueError, match="t_prime must be an integer >= 1"):
        with model.memory_efficient(t_prime):
            pass


def test_rejects_training_mode_and_expansion_shortcut():
    with pytest.raises(ValueError, match="eval mode"):
        with mobilenet_v2("cifar_fast").train().memory_efficient(2):
            pass
    with pytest.raises(ValueError, match="shortcut='expansion'"):
        with mobilenet_v2("cifar_fast", shortcut="expansion").eval().memory_efficient(2):
            pass
