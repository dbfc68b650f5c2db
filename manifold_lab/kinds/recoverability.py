"""Experiment kind ``recoverability``: how much of a manifold survives a stack of random blocks.

A manifold from ``manifold_lab.manifolds.MANIFOLDS`` is embedded into the
bottleneck space ``R^k`` by a random matrix and pushed through ``depth`` random
inverted-residual blocks (``manifold_lab.relu_maps.random_stack``):
``x -> x + act(A ReLU6(B x))`` or without the shortcut, with ``act`` the
bottleneck activation (identity = the paper's linear bottleneck). After every
block the kind measures every recoverability and geometry metric of the
library against the block's input manifold:

* reconstruction errors of the stack's input from the block output by the
  decoders of ``manifold_lab.recovery.reconstruction_errors`` (linear least
  squares, k-nearest-neighbour regression);
* the Lemma-2 invertible fraction of the block's expansion layer and its
  collapsed fraction (``manifold_lab.metrics``);
* trustworthiness and k-nearest-neighbour overlap with the input, and the
  TwoNN intrinsic dimension of the output (``manifold_lab.geometry``).

Metrics are per-depth curves (lists, index ``l`` = after block ``l + 1``) and
their values at the final depth (scalars, aggregated over seeds).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from manifold_lab.kinds import Kind, ReportContext, ReportItem, RunContext, RunRecord


# --------------------------------------------------------------------------- report helpers


def group_mean_ci(
    runs: Sequence[RunRecord], x_key: str, metric: str, bounds: tuple[float, float] | None = None
) -> tuple[list[float], list[float], list[float], list[float], list[int]]:
    """Group ``runs`` by the param at ``x_key``; mean and 95% interval of ``metric`` per group.

    The interval is ``manifold_lab.stats.describe``'s (NaN for a single seed):
    the t interval, or inside ``bounds`` (a fraction: ``(0, 1)``) when given.

    Returns ``(xs, mean, lo, hi, n)`` sorted by ``xs``; runs without the metric are skipped.
    """
    from manifold_lab.stats import describe

    groups: dict[Any, list[float]] = {}
    for r in runs:
        if metric in r.metrics:
            groups.setdefault(r.param(x_key), []).append(float(r.metrics[metric]))
    xs = sorted(groups)
    stats = [describe(groups[x], bounds) for x in xs]
    return [float(x) for x in xs], *([s[k] for s in stats] for k in ("mean", "ci_low", "ci_high", "n"))


def panel_label(keys: Sequence[str], values: Sequence[Any]) -> str:
    """``"task=classify, n_dims=10"`` from dotted keys and their values (last path part only)."""
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in zip(keys, values)) or "all runs"


# --------------------------------------------------------------------------- params and run


def _known_manifold(value: str) -> str:
    from manifold_lab.manifolds import get_manifold

    get_manifold(value)  # ValueError listing the names
    return value


#: A manifold name of ``manifold_lab.manifolds.MANIFOLDS``, validated (shared by the manifold kinds).
ManifoldName = Annotated[str, AfterValidator(_known_manifold)]


class RecoverabilityParams(BaseModel):
    """An embedded manifold through ``depth`` random inverted-residual blocks at width ``k``."""

    model_config = ConfigDict(extra="forbid")
    manifold: ManifoldName = Field("spiral", description="a generator of manifold_lab.manifolds.MANIFOLDS")
    n_samples: int = Field(1000, ge=20, le=200_000)
    noise: float = Field(0.0, ge=0.0, le=1e3, description="Gaussian noise of the generator (finite)")
    embedding: Literal["gaussian", "orthogonal"] = Field(
        "orthogonal", description="random matrix that embeds the manifold into R^k"
    )
    width: int = Field(8, ge=1, le=4096, description="bottleneck width k (the manifold is embedded in R^k)")
    depth: int = Field(6, ge=1, le=256, description="number of random blocks")
    expand_ratio: int = Field(6, ge=1, le=64, description="expansion t (t*k hidden units)")
    bottleneck_act: Literal["identity", "relu", "relu6"] = "identity"
    shortcut: bool = Field(True, description="residual connection between bottlenecks")
    expand_act: Literal["relu", "relu6"] = Field("relu6", description="activation of the expansion layer")
    n_neighbors: int = Field(10, ge=1, le=1000, description="k of kNN decoder, trustworthiness, kNN overlap")

    @model_validator(mode="after")
    def _width_holds_manifold(self) -> "RecoverabilityParams":
        from manifold_lab.manifolds import get_manifold

        ambient = get_manifold(self.manifold)(20, random_state=0)[0].shape[1]
        if self.width < ambient:
            raise ValueError(f"width={self.width} is smaller than the dimension of {self.manifold!r} points "
                             f"({ambient}); width must be >= {ambient}")
        if self.n_neighbors >= self.n_samples / 2:  # trustworthiness needs k < n / 2
            raise ValueError(f"n_neighbors={self.n_neighbors} must be < n_samples / 2 = {self.n_samples / 2:g}; "
                             "lower n_neighbors or raise n_samples")
        return self


def estimate_seconds(params: RecoverabilityParams) -> float:
    """CPU seconds of one run, roughly: ``depth * (1.5e-7 N t k^3 + 2e-9 N^2 k)``.

    Per block, the Lemma-2 and collapse checks take the rank of the active rows
    of the ``t k x k`` expansion at each of the ``N = n_samples`` points, and the
    neighbour metrics compare all pairs of points; the constants are the times
    per unit measured on one core of the development machine (k = 8 and 64), rounded up.
    """
    p = params
    n, k, t = p.n_samples, p.width, p.expand_ratio
    return p.depth * (1.5e-7 * n * t * k**3 + 2e-9 * n * n * k)


#: Curves returned per depth; ``final_<name>`` is the value after the last block.
CURVES = (
    "error_linear",
    "error_knn",
    "invertible_fraction",
    "collapsed_fraction",
    "trustworthiness",
    "knn_overlap",
    "twonn_dimension",
)


def run(params: RecoverabilityParams, seed: int, ctx: RunContext) -> dict:
    """Push the embedded manifold through the random stack; measure after every block.

    Returns the per-depth lists ``<curve>`` for every name in ``CURVES`` (entry
    ``l`` after block ``l + 1``), the scalars ``final_<curve>`` at the last
    block, ``input_twonn_dimension`` (of the embedded input) and ``depth``.
    The stack's input ``X_0`` (``N x k``) is centred and scaled to unit RMS norm.
    The collapsed fraction is that of the block's expansion ``ReLU(B x)`` at the
    block's input points (``metrics.collapsed_fraction``) and the invertible
    fraction is Lemma 2's condition on the units in their linear piece
    (``recovery.relu_preimage``; for ReLU6 a unit saturated at 6 counts as inactive).
    """
    from sklearn.utils import check_random_state

    from manifold_lab import geometry, metrics, recovery
    from manifold_lab.manifolds import embed, get_manifold
    from manifold_lab.relu_maps import random_stack

    rng = check_random_state(seed)
    p = params
    X, _t = get_manifold(p.manifold)(p.n_samples, noise=p.noise, random_state=rng)
    X0, _T = embed(X, p.width, kind=p.embedding, random_state=rng)
    # Unit root-mean-square norm, as after a normalisation layer: the generators' scales differ
    # (the spiral reaches radius 8 pi), and ReLU6 would saturate on large inputs.
    X0 = (X0 - X0.mean(axis=0)) / np.sqrt(np.mean(np.sum((X0 - X0.mean(axis=0)) ** 2, axis=1)))
    stack = random_stack(
        p.width, p.depth, p.expand_ratio,
        bottleneck_act=p.bottleneck_act, shortcut=p.shortcut, expand_act=p.expand_act, random_state=rng,
    )
    curves: dict[str, list[float]] = {name: [] for name in CURVES}
    x_in = X0
    for block in ctx.progress(stack.blocks, total=p.depth, desc="blocks"):
        y = block.forward(x_in)
        errors = recovery.reconstruction_errors(X0, y, n_neighbors=p.n_neighbors, random_state=rng)
        curves["error_linear"].append(float(errors["linear"]))
        curves["error_knn"].append(float(errors["knn"]))
        curves["collapsed_fraction"].append(float(metrics.collapsed_fraction(x_in, block.B)))
        z = block.expansion(x_in)
        linear_piece = (z > 0) & (z < 6) if p.expand_act == "relu6" else z > 0
        _, invertible = recovery.relu_preimage(block.B, np.where(linear_piece, z, 0.0))
        curves["invertible_fraction"].append(float(np.mean(invertible)))
        curves["trustworthiness"].append(float(geometry.trustworthiness(X0, y, n_neighbors=p.n_neighbors)))
        curves["knn_overlap"].append(float(geometry.knn_overlap(X0, y, n_neighbors=p.n_neighbors)))
        curves["twonn_dimension"].append(float(geometry.twonn_dimension(y)))
        x_in = y
    out: dict[str, Any] = {"depth": p.depth, "input_twonn_dimension": float(geometry.twonn_dimension(X0))}
    for name, values in curves.items():
        out[name] = values
        out[f"final_{name}"] = values[-1]
    ctx.log.info("recoverability %s k=%d t=%d act=%s shortcut=%s: %s", p.manifold, p.width, p.expand_ratio,
                 p.bottleneck_act, p.shortcut, {k: round(v, 4) for k, v in out.items() if k.startswith("final_")})
    return out


# --------------------------------------------------------------------------- report

_LABELS = {
    "error_linear": "reconstruction error, linear decoder",
    "error_knn": "reconstruction error, kNN decoder",
    "invertible_fraction": "Lemma-2 invertible fraction (expansion)",
    "collapsed_fraction": "collapsed fraction (expansion)",
    "trustworthiness": "trustworthiness vs input",
    "knn_overlap": "kNN overlap with input",
    "twonn_dimension": "TwoNN intrinsic dimension",
}
_UNIT_RANGE = ("invertible_fraction", "collapsed_fraction", "trustworthiness", "knn_overlap")
_ACT_COLOURS = {"identity": "C0", "relu": "C3", "relu6": "C1"}


def curve_bands(runs: Sequence[RunRecord], metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean and 95% interval over runs (seeds) of a per-depth curve, entry by entry.

    Fractions (collapsed / invertible fraction, trustworthiness, kNN overlap: every
    value in [0, 1]) get the bounded interval, the others the t interval.
    Returns ``(depths, mean, lo, hi)`` over the depths every run reached.
    """
    from manifold_lab.stats import describe

    length = min(len(r.metrics[metric]) for r in runs)
    values = np.array([r.metrics[metric][:length] for r in runs], dtype=float)
    fraction = any(w in metric for w in ("fraction", "trustworthiness", "overlap")) and \
        values.size and 0 <= values.min() and values.max() <= 1
    stats = [describe(values[:, i], (0.0, 1.0) if fraction else None) for i in range(length)]
    return np.arange(1, length + 1), *(np.array([s[k] for s in stats]) for k in ("mean", "ci_low", "ci_high"))


