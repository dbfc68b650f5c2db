"""Aggregate a results folder into ``summary.csv``, ``comparisons.csv`` and ``report.md``.

Works from the files alone (``spec.yaml``, ``plan.json``, ``runs/*``), so it can
run after a cluster array job: ``manifold-lab report runs/<name>`` (or a committed
``results/<name>``).

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
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from manifold_lab import io
from manifold_lab.io import savefig
from manifold_lab.experiment import provenance
from manifold_lab.experiment.stats import BOUNDED_METHOD, describe, paired, wilcoxon_min_pairs
from manifold_lab.experiment.store import ResultsStore
from manifold_lab.experiment.sweep import canonical_json, format_value, format_values
from manifold_lab.kinds import Kind, ReportContext, RunRecord, get_kind

__all__ = ["Aggregate", "aggregate", "write_report"]

_STATS = ("mean", "std", "ci_low", "ci_high", "n")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def natural_key(text: Any) -> tuple:
    """Sort key that orders the numbers inside a text by value: ``n2`` before ``n15``."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", str(text)) if part)


def numeric_metrics(records: Sequence[RunRecord]) -> list[str]:
    """Names of the numeric scalar metrics of the done runs, numbers in names sorted by value."""
    names: dict[str, None] = {}
    for r in records:
        if r.ok:
            names.update((k, None) for k, v in r.metrics.items() if _is_number(v))
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
        self.sweep: dict[str, list] = {
            k: v for k, v in (self.spec.get("sweep") or {}).items() if k != "seeds"
        }
        self.plan: list[dict] = self.spec["runs"]
        self.records: list[RunRecord | None] = [self.store.record(r) for r in self.plan]
        self.metrics = numeric_metrics([r for r in self.records if r is not None])
        try:
            kind = get_kind(self.spec["kind"])
            kind_bookkeeping, kind_headline = kind.bookkeeping, kind.headline
        except ValueError:  # a kind that is not installed here: the tables still work
            kind_bookkeeping, kind_headline = (), ()
        self.bookkeeping = [m for m in self.metrics if m in (*BOOKKEEPING, *kind_bookkeeping)]
        self.compared = [m for m in self.metrics if m not in self.bookkeeping]
        #: the metrics a report without a contrast opens with
        self.lead = [m for m in kind_headline if m in self.metrics] or self.compared[:3]
        values = {m: [r.metrics[m] for r in self.records if r is not None and r.ok and _is_number(r.metrics.get(m))]
                  for m in self.metrics}
        #: metric -> (0, 1) for the fractions (by name, every value inside [0, 1]).
        self.bounds = {m: (0.0, 1.0) for m in self.metrics
                       if _BOUNDED_NAME.search(m) and values[m] and 0 <= min(values[m]) and max(values[m]) <= 1}
        self.contrast: dict | None = self.spec.get("contrast") or None
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
                row.update({f"{metric}_{s}": v for s, v in describe(sample, self.bounds.get(metric)).items()})
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
                    for metric in self.compared:
                        shared = [
                            s for s in seeds
                            if _is_number(runs_a[s].metrics.get(metric))
                            and _is_number(runs_b[s].metrics.get(metric))
                        ]
                        result = paired(
                            [runs_a[s].metrics[metric] for s in shared],
                            [runs_b[s].metrics[metric] for s in shared],
                            self.bounds.get(metric),
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


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]], limit: int | None = None,
             more: str = "the CSV file") -> str:
    """A markdown table; with ``limit``, at most that many rows and a pointer to ``more``."""
    lines = ["| " + " | ".join(_md_escape(str(h)) for h in header) + " |"]
    lines.append("|" + "---|" * len(header))
    for row in rows[:limit]:
        lines.append("| " + " | ".join(_md_escape(_cell(v)) for v in row) + " |")
    if limit is not None and len(rows) > limit:
        lines.append(f"\n({len(rows) - limit} more rows in {more})")
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


_KIND_TABLE_ROWS = 24  # rows of a kind's table in report.md


def _shorten_tables(markdown: str, limit: int = _KIND_TABLE_ROWS) -> str:
    """A kind's markdown with every table cut to ``limit`` rows (a page; the CSV files hold the numbers)."""
    out, rows, dropped = [], 0, 0
    for line in [*markdown.split("\n"), ""]:
        if line.startswith("|") and not line.startswith("|---"):
            rows += 1
            if rows > limit + 1:  # + the header
                dropped += 1
                continue
        else:
            if dropped:
                out.append(f"\n({dropped} more rows: every grid point in summary.csv, every pair in comparisons.csv)")
            rows = dropped = 0
        out.append(line)
    return "\n".join(out[:-1])


