"""A trained toy network of inverted-residual blocks on vectors (section 3.2, Figure 6a in miniature).

The MobileNetV2 block of Table 1 with the spatial part removed: a narrow
*bottleneck* of width ``k`` is expanded to ``t * k`` units with ReLU6 and
projected back to ``k`` units, either linearly (the *linear bottleneck*) or
through ``relu`` / ``relu6`` (the ablation of Figure 6a). The shortcut joins
two bottlenecks (the *inverted residual*) or is absent.

The task is a manifold of interest that the network must not destroy: two
interleaved spirals (a 1-D manifold in a plane) embedded in ``R^n`` by a random
matrix; the network either classifies the arm or regresses the intrinsic
coordinate along it. A non-linearity in a bottleneck narrower than the
manifold's ambient plane folds points onto each other, which the paper predicts
costs accuracy; the gap should close as ``k`` grows.

Data generation uses the numpy library (``manifold_lab.manifolds``); all torch
randomness (initialisation, minibatch order) goes through one
``torch.Generator`` so the same seed gives the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

BOTTLENECK_ACTS = ("identity", "relu", "relu6")
TASKS = ("classify", "regress")


def make_activation(name: str) -> nn.Module:
    """``nn.Module`` for a bottleneck activation name (``identity`` | ``relu`` | ``relu6``)."""
    if name not in BOTTLENECK_ACTS:
        raise ValueError(f"bottleneck_act={name!r} is not one of {BOTTLENECK_ACTS}")
    return {"identity": nn.Identity, "relu": nn.ReLU, "relu6": nn.ReLU6}[name]()


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r} must be an integer >= 1")


class ToyInvertedResidual(nn.Module):
    """One inverted-residual block on vectors, ``k -> t*k -> k``.

    ``h = ReLU6(W_e x + b_e)`` (``expand``, ``t*k`` units) then
    ``y = act(W_p h + b_p)`` (``project``, ``k`` units; ``act`` is the identity
    for the linear bottleneck), and ``x + y`` when ``shortcut`` (between the
    bottlenecks, as in MobileNetV2) else ``y``.

    Submodule names are fixed (``expand``, ``expand_act``, ``project``,
    ``bottleneck_act``) so that forward hooks find the same layers in every
    variant; a linear bottleneck is an ``nn.Identity`` at ``bottleneck_act``.
    """

    def __init__(self, width: int, expand_ratio: int, bottleneck_act: str = "identity", shortcut: bool = True):
        super().__init__()
        _check_positive_int("width", width)
        _check_positive_int("expand_ratio", expand_ratio)
        self.width = int(width)
        self.expand_ratio = int(expand_ratio)
        self.hidden = self.width * self.expand_ratio
        self.expand = nn.Linear(self.width, self.hidden)  # pw
        self.expand_act = nn.ReLU6()
        self.project = nn.Linear(self.hidden, self.width)  # pw-linear (or not)
        self.bottleneck_act = make_activation(bottleneck_act)
        self.shortcut = bool(shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bottleneck_act(self.project(self.expand_act(self.expand(x))))
        return x + y if self.shortcut else y


class ToyBottleneckNet(nn.Module):
    """Embedding ``R^n -> R^k``, ``depth`` blocks at width ``k``, linear head ``R^k -> R^out``.

    The stem is the first bottleneck: ``act(W_s x + b_s)`` with the same
    ``bottleneck_act`` as the blocks, so in the non-linear variants every
    narrow representation the network computes went through that activation.

    ``in_dims`` is the ambient dimension ``n`` of the input points ``(N, n)``; ``out_dims`` the classes
    (logits) or regression targets, output ``(N, out_dims)``; ``expand_ratio``, ``bottleneck_act`` and
    ``shortcut`` are those of ``ToyInvertedResidual``.
    """

    def __init__(
        self,
        in_dims: int,
        width: int,
        depth: int = 2,
        expand_ratio: int = 6,
        *,
        bottleneck_act: str = "identity",
        shortcut: bool = True,
        out_dims: int = 2,
    ):
        super().__init__()
        for name, value in (("in_dims", in_dims), ("width", width), ("depth", depth), ("out_dims", out_dims)):
            _check_positive_int(name, value)
        self.bottleneck_act_name = bottleneck_act
        self.stem = nn.Linear(in_dims, width)
        self.stem_act = make_activation(bottleneck_act)
        self.blocks = nn.Sequential(
            *[ToyInvertedResidual(width, expand_ratio, bottleneck_act, shortcut) for _ in range(depth)]
        )
        self.head = nn.Linear(width, out_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem_act(self.stem(x))))

    def reset_parameters(self, generator: torch.Generator) -> None:
        """PyTorch's default ``nn.Linear`` initialisation, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, from ``generator``."""
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    bound = 1.0 / math.sqrt(module.in_features)
                    module.weight.uniform_(-bound, bound, generator=generator)
                    module.bias.uniform_(-bound, bound, generator=generator)


