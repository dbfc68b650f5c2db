"""Experiment kind ``relu_injectivity``: global injectivity of Gaussian ReLU layers vs expansivity (issue 12).

Puthawala et al. (JMLR 2022) show that ``x -> ReLU(Wx)`` with ``W`` (m x n)
i.i.d. Gaussian is globally injective with high probability once the
expansivity ``m / n`` exceeds about 10.5, and with vanishing probability below
about 3.4, asymptotically in ``n``; deterministically it needs ``m >= 2n``. A
layer is injective iff for every ``x`` the rows active at ``x`` span ``R^n``;
with rows in general position, iff every open half-space ``{b . x > 0}``
holds at least ``n`` rows. One run draws ``n_matrices`` matrices for one
``(n, ratio)`` and decides each exactly (``manifold_lab.arrangements.is_injective``:
the minimum over all directions of the active-row count, attained next to a
vertex ray where ``n - 1`` hyperplanes meet; for ``n = 2`` this is the angular
sweep). Sweep ``n`` and ``ratio``; the report plots the probability of
injectivity against ``m / n`` with the window [3.4, 10.5] shaded.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from manifold_lab.kinds import Kind, ReportContext, ReportItem, RunContext

WINDOW = (3.4, 10.5)

SMALL_N = (
    "Puthawala et al.'s window is a statement about n -> infinity: below about 3.4 a Gaussian layer is "
    "injective with probability tending to 0, above about 10.5 with probability tending to 1. At n = 2 to 4 "
    "every draw is decided exactly, so the curves are exact probabilities up to Monte Carlo error over draws "
    "(the Wilson bands), but they cannot locate an asymptotic threshold: at fixed m / n the probability moves "
    "with n, and the transition is wide at small n. What they can show: (1) the deterministic necessary "
    "condition m >= 2n (no draw with m < 2n is injective, tests/test_arrangements.py; Gaussian draws at m = 2n "
    "are not injective either, since that needs the rows in antipodal pairs); (2) the direction in which the "
    "transition moves as n grows, and whether it moves towards the window; (3) that at small n the layer can "
    "be injective well below 3.4 with non-negligible probability, so the lower end of the window is not a "
    "finite-n bound. Going beyond n = 4 needs either many more vertex rays (C(m, n - 1) of them per draw) or "
    "a search that can only certify non-injectivity (finding a direction with fewer than n active rows), not "
    "injectivity."
)


class InjectivityParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = Field(2, ge=1, le=6, description="input dimension")
    ratio: float = Field(4.0, ge=1.0, le=20.0, description="expansivity m / n (m = round(ratio * n))")
    n_matrices: int = Field(200, ge=2, le=100_000, description="Gaussian draws of W")


def run(params: InjectivityParams, seed: int, ctx: RunContext) -> dict:
    """``p_injective`` (share of draws injective), its Wilson 95% interval, ``m`` and ``min_active_mean``."""
    import numpy as np
    from scipy.stats import binomtest

    from manifold_lab.arrangements import min_active_rows

    p = params
    m = int(round(p.ratio * p.n))
    rng = np.random.RandomState(seed)
    mins = np.array([min_active_rows(rng.standard_normal((m, p.n))) for _ in range(p.n_matrices)])
    k = int((mins >= p.n).sum())
    ci = binomtest(k, p.n_matrices).proportion_ci(method="wilson")
    return {"m": m, "ratio_exact": m / p.n, "p_injective": k / p.n_matrices, "ci_low": float(ci.low),
            "ci_high": float(ci.high), "injective_draws": k, "min_active_mean": float(mins.mean())}


def transition(points: list[tuple[float, float]]) -> float | None:
    """The ratio where ``p_injective`` first reaches 1/2 (linear interpolation between sweep points), or None."""
    points = sorted(points)
    for (r0, p0), (r1, p1) in zip(points, points[1:]):
        if p0 < 0.5 <= p1:
            return r0 + (0.5 - p0) * (r1 - r0) / (p1 - p0)
    return None


def report(ctx: ReportContext) -> list[ReportItem]:
    from manifold_lab.io import pyplot, savefig

    plt = pyplot()

    runs = ctx.done_runs
    if not runs:
        return []
    ns = sorted({r.param("n") for r in runs})
    fig, ax = plt.subplots(figsize=(6.6, 4.2))
    ax.axvspan(*WINDOW, color="0.85", label="Puthawala et al.: asymptotic window [3.4, 10.5]")
    ax.axvline(2.0, color="k", ls=":", lw=1, label="m = 2n (necessary for any W)")
    rows = ["| n | m / n | m | P(injective) | 95% interval (Wilson) | draws | mean min active rows |",
            "|---|---|---|---|---|---|---|"]
    half = ["| n | m / n where P(injective) reaches 1/2 |", "|---|---|"]
    for i, n in enumerate(ns):
        sub = sorted((r for r in runs if r.param("n") == n), key=lambda r: r.metrics["ratio_exact"])
        x = [r.metrics["ratio_exact"] for r in sub]
        y = [r.metrics["p_injective"] for r in sub]
        ax.plot(x, y, "o-", color=f"C{i}", ms=4, label=f"n = {n} (exact per draw)")
        ax.fill_between(x, [r.metrics["ci_low"] for r in sub], [r.metrics["ci_high"] for r in sub],
                        color=f"C{i}", alpha=0.2)
        for r in sub:
            mt = r.metrics
            rows.append(f"| {n} | {mt['ratio_exact']:.2f} | {mt['m']} | {mt['p_injective']:.3f} | "
                        f"[{mt['ci_low']:.3f}, {mt['ci_high']:.3f}] | {r.param('n_matrices')} | {mt['min_active_mean']:.2f} |")
        t = transition(list(zip(x, y)))
        half.append(f"| {n} | {'not reached in the sweep' if t is None else f'{t:.2f}'} |")
    ax.set_xlabel("expansivity m / n")
    ax.set_ylabel("P(ReLU(Wx) globally injective)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    ax.set_title("Global injectivity of Gaussian ReLU layers vs expansivity", fontsize=10)
    fig.tight_layout()
    savefig(fig, ctx.out_dir / "figures" / "injectivity.png", dpi=120)
    plt.close(fig)
    return [
        ReportItem("Probability of global injectivity vs m / n", figure="figures/injectivity.png",
                   caption="W with i.i.d. N(0, 1) entries; each draw decided exactly (minimum active-row count over "
                   "all directions, from the vertex rays of the arrangement); band: Wilson 95% interval. Shaded: "
                   "the window in which Puthawala et al. (2022) place the asymptotic threshold."),
        ReportItem("Where the transition lies", markdown="\n".join(half)),
        ReportItem("What small n can and cannot show", markdown=SMALL_N),
        ReportItem("Every point", markdown="\n".join(rows)),
    ]


KIND = Kind(
    name="relu_injectivity",
    description="Puthawala et al. 2022: probability that a Gaussian ReLU layer is globally injective vs m/n, exact per draw",
    params=InjectivityParams,
    run=run,
    report=report,
)
