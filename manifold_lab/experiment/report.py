"""Aggregate a results folder into ``summary.csv``, ``comparisons.csv`` and ``report.md``.

Works from the files alone (``spec.yaml``, ``plan.json``, ``runs/*``), so it can
run after a cluster array job: ``manifold-lab report results/<name>``.

``summary.csv``
    One row per grid point, in plan order: the swept values, ``runs`` (planned
    seeds), ``done``, ``failed``, then for every numeric scalar metric
    ``<metric>_mean``, ``_std`` (ddof=1), ``_ci_low``, ``_ci_high`` (95% t
    interval) and ``_n`` over the point's done runs (``manifold_lab.experiment.stats``).
``comparisons.csv``
    For each swept factor with two or more values, each setting of the other
    factors, each pair of its values A < B (spec order) and each metric: the
    paired comparison of B - A over the seeds both have done (mean difference
    and 95% interval, paired t-test, Wilcoxon signed-rank test).
``report.md``
    The command that regenerates it, the summary and comparison tables, the
    kind's own figures and tables, every run with its status, and the error of
    every failed run. Every number comes from the files; none is typed by hand.
"""

from __future__ import annotations

import csv
import io as _stdio
import itertools
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from manifold_lab import io
from manifold_lab.experiment.stats import describe, paired
from manifold_lab.experiment.store import ResultsStore
from manifold_lab.experiment.sweep import canonical_json, format_value, format_values
from manifold_lab.kinds import Kind, ReportContext, RunRecord, get_kind

__all__ = ["Aggregate", "aggregate", "write_report"]

_STATS = ("mean", "std", "ci_low", "ci_high", "n")
_MD_MAX_ROWS = 200


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def numeric_metrics(records: Sequence[RunRecord]) -> list[str]:
    """Names of the numeric scalar metrics of the done runs, in first-seen order."""
    names: dict[str, None] = {}
    for r in records:
        if r.ok:
            names.update((k, None) for k, v in r.metrics.items() if _is_number(v))
    return list(names)


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
        self.sweep: dict[str, list] = {
            k: v for k, v in (self.spec.get("sweep") or {}).items() if k != "seeds"
        }
        self.plan: list[dict] = self.spec["runs"]
        self.records: list[RunRecord | None] = [self.store.record(r) for r in self.plan]
        self.metrics = numeric_metrics([r for r in self.records if r is not None])
        # grid point key -> {seed: record}
        self.points: dict[str, list[dict]] = {}
        for run in self.plan:
            self.points.setdefault(self._key(run["sweep_values"]), []).append(run)

    def _key(self, values: dict) -> str:
        return canonical_json([values.get(k) for k in self.sweep])

    def by_seed(self, values: dict) -> dict[int, RunRecord]:
        """Done runs of the grid point ``values``, by seed."""
        out = {}
        for run in self.points.get(self._key(values), []):
            record = self.records[run["index"]]
            if record is not None and record.ok:
                out[run["seed"]] = record
        return out

    # ----------------------------------------------------------------- tables
    def summary_rows(self) -> list[dict]:
        rows = []
        for runs in self.points.values():
            values = runs[0]["sweep_values"]
            records = [self.records[r["index"]] for r in runs]
            row: dict[str, Any] = {k: values[k] for k in self.sweep}
            row["runs"] = len(runs)
            row["done"] = sum(1 for r in records if r is not None and r.ok)
            row["failed"] = sum(1 for r in records if r is not None and not r.ok)
            for metric in self.metrics:
                sample = [r.metrics[metric] for r in records if r is not None and r.ok and _is_number(r.metrics.get(metric))]
                row.update({f"{metric}_{s}": v for s, v in describe(sample).items()})
            rows.append(row)
        return rows

    def comparison_rows(self) -> list[dict]:
        rows = []
        for factor, levels in self.sweep.items():
            if len(levels) < 2:
                continue
            others = [k for k in self.sweep if k != factor]
            for fixed in itertools.product(*(self.sweep[k] for k in others)):
                context = dict(zip(others, fixed))
                for a, b in itertools.combinations(levels, 2):
                    runs_a = self.by_seed({**context, factor: a})
                    runs_b = self.by_seed({**context, factor: b})
                    seeds = sorted(set(runs_a) & set(runs_b))
                    for metric in self.metrics:
                        shared = [
                            s for s in seeds
                            if _is_number(runs_a[s].metrics.get(metric))
                            and _is_number(runs_b[s].metrics.get(metric))
                        ]
                        result = paired(
                            [runs_a[s].metrics[metric] for s in shared],
                            [runs_b[s].metrics[metric] for s in shared],
                        )
                        row: dict[str, Any] = {"factor": factor, "value_a": a, "value_b": b}
                        row.update({k: context.get(k, "") for k in self.sweep})
                        row["metric"] = metric
                        row.update(result)
                        rows.append(row)
        return rows


