"""The runs of a results folder grouped by grid point, with their statistics over seeds.

``aggregate(root)`` reads ``spec.yaml``, ``plan.json`` and ``runs/*`` (nothing
else), so it works after a cluster array job or on a committed ``results/<name>``.
A grid point's row holds, for every numeric scalar metric, ``<metric>_mean``,
``_std`` (ddof=1), ``_ci_low``, ``_ci_high`` (95% t interval, bounded for a
fraction) and ``_n`` over its done runs (``manifold_lab.stats.describe``); a
comparison row the paired comparison of B - A over the seeds both values of a
factor have done (``manifold_lab.stats.paired``), oriented as the spec's
``contrast`` declares, a fraction's in percent and points.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from manifold_lab.execution.store import ResultsStore
from manifold_lab.kinds import RunRecord, get_kind
from manifold_lab.reporting.cells import is_number, natural_key
from manifold_lab.spec.sweep import canonical_json
from manifold_lab.stats import describe, paired

__all__ = ["BOOKKEEPING", "STATS", "Aggregate", "aggregate", "numeric_metrics"]

#: The statistics of each metric in a summary row (``summary.csv`` columns ``<metric>_<stat>``).
STATS = ("mean", "std", "ci_low", "ci_high", "n")
#: The columns of a comparison row given in percent / points for a fraction (``Aggregate.scale``).
SCALED = ("mean_a", "mean_b", "mean_diff", "diff_ci_low", "diff_ci_high")


def _sample(records: Sequence[RunRecord | None], metric: str) -> list:
    """The numeric values of ``metric`` over the done runs among ``records``."""
    return [r.metrics[metric] for r in records if r is not None and r.ok and is_number(r.metrics.get(metric))]


def numeric_metrics(records: Sequence[RunRecord]) -> list[str]:
    """Names of the numeric scalar metrics of the done runs, numbers in names sorted by value."""
    names: dict[str, None] = {}
    for r in records:
        if r.ok:
            names.update((k, None) for k, v in r.metrics.items() if is_number(v))
    return sorted(names, key=natural_key)


#: Metrics that describe a run rather than answer a question, for every kind
#: (each kind adds its own, ``Kind.bookkeeping``): summarized, not compared.
BOOKKEEPING = ("params", "epochs", "images_per_s", "seconds")
#: Metric names that are fractions in [0, 1] (when every value is): intervals stay inside.
_BOUNDED_NAME = re.compile(r"(^|_)(acc|accuracy|fraction|trustworthiness|overlap)(_|$)")


class Aggregate:
    """The runs of a results folder grouped by grid point, with their statistics.

    Attributes
    ----------
    spec : dict
        ``spec.yaml`` plus ``runs`` from ``plan.json``.
    sweep : dict[str, list]
        Swept dotted path -> values (spec order).
    records : list of RunRecord or None
        One per planned run, None for a pending (not run / interrupted) run.
    metrics : list of str
        Numeric scalar metrics.
    """

    def __init__(self, root: str | Path) -> None:
        self.store = ResultsStore(root)
        self.spec = self.store.read_spec()
        self.sweep: dict[str, list] = {k: v for k, v in (self.spec.get("sweep") or {}).items() if k != "seeds"}
        self.plan: list[dict] = self.spec["runs"]
        self.records: list[RunRecord | None] = [self.store.record(r) for r in self.plan]
        self.metrics = numeric_metrics([r for r in self.records if r is not None])
        try:
            self.kind = get_kind(self.spec["kind"])
            kind_bookkeeping, kind_headline = self.kind.bookkeeping, self.kind.headline
        except ValueError:  # a kind that is not installed here: the tables still work
            self.kind, kind_bookkeeping, kind_headline = None, (), ()
        self.bookkeeping = [m for m in self.metrics if m in (*BOOKKEEPING, *kind_bookkeeping)]
        self.compared = [m for m in self.metrics if m not in self.bookkeeping]
        #: the metrics a report without a contrast opens with
        self.lead = [m for m in kind_headline if m in self.metrics] or self.compared[:3]
        #: metric -> (0, 1) for the fractions (by name, every value inside [0, 1]).
        self.bounds = {m: (0.0, 1.0) for m in self.metrics
                       if _BOUNDED_NAME.search(m) and (v := _sample(self.records, m)) and 0 <= min(v) and max(v) <= 1}
        self.contrast: dict | None = self.spec.get("contrast") or None
        self._comparisons: list[dict] | None = None
        #: grid point key -> its planned runs
        self.points: dict[str, list[dict]] = {}
        for run in self.plan:
            self.points.setdefault(self._key(run["sweep_values"]), []).append(run)

    def _key(self, values: dict) -> str:
        return canonical_json([values.get(k) for k in self.sweep])

    def by_seed(self, values: dict) -> dict[int, RunRecord]:
        """Done runs of the grid point ``values``, by seed."""
        return {run["seed"]: r for run in self.points.get(self._key(values), [])
                if (r := self.records[run["index"]]) is not None and r.ok}

    # ----------------------------------------------------------------- tables
    def summary_rows(self) -> list[dict]:
        rows = []
        for runs in self.points.values():
            records = [self.records[r["index"]] for r in runs]
            row: dict[str, Any] = {**{k: runs[0]["sweep_values"][k] for k in self.sweep}, "runs": len(runs),
                                   "done": sum(r is not None and r.ok for r in records),
                                   "failed": sum(r is not None and not r.ok for r in records)}
            for metric in self.metrics:
                stats = describe(_sample(records, metric), self.bounds.get(metric))
                row.update({f"{metric}_{s}": v for s, v in stats.items()})
            rows.append(row)
        return rows

    def scale(self, metric: str) -> float:
        """100 for a fraction in [0, 1] (shown in percent, its differences in points), else 1."""
        return 100.0 if metric in self.bounds else 1.0

    def _oriented(self, factor: str, a: Any, b: Any) -> tuple[Any, Any]:
        """``(a, b)``, swapped when they are the contrast's two values in the other order, so that every
        table says ``contrast.b - contrast.a`` (the orientation the study declares)."""
        c = self.contrast
        if c and c["factor"] == factor and canonical_json([b, a]) == canonical_json([c["a"], c["b"]]):
            return b, a
        return a, b

    def comparison_rows(self) -> list[dict]:
        """Paired comparisons ``B - A`` (``comparisons.csv``): every pair of values of each swept factor
        (spec order; the contrast's pair as declared) at each setting of the others, for each compared
        metric. A fraction's means and differences are in percent / points (``unit``). Computed once."""
        if self._comparisons is not None:
            return self._comparisons
        rows = []
        for factor, levels in self.sweep.items():
            if len(levels) < 2:
                continue
            others = [k for k in self.sweep if k != factor]
            for fixed in itertools.product(*(self.sweep[k] for k in others)):
                context = dict(zip(others, fixed))
                for a, b in (self._oriented(factor, *pair) for pair in itertools.combinations(levels, 2)):
                    runs_a = self.by_seed({**context, factor: a})
                    runs_b = self.by_seed({**context, factor: b})
                    seeds = sorted(set(runs_a) & set(runs_b))
                    for metric in self.compared:
                        shared = [s for s in seeds if is_number(runs_a[s].metrics.get(metric))
                                  and is_number(runs_b[s].metrics.get(metric))]
                        row: dict[str, Any] = {
                            "factor": factor, "value_a": a, "value_b": b,
                            **{k: context.get(k, "") for k in self.sweep}, "metric": metric,
                            **paired([runs_a[s].metrics[metric] for s in shared],
                                     [runs_b[s].metrics[metric] for s in shared], self.bounds.get(metric))}
                        scale = self.scale(metric)
                        row.update({k: row[k] * scale for k in SCALED})
                        row["unit"] = "percent, difference in points" if scale != 1 else ""
                        rows.append(row)
        self._comparisons = rows
        return rows


def aggregate(root: str | Path) -> Aggregate:
    """Read a results folder (see ``Aggregate``)."""
    return Aggregate(root)
