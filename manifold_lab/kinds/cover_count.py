"""Experiment kind ``cover_count``: Cover's function counting, counted exactly (an external check, issue 12).

Cover (1965): ``m`` hyperplanes through the origin of ``R^n`` in general
position cut it into ``C(m, n) = 2 sum_{k<n} C(m-1, k)`` regions, so
``ReLU(Bx)`` with ``B`` (m x n) Gaussian has exactly that many activation
patterns. One run draws ``n_matrices`` matrices ``B`` and counts their regions
exactly, without sampling points (``manifold_lab.arrangements.region_patterns``:
incremental enumeration with linear programs; for ``n = 2`` also the angular
sweep ``sector_patterns``). Sweep ``m`` and ``n``; the report tables counts
against the formula.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from manifold_lab.kinds import Kind, ReportContext, ReportItem, RunContext


class CoverCountParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    m: int = Field(6, ge=1, le=24, description="hyperplanes (rows of B)")
    n: int = Field(2, ge=1, le=6, description="dimension of the space (columns of B)")
    n_matrices: int = Field(3, ge=1, le=100, description="Gaussian matrices B counted")


def run(params: CoverCountParams, seed: int, ctx: RunContext) -> dict:
    """``regions_min`` / ``regions_max`` over the draws, ``cover`` (the formula), ``exact_matches`` (draws equal to it).

    For ``n = 2`` also ``sweep_matches``: draws whose angular-sweep patterns are
    exactly the LP enumeration's.
    """
    import numpy as np

    from manifold_lab.arrangements import cover_count, region_patterns, sector_patterns

    p = params
    rng = np.random.RandomState(seed)
    counts, sweep_ok = [], 0
    for _ in range(p.n_matrices):
        B = rng.standard_normal((p.m, p.n))
        patterns = region_patterns(B)
        counts.append(len(patterns))
        if p.n == 2:
            sweep = sector_patterns(B)
            sweep_ok += int({r.tobytes() for r in sweep} == {r.tobytes() for r in patterns})
    cover = cover_count(p.m, p.n)
    out = {"cover": cover, "regions_min": min(counts), "regions_max": max(counts),
           "exact_matches": sum(c == cover for c in counts), "draws": p.n_matrices}
    if p.n == 2:
        out["sweep_matches"] = sweep_ok
    return out


def report(ctx: ReportContext) -> list[ReportItem]:
    runs = ctx.done_runs
    if not runs:
        return []
    rows = ["| n | m | Cover C(m, n) | regions counted (min to max over draws) | draws equal to C(m, n) | "
            "n = 2: angular sweep = LP enumeration |", "|---|---|---|---|---|---|"]
    total = matched = 0
    for r in sorted(runs, key=lambda r: (r.param("n"), r.param("m"), r.seed)):
        mt = r.metrics
        total += mt["draws"]
        matched += mt["exact_matches"]
        sweep = f"{mt['sweep_matches']}/{mt['draws']}" if "sweep_matches" in mt else "-"
        rows.append(f"| {r.param('n')} | {r.param('m')} | {mt['cover']} | {mt['regions_min']} to {mt['regions_max']} | "
                    f"{mt['exact_matches']}/{mt['draws']} | {sweep} |")
    verdict = ("every draw" if matched == total else f"{matched} of {total} draws")
    return [ReportItem("Regions of ReLU(Bx) counted exactly vs Cover's C(m, n)", markdown="\n".join(rows) + (
        f"\n\nCounted by incremental region enumeration with linear programs (no sampled points): "
        f"{verdict} of Gaussian B gave exactly Cover's count."))]


KIND = Kind(
    name="cover_count",
    description="Cover (1965): activation patterns of ReLU(Bx) counted exactly vs C(m,n) = 2 sum_{k<n} C(m-1,k)",
    params=CoverCountParams,
    run=run,
    report=report,
)