def aggregate(root: str | Path) -> Aggregate:
    """Read a results folder (see ``Aggregate``)."""
    return Aggregate(root)


# --------------------------------------------------------------------------- formatting


def _csv_cell(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)  # full precision; "nan" for undefined
    if isinstance(value, (list, dict)) or value is None:
        return "" if value is None else canonical_json(value)
    return str(value)


def to_csv(rows: list[dict], columns: Sequence[str]) -> str:
    buffer = _stdio.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(row.get(c)) for c in columns])
    return buffer.getvalue()


def _num(value: Any) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]], limit: int | None = None) -> str:
    """A markdown table; with ``limit``, at most that many rows and a pointer to the CSV."""
    lines = ["| " + " | ".join(_md_escape(str(h)) for h in header) + " |"]
    lines.append("|" + "---|" * len(header))
    for row in rows[:limit]:
        lines.append("| " + " | ".join(_md_escape(_cell(v)) for v in row) + " |")
    if limit is not None and len(rows) > limit:
        lines.append(f"\n({len(rows) - limit} more rows in the CSV file)")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _num(value)
    return format_value(value) if not isinstance(value, str) else value


# --------------------------------------------------------------------------- report


def _odd_runs(done: Sequence[RunRecord]) -> list[str]:
    """Ids of the done runs whose metric names and JSON types differ from those most runs share."""
    def signature(r: RunRecord) -> tuple:
        return tuple(sorted((k, "number" if _is_number(v) else type(v).__name__) for k, v in r.metrics.items()))

    counts = Counter(signature(r) for r in done)
    if len(counts) < 2:
        return []
    (common, n), (_, m) = counts.most_common(2)
    return [r.run_id for r in done if signature(r) != common] if n > m else []


def _kind_items(agg: Aggregate, kind: Kind | None, out_dir: Path) -> tuple[list[str], str | None]:
    """The kind's report section as markdown lines, and an error line if it failed."""
    name = agg.spec["kind"]
    try:
        kind = kind or get_kind(name)
    except ValueError as exc:
        return [f"_The kind's figures are missing: {exc}_"], str(exc)
    if kind.report is None:
        return [], None
    runs = [r for r in agg.records if r is not None]
    ctx = ReportContext(name=agg.spec["name"], out_dir=out_dir, runs=runs, sweep_keys=list(agg.sweep))
    try:
        items = kind.report(ctx)
    except Exception as exc:  # a broken figure must not lose the tables
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        odd = _odd_runs(ctx.done_runs)
        if odd:
            error += f" (the metrics.json of run {', '.join(odd)} differs in its keys or types from the others')"
        return [f"_The kind's report failed: {_md_escape(error)}_"], error
    lines: list[str] = []
    for item in items:
        lines += [f"### {item.title}", ""]
        if item.figure is not None:
            lines.append(f"![{_md_escape(item.caption or item.title)}]({Path(item.figure).as_posix()})")
            if item.caption:
                lines += ["", f"*{item.caption}*"]
        else:
            lines.append(item.markdown or "")
        lines.append("")
    return lines, None