# --------------------------------------------------------------------------- data


@dataclass
class ToyData:
    """Train/test split of an embedded two-spirals task (float32 tensors).

    ``X_*`` has shape ``(N, n_dims)``; ``y_*`` is ``(N,)`` int64 class labels for
    ``classify`` and ``(N, 1)`` float32 standardised coordinates for ``regress``.
    """

    task: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def out_dims(self) -> int:
        return 2 if self.task == "classify" else 1


def make_toy_data(
    task: str = "classify",
    *,
    n_train: int = 1000,
    n_test: int = 1000,
    n_dims: int = 10,
    noise: float = 0.0,
    embedding: str = "gaussian",
    random_state: int | None = None,
) -> ToyData:
    """Two interleaved spirals embedded in ``R^{n_dims}`` by a random ``T`` (``n_dims x 2``).

    Points are ``make_two_spirals`` (train and test drawn together, then split)
    mapped by ``embed``; inputs are standardised with train statistics. For
    ``regress`` the target is the intrinsic coordinate ``t`` along the arm,
    standardised with train statistics.
    """
    from manifold_lab.manifolds import embed, make_two_spirals

    if task not in TASKS:
        raise ValueError(f"task={task!r} is not one of {TASKS}")
    _check_positive_int("n_train", n_train)
    _check_positive_int("n_test", n_test)
    rng = np.random.RandomState(random_state) if not isinstance(random_state, np.random.RandomState) else random_state
    X2, label, t = make_two_spirals(n_train + n_test, noise=noise, random_state=rng, return_coordinate=True)
    X, _ = embed(X2, n_dims, kind=embedding, random_state=rng)
    # Shuffle before splitting: the generator may emit one class after the other.
    order = rng.permutation(len(X))
    X, label, t = X[order], label[order], t[order]
    tr, te = slice(0, n_train), slice(n_train, n_train + n_test)
    mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-12
    X = (X - mu) / sd
    if task == "classify":
        y = torch.as_tensor(label, dtype=torch.int64)
    else:
        y = torch.as_tensor(((t - t[tr].mean()) / (t[tr].std() + 1e-12))[:, None], dtype=torch.float32)
    Xt = torch.as_tensor(X, dtype=torch.float32)
    return ToyData(task, Xt[tr], y[tr], Xt[te], y[te])


# --------------------------------------------------------------------------- training


def train_toy(
    model: ToyBottleneckNet,
    data: ToyData,
    *,
    steps: int = 500,
    lr: float = 1e-2,
    weight_decay: float = 0.0,
    batch_size: int | None = None,
    generator: torch.Generator,
) -> list[float]:
    """Adam on cross-entropy (``classify``) or mean squared error (``regress``).

    ``batch_size=None`` trains full-batch (deterministic given the
    initialisation); otherwise each step draws a minibatch from ``generator``.
    Returns the training loss of every step.
    """
    _check_positive_int("steps", steps)
    if batch_size is not None:
        _check_positive_int("batch_size", batch_size)
    loss_fn = nn.CrossEntropyLoss() if data.task == "classify" else nn.MSELoss()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = len(data.X_train)
    losses = []
    model.train()
    for _ in range(steps):
        if batch_size is None or batch_size >= n:
            xb, yb = data.X_train, data.y_train
        else:
            idx = torch.randint(n, (batch_size,), generator=generator)
            xb, yb = data.X_train[idx], data.y_train[idx]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


