"""Experiment kind ``collapse_theorem``: Theorem 1's kept fraction, Monte Carlo vs closed form.

For ``f_B(x) = ReLU(Bx)`` with ``B`` an ``m x n`` Gaussian matrix and ``S`` the
unit ball of ``R^n``, Theorem 1 (Appendix A) gives the expected share of ``S``
that ``f_B`` does *not* collapse as ``N_{m,n} / 2^m = P(Binomial(m, 1/2) >= n)``
(``manifold_lab.theory.kept_fraction``). One run estimates it for one
``(m, n)`` by Monte Carlo over ``n_matrices`` draws of ``B`` with ``n_points``
points each (a point is kept when the rows of ``B`` active there have rank
``n``, ``manifold_lab.metrics``). Sweep ``m`` and ``n``; the report plots the
estimates against the theory curves.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from manifold_lab.kinds import Kind, ReportContext, ReportItem, RunContext


class CollapseTheoremParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    m: int = Field(8, ge=1, le=1000, description="rows of B (output units)")
    n: int = Field(2, ge=1, le=100, description="input dimension (S is the unit ball of R^n)")
    n_matrices: int = Field(200, ge=2, le=1_000_000, description="Monte Carlo draws of B")
    n_points: int = Field(200, ge=1, le=1_000_000, description="points of S per draw")


def estimate_seconds(params: CollapseTheoremParams) -> float:
    """CPU seconds of one run, roughly: ``5e-8 * n_matrices * n_points * m * n * (n + 1)``.

    Each draw finds the active rows at every point (``m n`` per point) and the rank
    of each distinct active pattern (at most one per point, ``m n^2`` each); the
    constant is the time per unit measured on one core of the development machine
    (4e-8 to 1.4e-7 s at m = 8-200, n = 2-50), rounded up.
    """
    p = params
    return 5e-8 * p.n_matrices * p.n_points * p.m * p.n * (p.n + 1)


def run(params: CollapseTheoremParams, seed: int, ctx: RunContext) -> dict:
    """Monte Carlo kept fraction for one ``(m, n)`` and the closed form.

    Returns ``kept_fraction_mc`` (mean over draws of B of the kept share of the
    points), ``standard_error`` (standard deviation over draws / sqrt(draws)),
    ``kept_fraction_theory`` (``kept_fraction(m, n)`` exactly), ``difference``
    (MC - theory) and ``z_score`` (difference / standard error; 0 when the
    draws have no spread, as for ``m < n`` where nothing is kept).
    """
    from manifold_lab.metrics import estimate_kept_fraction
    from manifold_lab.theory import kept_fraction

    p = params
    est = estimate_kept_fraction(
        p.m, p.n, n_matrices=p.n_matrices, n_points=p.n_points, random_state=seed
    )
    mc, se = float(est[0]), float(est[1])
    theory = float(kept_fraction(p.m, p.n))
    diff = mc - theory
    return {
        "kept_fraction_mc": mc,
        "standard_error": se,
        "kept_fraction_theory": theory,
        "difference": diff,
        "z_score": diff / se if se > 0 else 0.0,
    }


def report(ctx: ReportContext) -> list[ReportItem]:
    """Kept fraction vs m, one colour per n: theory as a line, Monte Carlo with 2 standard errors."""
    from manifold_lab.io import pyplot, savefig
    from manifold_lab.theory import kept_fraction

    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    runs = ctx.done_runs
    if not runs:
        return []
    ns = sorted({r.param("n") for r in runs})
    ms = sorted({r.param("m") for r in runs})
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    grid = np.arange(1, max(ms) + 1)
    for i, n in enumerate(ns):
        colour = f"C{i % 10}"
        ax.plot(grid, [kept_fraction(int(m), int(n)) for m in grid], "-", color=colour, lw=1, label=f"theory n={n}")
        sub = [r for r in runs if r.param("n") == n]
        ax.errorbar(
            [r.param("m") for r in sub], [r.metrics["kept_fraction_mc"] for r in sub],
            yerr=[2 * r.metrics["standard_error"] for r in sub], fmt="o", ms=4, color=colour, capsize=2,
        )
    ax.set_xlabel("m (rows of B)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("kept (non-collapsed) fraction")
    ax.set_title("Theorem 1: N_{m,n}/2^m (lines) vs Monte Carlo (points, +-2 SE)", fontsize=10)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    savefig(fig, ctx.out_dir / "figures" / "kept_fraction.png", dpi=120)
    plt.close(fig)

    rows = ["| m | n | Monte Carlo | SE | theory | z | seeds |", "|---|---|---|---|---|---|---|"]
    worst = 0.0
    for n in ns:
        for m in ms:
            sub = [r for r in runs if (r.param("m"), r.param("n")) == (m, n)]
            if sub:
                worst = max(worst, *(abs(r.metrics["z_score"]) for r in sub))
                mc = np.mean([r.metrics["kept_fraction_mc"] for r in sub])
                se = np.sqrt(np.sum([r.metrics["standard_error"] ** 2 for r in sub])) / len(sub)
                th = sub[0].metrics["kept_fraction_theory"]
                z = (mc - th) / se if se > 0 else 0.0
                rows.append(f"| {m} | {n} | {mc:.4f} | {se:.4f} | {th:.4f} | {z:+.2f} | {len(sub)} |")
    rows += ["", f"Largest |z| over all runs: {worst:.2f} (|z| <= 3 expected for nearly every run if Theorem 1 holds)."]
    return [
        ReportItem("Kept fraction: Monte Carlo vs Theorem 1", figure="figures/kept_fraction.png",
                   caption="Points uniform in the unit ball of R^n, B with i.i.d. N(0, 1) entries; a point is kept "
                   "when the rows of B active there have rank n. Lines: N_{m,n}/2^m."),
        ReportItem("Kept fraction per (m, n), seeds pooled", markdown="\n".join(rows)),
    ]


KIND = Kind(
    name="collapse_theorem",
    description="Theorem 1: Monte Carlo kept fraction of ReLU(Bx) on the n-ball vs N_{m,n}/2^m",
    params=CollapseTheoremParams,
    run=run,
    report=report,
    estimate_seconds=estimate_seconds,
    bookkeeping=("kept_fraction_theory",),  # the closed form: no spread over seeds
    headline=("kept_fraction_mc", "kept_fraction_theory", "z_score"),
)