def write_report(root: str | Path, kind: Kind | None = None) -> tuple[Path, str | None]:
    """Write ``summary.csv``, ``comparisons.csv`` and ``report.md`` into ``root``.

    Returns the path of ``report.md`` and the error of the kind's report hook
    (None when it worked).
    """
    from manifold_lab.experiment.spec import display_path

    agg = aggregate(root)
    out = agg.store.root
    sweep_keys = list(agg.sweep)
    summary = agg.summary_rows()
    summary_cols = [*sweep_keys, "runs", "done", "failed"] + [
        f"{m}_{s}" for m in agg.metrics for s in _STATS
    ]
    io.write_text(out / "summary.csv", to_csv(summary, summary_cols))
    comparisons = agg.comparison_rows()
    comparison_cols = ["factor", "value_a", "value_b", *sweep_keys, "metric", "n", "mean_a", "mean_b",
                       "mean_diff", "diff_ci_low", "diff_ci_high", "t_stat", "t_pvalue",
                       "wilcoxon_stat", "wilcoxon_pvalue", "note"]
    io.write_text(out / "comparisons.csv", to_csv(comparisons, comparison_cols))

    spec = agg.spec
    records = agg.records
    n_done = sum(1 for r in records if r is not None and r.ok)
    n_failed = sum(1 for r in records if r is not None and not r.ok)
    n_pending = sum(1 for r in records if r is None)
    seeds = (spec.get("sweep") or {}).get("seeds", [])
    lines = [f"# {spec['name']}", ""]
    if spec.get("description"):
        lines += [str(spec["description"]).strip(), ""]
    lines += [
        f"Kind `{spec['kind']}`; {len(agg.points)} grid point(s) x {len(seeds)} seed(s) = "
        f"{len(records)} runs: {n_done} done, {n_failed} failed, {n_pending} not run.",
        "",
        "Regenerate everything (completed runs are skipped):",
        "",
        f"    {spec.get('command', 'manifold-lab run <spec>')}",
        "",
        "Aggregate the existing runs again (this file, the CSV tables):",
        "",
        f"    manifold-lab report {display_path(out)}",
        "",
    ]

    lines += ["## Summary over seeds", "",
              "Mean, standard deviation (ddof=1), 95% t confidence interval and count over the "
              "done runs of each grid point; the same numbers at full precision in "
              "[summary.csv](summary.csv).", ""]
    for metric in agg.metrics:
        header = [*sweep_keys, "mean", "std", "95% CI", "n"]
        rows = [
            [*(row[k] for k in sweep_keys), row[f"{metric}_mean"], row[f"{metric}_std"],
             f"[{_num(row[f'{metric}_ci_low'])}, {_num(row[f'{metric}_ci_high'])}]",
             row[f"{metric}_n"]]
            for row in summary
        ]
        lines += [f"### `{metric}`", "", md_table(header, rows), ""]
    if not agg.metrics:
        lines += ["_No numeric metric from a done run yet._", ""]

    # The markdown shows each factor's values against its first value; the CSV has every pair.
    baseline = [c for c in comparisons if canonical_json(c["value_a"]) == canonical_json(agg.sweep[c["factor"]][0])]
    if baseline:
        lines += ["## Paired comparisons", "",
                  "B - A over the seeds both variants completed, the other factors held fixed, "
                  "A the first value of the factor; paired t-test and Wilcoxon signed-rank test "
                  "(scipy). Every pair of values in [comparisons.csv](comparisons.csv).", ""]
        header = ["factor", "A", "B", "held fixed", "metric", "n", "mean B-A", "95% CI",
                  "t-test p", "Wilcoxon p", "note"]
        rows = [
            [c["factor"], c["value_a"], c["value_b"],
             format_values({k: c[k] for k in sweep_keys if k != c["factor"]}),
             c["metric"], c["n"], c["mean_diff"],
             f"[{_num(c['diff_ci_low'])}, {_num(c['diff_ci_high'])}]",
             c["t_pvalue"], c["wilcoxon_pvalue"], c["note"]]
            for c in baseline
        ]
        lines += [md_table(header, rows, limit=_MD_MAX_ROWS), ""]

    kind_lines, kind_error = _kind_items(agg, kind, out)
    if kind_lines:
        lines += ["## Figures and tables of the kind", "", *kind_lines]

    lines += ["## Runs", ""]
    run_rows = []
    for run, record in zip(agg.plan, records):
        status = record.status if record is not None else "not run"
        run_rows.append([run["index"], f"`{run['run_id']}`", format_values(run["sweep_values"]), run["seed"], status])
    lines += ["Each run's files are in `runs/<run id>/` (config.yaml, metrics.json, status.json, run.log).", "",
              md_table(["#", "run id", "sweep values", "seed", "status"], run_rows), ""]
    failed = [(run, r) for run, r in zip(agg.plan, records) if r is not None and not r.ok]
    lines += ["## Failed runs", ""]
    if failed:
        lines += [md_table(["#", "run id", "status", "error"],
                           [[run["index"], f"`{run['run_id']}`", r.status, r.error or ""] for run, r in failed]), ""]
    else:
        lines += ["None.", ""]
    path = io.write_text(out / "report.md", "\n".join(lines))
    return path, kind_error