# --------------------------------------------------------------------------- evaluation


def evaluate_toy(model: ToyBottleneckNet, data: ToyData) -> dict[str, float]:
    """Test accuracy (``classify``) or normalised error (``regress``).

    Normalised error is ``mean((f(x) - y)^2) / var(y)`` on the test set
    (``1 - R^2``): 0 is perfect, 1 is no better than predicting the mean.
    """
    model.eval()
    with torch.no_grad():
        out = model(data.X_test)
    if data.task == "classify":
        acc = float((out.argmax(1) == data.y_test).float().mean())
        return {"test_accuracy": acc, "test_error": 1.0 - acc}
    mse = float(((out - data.y_test) ** 2).mean())
    return {"test_nmse": mse / float(data.y_test.var(unbiased=False))}


def _forward_hooked(model: nn.Module, X: torch.Tensor, hooks: list) -> None:
    """``model(X)`` in eval mode without gradients, for the forward ``hooks`` to read; then the hooks are removed."""
    try:
        model.eval()
        with torch.no_grad():
            model(X)
    finally:
        for h in hooks:
            h.remove()


def expansion_activity(model: ToyBottleneckNet, X: torch.Tensor) -> list[dict[str, float]]:
    """Lemma-2 statistics of every expansion layer (``ReLU6(W_e x)``, ``t*k`` units) on points ``X``.

    A unit is *active* at a point when it is in its linear piece, ``0 < z < 6``
    for ReLU6 (a unit at 0 or saturated at 6 has zero derivative, so it carries
    no information about the input there). By Lemma 2 the layer is invertible
    at a point only if at least ``k`` units (the block's input width, the
    paper's "invertibility threshold" of Figure 7, ``1/t`` of the units) are
    active; with generic weights any ``k`` active rows are independent, so the
    count is the criterion.

    Returns, per block, ``invertible_fraction`` (share of points with
    ``>= k`` active units), ``active_mean``, ``active_min``, ``active_max`` (active
    unit counts) and ``threshold`` (``k``), read through forward hooks on the
    fixed ``expand`` submodules.
    """
    pre: list[torch.Tensor] = []
    hooks = [
        block.expand.register_forward_hook(lambda _m, _i, out: pre.append(out.detach()))
        for block in model.blocks
    ]
    _forward_hooked(model, X, hooks)
    stats = []
    for block, z in zip(model.blocks, pre):
        counts = ((z > 0) & (z < 6)).sum(1)
        k = block.width
        stats.append(
            {
                "invertible_fraction": float((counts >= k).float().mean()),
                "active_mean": float(counts.float().mean()),
                "active_min": float(counts.min()),
                "active_max": float(counts.max()),
                "threshold": float(k),
                "units": float(block.hidden),
            }
        )
    return stats


#: Test points the per-run probe of a toy network reads (the first ones; the test set is already shuffled).
PROBE_POINTS = 500