def _kind_items(agg: Aggregate, kind: Kind | None, out_dir: Path) -> tuple[list[str], str | None, list[str]]:
    """The kind's report section as markdown lines, an error line if it failed, and its first
    figure (the report's main figure, shown with the answer rather than in the section)."""
    name = agg.spec["kind"]
    try:
        kind = kind or get_kind(name)
    except ValueError as exc:
        return [f"_The kind's figures are missing: {exc}_"], str(exc), []
    if kind.report is None:
        return [], None, []
    runs = [r for r in agg.records if r is not None]
    ctx = ReportContext(name=agg.spec["name"], out_dir=out_dir, runs=runs, sweep_keys=list(agg.sweep))
    try:
        items = kind.report(ctx)
    except Exception as exc:  # a broken figure must not lose the tables
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        odd = _odd_runs(ctx.done_runs)
        if odd:
            error += f" (the metrics.json of run {', '.join(odd)} differs in its keys or types from the others')"
        return [f"_The kind's report failed: {_md_escape(error)}_"], error, []
    lines: list[str] = []
    main: list[str] = []
    for item in items:
        first_figure = item.figure is not None and not main
        block = [f"**{item.title}**" if first_figure else f"### {item.title}", ""]
        if item.figure is not None:
            block.append(f"![{_md_escape(item.caption or item.title)}]({Path(item.figure).as_posix()})")
            if item.caption:
                block += ["", f"*{item.caption}*"]
        else:
            block.append(_shorten_tables(item.markdown or ""))
        block.append("")
        if first_figure:
            main = block
        else:
            lines += block
    return lines, None, main


_PAGE_ROWS = 12  # rows of a table in report.md; the CSV files hold every row


def _interval(low: Any, high: Any, scale: float = 1.0, digits: int = 4) -> str:
    if not (_is_number(low) and _is_number(high)):
        return "–"
    return f"[{low * scale:.{digits}g}, {high * scale:.{digits}g}]"


def _mean_interval(row: dict, metric: str) -> str:
    """``mean [low, high]``; the mean alone without an interval (one seed), ``–`` without a mean."""
    mean, low, high = row[f"{metric}_mean"], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
    if not _is_number(mean):
        return "–"
    return f"{_num(mean)} {_interval(low, high)}" if _is_number(low) and _is_number(high) else _num(mean)


def _p(value: Any) -> str:
    return f"{value:.2g}" if _is_number(value) else "–"


def contrast_rows(agg: Aggregate) -> list[dict]:
    """The declared contrast ``b - a`` of its metric, at each setting of the other factors.

    Paired over the seeds both values completed (``manifold_lab.experiment.stats.paired``);
    settings where no seed has both are left out.
    """
    c = agg.contrast
    if not c or c["factor"] not in agg.sweep:
        return []
    others = [k for k in agg.sweep if k != c["factor"]]
    rows = []
    for fixed in itertools.product(*(sorted(agg.sweep[k], key=natural_key) for k in others)):
        context = dict(zip(others, fixed))
        runs_a = agg.by_seed({**context, c["factor"]: c["a"]})
        runs_b = agg.by_seed({**context, c["factor"]: c["b"]})
        seeds = [s for s in sorted(set(runs_a) & set(runs_b))
                 if _is_number(runs_a[s].metrics.get(c["metric"])) and _is_number(runs_b[s].metrics.get(c["metric"]))]
        if not seeds:
            continue
        result = paired([runs_a[s].metrics[c["metric"]] for s in seeds],
                        [runs_b[s].metrics[c["metric"]] for s in seeds], agg.bounds.get(c["metric"]))
        rows.append({**context, **result})
    return rows


def headline(agg: Aggregate, link: str = "") -> list[str]:
    """The report's opening: the declared contrast with effect size, interval and tests.

    Without a declared contrast, a compact table of the first compared metrics per grid
    point. ``link`` prefixes relative links (the suite report is one folder up).
    """
    c = agg.contrast
    rows = contrast_rows(agg)
    if c and rows:
        others = [k for k in agg.sweep if k != c["factor"]]
        lines = [f"**{c['metric']}: {c['b']} - {c['a']}** (`{c['factor']}`, the contrast this study "
                 "declares), paired over the seeds both completed:", ""]
        header = [*others, "n", f"mean {c['a']}", f"mean {c['b']}", "B - A", "95% CI", "paired t p", "Wilcoxon p"]
        table = [[*(r[k] for k in others), r["n"], r["mean_a"], r["mean_b"], r["mean_diff"],
                  _interval(r["diff_ci_low"], r["diff_ci_high"]), _p(r["t_pvalue"]),
                  _p(r["wilcoxon_pvalue"]) if _is_number(r["wilcoxon_pvalue"])
                  else "too few pairs" if "too few" in r["note"] else "–"]
                 for r in rows]
        lines += [md_table(header, table, limit=_PAGE_ROWS, more=f"{link}comparisons.csv"), "",
                  "B - A: mean of the per-seed differences with its 95% interval ("
                  + ("t interval truncated to [-1, 1]" if c["metric"] in agg.bounds
                     else "t interval") + "); paired t-test; the "
                  "Wilcoxon signed-rank test only where the non-zero pairs can reach p < 0.05 "
                  f"(at least {wilcoxon_min_pairs()}).", ""]
        return lines
    if c:
        return [f"_The declared contrast ({c['metric']}: {c['b']} - {c['a']}) has no seed with both values "
                "done yet._", ""]
    if not agg.lead:
        return ["_No numeric metric from a done run yet._", ""]
    return ["Mean [95% interval] over seeds of the main metrics (this study declares no `contrast:`):", "",
            _summary_table(agg, agg.lead, f"{link}summary.csv"), ""]