def report(ctx: ReportContext) -> list[ReportItem]:
    """One figure per setting of the swept keys other than activation and shortcut.

    Each figure has a panel per metric against depth; a line per (bottleneck
    activation, shortcut), with the 95% t-band over seeds.
    """
    from manifold_lab.io import pyplot, savefig

    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    runs = [r for r in ctx.done_runs if all(name in r.metrics for name in CURVES)]
    if not runs:
        return []
    line_keys = [k for k in ("bottleneck_act", "shortcut") if k in ctx.sweep_keys]
    panel_keys = [k for k in ctx.sweep_keys if k not in line_keys]
    settings = sorted({tuple(r.param(k) for k in panel_keys) for r in runs},
                      key=lambda t: tuple((isinstance(v, str), str(v) if isinstance(v, str) else v) for v in t))
    items = []
    for i, setting in enumerate(settings):
        sub = [r for r in runs if tuple(r.param(k) for k in panel_keys) == setting]
        lines = sorted({(r.param("bottleneck_act"), r.param("shortcut")) for r in sub}, key=str)
        fig, axes = plt.subplots(2, 4, figsize=(16, 7))
        for ax, metric in zip(axes.flat, CURVES):
            for act, shortcut in lines:
                group = [r for r in sub if (r.param("bottleneck_act"), r.param("shortcut")) == (act, shortcut)]
                depth, mean, lo, hi = curve_bands(group, metric)
                colour = _ACT_COLOURS.get(act, "k")
                label = f"{'linear' if act == 'identity' else act} bottleneck, {'shortcut' if shortcut else 'no shortcut'}"
                # relu and relu6 often coincide (ReLU6 rarely reaches 6 here): draw relu wider, underneath.
                ax.plot(depth, mean, "o-" if shortcut else "s--", ms=3, color=colour, label=label,
                        lw=3.5 if act == "relu" else 1.5, alpha=0.6 if act == "relu" else 1.0,
                        zorder=1 if act == "relu" else 2)
                ax.fill_between(depth, lo, hi, color=colour, alpha=0.15)
            ax.set_title(_LABELS[metric], fontsize=9)
            ax.set_xlabel("block")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            # t-bands from few seeds can leave the metric's range; show the range that has meaning.
            if metric in _UNIT_RANGE:
                ax.set_ylim(-0.03, 1.03)
            elif metric.startswith("error_"):
                ax.set_ylim(bottom=0)
        axes.flat[-1].axis("off")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        axes.flat[-1].legend(handles, labels, loc="center", fontsize=9)
        title = panel_label(panel_keys, setting)
        first = sub[0]
        fig.suptitle(f"{first.param('manifold')} in R^{first.param('width')}, t={first.param('expand_ratio')}: {title}", fontsize=11)
        fig.tight_layout()
        name = f"figures/recoverability_{i}.png"
        savefig(fig, ctx.out_dir / name, dpi=110)
        plt.close(fig)
        items.append(ReportItem(
            f"Recoverability vs depth ({title})", figure=name,
            caption="Mean over seeds with 95% t-band. Errors are normalised reconstruction errors of the "
            "stack's input from each block's output (0 = perfect); the invertible and collapsed fractions "
            "are those of each block's expansion layer (Lemma 2); trustworthiness and kNN overlap compare "
            "each block's output with the input manifold.",
        ))
    return items


KIND = Kind(
    name="recoverability",
    description="an embedded manifold through random inverted-residual blocks: recoverability and geometry per depth",
    params=RecoverabilityParams,
    run=run,
    estimate_seconds=estimate_seconds,
    report=report,
    bookkeeping=("depth",),  # the parameter, repeated as a metric
)
