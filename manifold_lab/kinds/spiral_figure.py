"""Experiment kind ``spiral_figure``: the paper's Figure 1 as an experiment.

A 2-D manifold (the spiral by default) is embedded into ``R^n`` by a random
matrix ``T``, passed through ReLU and projected back with ``T^+``, for every
``n`` in ``dims`` (``manifold_lab.figure1``). One run writes the six-panel
figure and its numbers into its run folder; the metrics are, per ``n``, the
collapsed fraction, the Lemma-2 invertible fraction and the reconstruction
errors. Sweep ``manifold`` or ``n_points`` and seeds; the report shows the
figure of the first run of each setting and every metric against ``n`` with
95% intervals over seeds.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from manifold_lab.kinds import Kind, ReportContext, ReportItem, RunContext
from manifold_lab.kinds.recoverability import ManifoldName


class SpiralFigureParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    manifold: ManifoldName = Field("spiral", description="a generator of manifold_lab.manifolds.MANIFOLDS")
    dims: list[int] = Field([2, 3, 5, 15, 30], min_length=1, max_length=64, description="embedding dimensions n")
    n_points: int = Field(2000, ge=20, le=1_000_000, description="points of the manifold (Figure 1 needs >= 20)")

    @field_validator("dims")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(d < 1 or d > MAX_DIM for d in value):
            raise ValueError(f"dims={value} must all be in 1..{MAX_DIM}")
        return value


#: Largest embedding dimension (the paper's Figure 1 goes to 30).
MAX_DIM = 10_000


def estimate_seconds(params: SpiralFigureParams) -> float:
    """CPU seconds of one run, roughly: ``4e-6 * n_points * sum(dims + 50)``.

    Each dimension embeds, applies ReLU and decodes the ``n_points`` points
    (linear, nearest-neighbour and preimage decoders); the constant is the
    time per unit measured on one core of the development machine, rounded up.
    """
    return 4e-6 * params.n_points * sum(d + 50 for d in params.dims)


#: Per-dimension numbers of manifold_lab.figure1 kept as metrics ``<name>_n<dim>``.
FIGURE_METRICS = (
    "collapsed_fraction", "invertible_fraction", "error_pinv", "error_linear", "error_knn", "error_preimage",
)


def run(params: SpiralFigureParams, seed: int, ctx: RunContext) -> dict:
    """Write Figure 1 into the run folder; return its numbers.

    Metrics: ``<name>_n<dim>`` for every ``name`` in ``FIGURE_METRICS`` and
    every ``dim`` in ``dims``, plus ``figure`` (the PNG's file name in the run
    folder, for the report).
    """
    from manifold_lab.figure1 import write_figure1

    result = write_figure1(
        ctx.run_dir, dims=params.dims, manifold=params.manifold, n_points=params.n_points, random_state=seed
    )
    metrics: dict = {"figure": result["png"].name}
    for row in result["rows"]:
        for name in FIGURE_METRICS:
            metrics[f"{name}_n{row['dim']}"] = float(row[name])
    return metrics


def report(ctx: ReportContext) -> list[ReportItem]:
    """The figure of the first done run per setting, and every metric vs n with 95% t-intervals."""
    from manifold_lab.io import pyplot, savefig, write_bytes
    from manifold_lab.stats import describe

    plt = pyplot()

    runs = [r for r in ctx.done_runs if "figure" in r.metrics]
    if not runs:
        return []
    items: list[ReportItem] = []
    keys = list(ctx.sweep_keys)
    settings = sorted({tuple(str(r.param(k)) for k in keys) for r in runs})
    for i, setting in enumerate(settings):
        sub = [r for r in runs if tuple(str(r.param(k)) for k in keys) == setting]
        first = sub[0]
        label = ", ".join(f"{k}={v}" for k, v in zip(keys, setting)) or first.param("manifold")
        src = first.run_dir / first.metrics["figure"]
        if src.exists():
            target = ctx.out_dir / "figures" / f"figure1_{i}_seed{first.seed}.png"
            write_bytes(target, src.read_bytes())
            items.append(ReportItem(
                f"Figure 1 ({label}, seed {first.seed})", figure=str(target.relative_to(ctx.out_dir)),
                caption="Input manifold, then T^+ ReLU(T x) for each embedding dimension n; each panel gives its "
                "collapsed fraction, Lemma-2 invertible fraction and reconstruction errors.",
            ))
        dims = first.param("dims")
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for name, ax in zip(FIGURE_METRICS, [axes[0], axes[0], axes[1], axes[1], axes[1], axes[1]]):
            bounds = (0.0, 1.0) if name.endswith("fraction") else None  # fractions: intervals inside [0, 1]
            stats = [describe([r.metrics[f"{name}_n{d}"] for r in sub if f"{name}_n{d}" in r.metrics], bounds)
                     for d in dims]
            mean = [s["mean"] for s in stats]
            # Intervals from few seeds can leave the metric's range: clip them to it for display
            # (errors are drawn on a log axis, fractions lie in [0, 1]).
            floor = 0.0 if ax is axes[0] else 1e-6
            ax.errorbar(dims, mean, yerr=[[max(0.0, m - max(s["ci_low"], floor)) if s["n"] > 1 else 0 for m, s in zip(mean, stats)],
                                          [s["ci_high"] - m if s["n"] > 1 else 0 for m, s in zip(mean, stats)]],
                        fmt="o-", capsize=3, label=name.replace("_", " "))
        for ax, ylabel in zip(axes, ("fraction of points", "normalised reconstruction error")):
            ax.set_xscale("log")
            ax.set_xticks(dims, [str(d) for d in dims])
            ax.minorticks_off()
            ax.set_xlabel("embedding dimension n")
            ax.set_ylabel(ylabel)
            ax.legend(fontsize=8)
        axes[0].set_ylim(-0.03, 1.03)
        axes[1].set_yscale("log")
        fig.suptitle(f"Figure 1 numbers vs n ({label}; mean over {len(sub)} seed(s), 95% t-interval)", fontsize=10)
        fig.tight_layout()
        name = f"figures/figure1_numbers_{i}.png"
        savefig(fig, ctx.out_dir / name, dpi=120)
        plt.close(fig)
        items.append(ReportItem(f"Collapse and recoverability vs n ({label})", figure=name))
    return items


KIND = Kind(
    name="spiral_figure",
    description="Figure 1: a 2-D manifold embedded in R^n, ReLU, projected back; collapse at small n",
    params=SpiralFigureParams,
    run=run,
    estimate_seconds=estimate_seconds,
    report=report,
    # Figure 1's claim: collapse at n = 2, 3, none at n = 15, 30 (those present lead the report)
    headline=tuple(f"collapsed_fraction_n{n}" for n in (2, 3, 15, 30)),
)