def probe_toy(model: ToyBottleneckNet, X: torch.Tensor, *, random_state: int = 0) -> list[dict]:
    """The information-loss probe (``manifold_lab.probe.measures``) at every block's bottleneck, points ``X`` (N, n).

    The points play the role of the probe's positions and images: block input
    ``x``, expansion ``W_e, b_e`` (ReLU6), bottleneck pre-activation
    ``project(...)``, its activation and the block output, read through hooks
    on the fixed submodule names. Ridge decoder only, TwoNN over 3 resamples.
    """
    from manifold_lab.probe.measures import block_measures

    seen: dict[int, dict] = {}

    def keep(b, key, pre_hook=False):
        if pre_hook:
            return lambda _m, inputs: seen.setdefault(b, {}).__setitem__(key, inputs[0].detach().double().numpy())
        return lambda _m, _i, out: seen.setdefault(b, {}).__setitem__(key, out.detach().double().numpy())

    hooks = []
    for b, block in enumerate(model.blocks):
        hooks += [block.register_forward_pre_hook(keep(b, "x", pre_hook=True)),
                  block.project.register_forward_hook(keep(b, "pre")),
                  block.bottleneck_act.register_forward_hook(keep(b, "act")),
                  block.register_forward_hook(keep(b, "out"))]
    was_training = model.training
    try:
        _forward_hooked(model, X, hooks)
    finally:
        model.train(was_training)
    records = []
    for b, block in enumerate(model.blocks):
        t = seen[b]
        rec = {"block": b, "inp": block.width, "hidden": block.hidden, "oup": block.width}
        rec.update(block_measures(x=t["x"], pre=t["pre"], act=t["act"], out=t["out"], rep=t["out"],
                                  W=block.expand.weight.detach().double().numpy(),
                                  b=block.expand.bias.detach().double().numpy(), expand_act="relu6",
                                  bottleneck_act=model.bottleneck_act_name, knn=False, n_resamples=3,
                                  random_state=random_state))
        records.append(rec)
    return records


def run_toy(
    *,
    task: str = "classify",
    width: int = 2,
    depth: int = 2,
    expand_ratio: int = 6,
    bottleneck_act: str = "identity",
    shortcut: bool = True,
    n_dims: int = 10,
    n_train: int = 1000,
    n_test: int = 1000,
    noise: float = 0.0,
    steps: int = 500,
    lr: float = 1e-2,
    weight_decay: float = 0.0,
    batch_size: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Build data and network from ``seed``, train, and measure; one toy run end to end.

    The same ``seed`` gives the same data for every variant (so linear and
    non-linear bottlenecks are compared on identical points and paired by
    seed) and the same initialisation scheme. Returns the metrics of
    ``evaluate_toy``, ``final_train_loss``, ``params``, and per block ``b``
    ``block{b}_<stat>`` from ``expansion_activity`` on the test set, plus their
    minimum over blocks ``invertible_fraction_min``, and the information-loss
    probe summary on the first ``PROBE_POINTS`` test points before and after training,
    ``probe_step0_<key>`` and ``probe_final_<key>`` (``probe_toy``,
    ``manifold_lab.probe.SUMMARY_KEYS``).
    """
    _check_positive_int("seed + 1", seed + 1)
    data = make_toy_data(task, n_train=n_train, n_test=n_test, n_dims=n_dims, noise=noise, random_state=seed)
    model = ToyBottleneckNet(
        n_dims, width, depth, expand_ratio,
        bottleneck_act=bottleneck_act, shortcut=shortcut, out_dims=data.out_dims,
    )
    gen = torch.Generator().manual_seed(seed)
    model.reset_parameters(gen)
    from manifold_lab.probe.network import probe_summary

    probe0 = probe_summary(probe_toy(model, data.X_test[:PROBE_POINTS]))
    losses = train_toy(model, data, steps=steps, lr=lr, weight_decay=weight_decay, batch_size=batch_size, generator=gen)
    metrics: dict[str, Any] = dict(evaluate_toy(model, data))
    metrics["final_train_loss"] = losses[-1]
    metrics["params"] = sum(p.numel() for p in model.parameters())
    stats = expansion_activity(model, data.X_test)
    for b, s in enumerate(stats):
        for key in ("invertible_fraction", "active_mean", "active_min", "active_max"):
            metrics[f"block{b}_{key}"] = s[key]
    metrics["invertible_fraction_min"] = min(s["invertible_fraction"] for s in stats)
    metrics["active_fraction_mean"] = float(np.mean([s["active_mean"] / s["units"] for s in stats]))
    metrics.update({f"probe_step0_{k}": v for k, v in probe0.items()})
    metrics.update({f"probe_final_{k}": v for k, v in probe_summary(probe_toy(model, data.X_test[:PROBE_POINTS])).items()})
    return metrics