def _summary_table(agg: Aggregate, metrics: Sequence[str], more: str) -> str:
    """Grid points (numeric factors in numeric order) x ``metrics`` as ``mean [interval]``."""
    keys = list(agg.sweep)
    rows = sorted(agg.summary_rows(),
                  key=lambda row: [natural_key(row[k]) if _is_number(row[k]) else () for k in keys])
    table = [[*(row[k] for k in keys), *(_mean_interval(row, m) for m in metrics),
              max(row[f"{m}_n"] for m in metrics)] for row in rows]
    return md_table([*keys, *metrics, "seeds"], table, limit=_PAGE_ROWS, more=more)


def _main_metric(agg: Aggregate) -> str | None:
    if agg.contrast and agg.contrast["metric"] in agg.metrics:
        return agg.contrast["metric"]
    return agg.lead[0] if agg.lead else None


def _interval_method(agg: Aggregate, metric: str) -> str:
    return BOUNDED_METHOD if metric in agg.bounds else "t interval of the mean"


def _factor_plots(agg: Aggregate, out: Path) -> list[str]:
    """One figure per swept numeric factor: the main metric (mean, 95% interval) against it."""
    metric = _main_metric(agg)
    numeric = [k for k, v in agg.sweep.items() if len(v) > 1 and all(_is_number(x) for x in v)]
    if metric is None or not numeric:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = agg.summary_rows()
    n = max((r[f"{metric}_n"] for r in summary), default=0)
    lines = []
    for factor in numeric:
        others = [k for k in agg.sweep if k != factor]
        groups: dict[str, list[dict]] = {}
        for row in summary:
            if _is_number(row[f"{metric}_mean"]):
                groups.setdefault(format_values({k: row[k] for k in others}) or metric, []).append(row)
        fig, ax = plt.subplots(figsize=(5.6, 3.6))
        for i, (label, rows) in enumerate(list(groups.items())[:10]):
            rows.sort(key=lambda r: r[factor])
            mean = [r[f"{metric}_mean"] for r in rows]
            low = [r[f"{metric}_ci_low"] if _is_number(r[f"{metric}_ci_low"]) else m for r, m in zip(rows, mean)]
            high = [r[f"{metric}_ci_high"] if _is_number(r[f"{metric}_ci_high"]) else m for r, m in zip(rows, mean)]
            ax.errorbar([r[factor] for r in rows], mean,
                        yerr=[[m - lo for m, lo in zip(mean, low)], [hi - m for m, hi in zip(mean, high)]],
                        marker="o", ms=4, capsize=3, color=f"C{i}", label=label)
        values = agg.sweep[factor]
        if all(v > 0 for v in values) and max(values) / min(values) >= 8:
            ax.set_xscale("log", base=2)
        ax.set_xlabel(factor)
        ax.set_ylabel(metric)
        if groups:
            ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"figures/{metric}_vs_{factor.replace('.', '_')}.png"
        savefig(fig, out / name, dpi=120)
        plt.close(fig)
        lines += [f"![{metric} against {factor}]({name})", "",
                  f"*{metric} against `{factor}`: mean over up to {n} seeds, bars = 95% interval "
                  f"({_interval_method(agg, metric)}).*", ""]
    return lines


def _provenance_lines(agg: Aggregate) -> list[str]:
    records = [provenance.read(r.run_dir) for r in agg.records if r is not None]
    differ, missing = provenance.differences(records)
    present = [r for r in records if r]
    lines = ["## Provenance", ""]
    if present:
        first = present[0]
        packages = ", ".join(f"{k} {v}" for k, v in (first.get("packages") or {}).items() if v)
        whose = "every run" if not differ else "the first run"
        lines += [f"Recorded per run in `runs/<id>/provenance.json`; {whose}: Python {first.get('python')}, "
                  f"{packages}; commit `{str(first.get('commit'))[:12]}`"
                  f"{' (dirty tree)' if first.get('dirty') else ''}; {first.get('cpu')} "
                  f"({first.get('cpu_count')} cores), device {first.get('device')}"
                  + (f", GPU {first['gpu']}" if first.get("gpu") else "") + ".", ""]
    if differ:
        rows = [[name, "; ".join(f"{v} ({n} runs)" for v, n in counts.items())] for name, counts in differ.items()]
        lines += ["What differs between runs:", "", md_table(["field", "values"], rows, limit=_PAGE_ROWS), ""]
    elif present:
        lines += ["Nothing differs between the recorded runs (start and end times aside).", ""]
    if missing:
        lines += [f"{missing} run(s) have no `provenance.json` (recorded before provenance was kept).", ""]
    return lines


def write_report(root: str | Path, kind: Kind | None = None) -> tuple[Path, str | None]:
    """Write ``summary.csv``, ``comparisons.csv`` and ``report.md`` into ``root``.

    ``report.md`` leads with the answer: the contrast the spec declares (effect size,
    interval, tests) and the main figure (the kind's first); then the main metric
    against each swept numeric factor, the summary of the compared metrics, the
    kind's other figures and tables, the provenance and the runs; about a page (the
    full tables stay in the CSV files).

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
    kind_lines, kind_error, main_figure = _kind_items(agg, kind, out)

    lines = [f"# {spec['name']}", ""]
    if spec.get("description"):
        lines += [str(spec["description"]).strip(), ""]
    if spec.get("overrides"):
        lines += [f"_Run with overrides of the experiment file: `{' '.join(spec['overrides'])}`; the description "
                  "above is the file's, the numbers below are the runs'._", ""]
    lines += [f"Kind `{spec['kind']}`; {len(agg.points)} grid point(s) x {len(seeds)} seed(s) = "
              f"{len(records)} runs: {n_done} done, {n_failed} failed, {n_pending} not run.", "",
              "## The answer", "", *headline(agg), *main_figure]

    factor_lines = _factor_plots(agg, out)
    if factor_lines:
        lines += ["## Against each swept numeric factor", "", *factor_lines]

    main = _main_metric(agg)
    ordered = [main, *(m for m in agg.compared if m != main)] if main else []
    if not agg.contrast:  # the answer showed the lead metrics already
        ordered = [m for m in ordered if m not in agg.lead]
    if ordered:
        bounded = [m for m in agg.compared if m in agg.bounds]
        shown = ordered[:3]
        lines += ["## Summary over seeds", "",
                  "Mean [95% interval] per grid point"
                  + (f"; for the fractions ({', '.join(bounded)}) a {BOUNDED_METHOD}, for the others the "
                     "t interval of the mean" if bounded else " (t interval of the mean)")
                  + ". Every metric with its std and n in [summary.csv](summary.csv), every paired comparison "
                  "in [comparisons.csv](comparisons.csv)"
                  + (f"; bookkeeping, summarized but not compared: {', '.join(agg.bookkeeping)}"
                     if agg.bookkeeping else "") + ".", "",
                  _summary_table(agg, shown, "summary.csv"), ""]
        if len(ordered) > len(shown):
            lines += [f"({len(ordered) - len(shown)} more metrics in summary.csv: "
                      f"{', '.join(ordered[len(shown):])}.)", ""]

    if kind_lines:
        lines += ["## Figures and tables of the kind", "", *kind_lines]

    lines += _provenance_lines(agg)

    lines += ["## Runs and how to regenerate them", "",
              f"{n_done} done, {n_failed} failed, {n_pending} not run; every run with its sweep values and seed "
              "in [plan.json](plan.json), its files in `runs/<run id>/` (config.yaml, metrics.json, status.json, "
              "provenance.json, run.log). Regenerate everything (completed runs are skipped):", "",
              f"    {spec.get('command', 'manifold-lab run <spec>')}", "",
              "Aggregate the existing runs again (this file, the CSV tables):", "",
              f"    manifold-lab report {display_path(out)}", ""]
    failed = [(run, r) for run, r in zip(agg.plan, records) if r is not None and not r.ok]
    if failed:
        lines += ["Failed runs:", "",
                  md_table(["#", "run id", "status", "error"],
                           [[run["index"], f"`{run['run_id']}`", r.status, r.error or ""] for run, r in failed],
                           limit=_PAGE_ROWS, more="plan.json and each run's status.json"), ""]
    path = io.write_text(out / "report.md", "\n".join(lines))
    return path, kind_error
