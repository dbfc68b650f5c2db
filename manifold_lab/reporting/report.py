"""Aggregate a results folder into ``summary.csv``, ``comparisons.csv`` and ``report.md``.

Works from the files alone (``spec.yaml``, ``plan.json``, ``runs/*``), so it can
run after a cluster array job: ``manifold-lab report runs/<name>`` (or a committed
``results/<name>``).

``summary.csv``
    One row per grid point, in plan order: the swept values, ``runs`` (planned
    seeds), ``done``, ``failed``, then for every numeric scalar metric
    ``<metric>_mean``, ``_std`` (ddof=1), ``_ci_low``, ``_ci_high`` (95% t
    interval) and ``_n`` over the point's done runs (``manifold_lab.stats``).
``comparisons.csv``
    For each swept factor with two or more values, each setting of the other
    factors, each pair of its values A < B (spec order; the declared contrast's
    pair as declared, ``contrast.b - contrast.a``) and each metric: the paired
    comparison of B - A over the seeds both have done (mean difference and 95%
    interval, paired t-test, Wilcoxon signed-rank test); a fraction's means in
    percent and its differences in points (``unit``), as in ``report.md``.
``report.md``
    About a page, leading with the answer: a warning when an arm learned nothing
    (accuracy at chance, training loss that rose), the contrast the spec declares
    (effect size, interval, tests) and the main figure (the kind's first); then the
    main metric against each swept numeric factor, the summary of the compared
    metrics, the kind's other figures and tables, the provenance, the runs with the
    error of every failed one, and the commands that regenerate it (quoted: they
    run as printed). Every number comes from the files; none is typed by hand; the
    full tables stay in the CSV files.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from manifold_lab import io
from manifold_lab.execution import provenance
from manifold_lab.io import pyplot, savefig
from manifold_lab.kinds import Kind, ReportContext, RunRecord, get_kind
from manifold_lab.reporting.aggregate import STATS, Aggregate, aggregate
from manifold_lab.reporting.cells import is_number, md_escape, md_table, natural_key, num, to_csv
from manifold_lab.reporting.tables import curve_rows, write_tables
from manifold_lab.spec.sources import display_path
from manifold_lab.spec.sweep import canonical_json, format_values
from manifold_lab.stats import BOUNDED_METHOD, wilcoxon_min_pairs

__all__ = ["aggregate", "headline", "write_report", "write_suite_report"]


def _odd_runs(done: Sequence[RunRecord]) -> list[str]:
    """Ids of the done runs whose metric names and JSON types differ from those most runs share."""
    def signature(r: RunRecord) -> tuple:
        return tuple(sorted((k, "number" if is_number(v) else type(v).__name__) for k, v in r.metrics.items()))

    counts = Counter(signature(r) for r in done)
    if len(counts) < 2:
        return []
    (common, n), (_, m) = counts.most_common(2)
    return [r.run_id for r in done if signature(r) != common] if n > m else []


_KIND_TABLE_ROWS = 24  # rows of a kind's table in report.md


def _shorten_tables(markdown: str, whole: str, limit: int = _KIND_TABLE_ROWS) -> tuple[str, bool]:
    """A kind's markdown with every table cut to ``limit`` rows (a page), each cut table ending with a link to
    ``whole``, the file that holds the item's markdown uncut; and whether a table was cut."""
    out, rows, dropped, cut = [], 0, 0, False
    for line in [*markdown.split("\n"), ""]:
        if line.startswith("|---"):  # a header's separator: neither a row nor the table's end
            pass
        elif line.startswith("|"):
            rows += 1
            if rows > limit + 1:  # + the header
                dropped += 1
                continue
        else:
            if dropped:
                out.append(f"\n({dropped} more rows: the whole table in [{whole}]({whole}))")
                cut = True
            rows = dropped = 0
        out.append(line)
    return "\n".join(out[:-1]), cut


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
    ctx = ReportContext(name=agg.spec["name"], out_dir=out_dir, runs=[r for r in agg.records if r is not None],
                        sweep_keys=list(agg.sweep))
    try:
        items = kind.report(ctx)
    except Exception as exc:  # a broken figure must not lose the tables
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        if odd := _odd_runs(ctx.done_runs):
            error += f" (the metrics.json of run {', '.join(odd)} differs in its keys or types from the others)"
        return [f"_The kind's report failed: {md_escape(error)}_"], error, []
    lines: list[str] = []
    main: list[str] = []  # the first figure's block
    for item in items:
        first_figure = item.figure is not None and not main
        block = [f"**{item.title}**" if first_figure else f"### {item.title}", ""]
        if item.figure is not None:
            block.append(f"![{md_escape(item.caption or item.title)}]({Path(item.figure).as_posix()})")
            if item.caption:
                block += ["", f"*{item.caption}*"]
        else:
            whole = f"tables/{re.sub(r'[^a-z0-9]+', '-', item.title.lower())[:48].strip('-')}.md"
            text, cut = _shorten_tables(item.markdown or "", whole)
            if cut:
                io.write_text(out_dir / whole, f"# {item.title}\n\n{item.markdown}\n")
            block.append(text)
        block.append("")
        if first_figure:
            main = block
        else:
            lines += block
    return lines, None, main


_PAGE_ROWS = 12  # rows of a table in report.md; the CSV files hold every row


def _interval(low: Any, high: Any, scale: float = 1.0, sign: str = "") -> str:
    """``[low, high]`` times ``scale``, 4 significant digits (``sign="+"``: signed, as differences are)."""
    if not (is_number(low) and is_number(high)):
        return "–"
    return f"[{low * scale:{sign}.4g}, {high * scale:{sign}.4g}]"


def _mean_interval(row: dict, metric: str, scale: float = 1.0) -> str:
    """``mean [low, high]`` times ``scale``; the mean alone without an interval (one seed), ``–`` without a mean."""
    mean, interval = row[f"{metric}_mean"], _interval(row[f"{metric}_ci_low"], row[f"{metric}_ci_high"], scale)
    if not is_number(mean):
        return "–"
    return num(mean * scale) if interval == "–" else f"{num(mean * scale)} {interval}"


def _p(value: Any) -> str:
    return f"{value:.2g}" if is_number(value) else "–"


def contrast_rows(agg: Aggregate) -> list[dict]:
    """The rows of ``comparisons.csv`` (``Aggregate.comparison_rows``) of the declared contrast ``b - a`` of
    its metric, at each setting of the other factors (numeric order) where some seed has both values."""
    c = agg.contrast
    if not c or c["factor"] not in agg.sweep:
        return []
    others = [k for k in agg.sweep if k != c["factor"]]
    rows = [r for r in agg.comparison_rows() if r["factor"] == c["factor"] and r["metric"] == c["metric"]
            and r["n"] > 0 and canonical_json([r["value_a"], r["value_b"]]) == canonical_json([c["a"], c["b"]])]
    return sorted(rows, key=lambda r: [natural_key(r[k]) for k in others])


#: An arm whose mean accuracy is at most this far above chance (1 / classes) learned nothing worth comparing.
CHANCE_MARGIN = 0.02


def _loss_rose(record: RunRecord) -> bool:
    """The run's training loss at its last epoch is above its first (``metrics.jsonl`` or ``curve_train_loss``)."""
    loss = [value for _, metric, value in curve_rows(record) if metric == "train_loss"]
    return len(loss) > 1 and loss[-1] > loss[0]


def learning_warnings(agg: Aggregate) -> list[str]:
    """One line per arm (grid point) that learned nothing: its mean accuracy within ``CHANCE_MARGIN`` of
    chance or below (``Kind.chance``: 1 / classes), or its training loss higher at the last epoch than
    at the first in some run."""
    lines = []
    for runs in agg.points.values():
        done = [r for r in (agg.records[run["index"]] for run in runs) if r is not None and r.ok]
        if not done:
            continue
        arm = format_values(runs[0]["sweep_values"]) or "every run"
        levels = agg.kind.chance(agg.kind.params.model_validate(done[0].params)) if agg.kind and agg.kind.chance else {}
        for metric, level in levels.items():
            values = [r.metrics[metric] for r in done if is_number(r.metrics.get(metric))]
            if values and (mean := sum(values) / len(values)) <= level + CHANCE_MARGIN:
                lines.append(f"{arm}: {metric} {100 * mean:.1f}% over {len(values)} run(s) is "
                             f"at chance level ({100 * level:.1f}%, 1 / classes; the margin is "
                             f"{100 * CHANCE_MARGIN:g} points)")
        if rose := sum(_loss_rose(r) for r in done):
            lines.append(f"{arm}: the training loss rose (last epoch above the first) in {rose} of {len(done)} run(s)")
    return lines


def headline(agg: Aggregate, link: str = "") -> list[str]:
    """The report's opening: a warning if an arm learned nothing (``learning_warnings``), then the
    declared contrast with effect size, interval and tests.

    Without a declared contrast, a compact table of the first compared metrics per grid
    point. ``link`` prefixes relative links (the suite report is one folder up).
    """
    warned = learning_warnings(agg)
    lines = ["> **Warning: some arms learned nothing**, so their differences below mean nothing "
             "(train longer, on more data, or check the learning rate):", ">",
             *(f"> - {md_escape(w)}" for w in warned), ""] if warned else []
    c = agg.contrast
    rows = contrast_rows(agg)
    if c and rows:
        others = [k for k in agg.sweep if k != c["factor"]]
        points = agg.scale(c["metric"]) != 1
        unit, diff = (" (%)", "B - A (points)") if points else ("", "B - A")
        lines += [f"**{c['metric']}: {c['b']} - {c['a']}**{' in percentage points' if points else ''} "
                  f"(`{c['factor']}`, the contrast this study declares), paired over the seeds both completed:", ""]
        header = [*others, "n", f"mean {c['a']}{unit}", f"mean {c['b']}{unit}", diff, "95% CI", "paired t p",
                  "Wilcoxon p"]
        table = [[*(r[k] for k in others), r["n"], r["mean_a"], r["mean_b"],
                  f"{r['mean_diff']:+.4g}" if is_number(r["mean_diff"]) else "–",
                  _interval(r["diff_ci_low"], r["diff_ci_high"], sign="+"), _p(r["t_pvalue"]),
                  _p(r["wilcoxon_pvalue"]) if is_number(r["wilcoxon_pvalue"])
                  else "too few pairs" if "too few" in r["note"] else "–"]
                 for r in rows]
        return lines + [md_table(header, table, limit=_PAGE_ROWS, more=f"{link}comparisons.csv"), "",
                        "B - A: mean of the per-seed differences with its 95% interval ("
                        + ("t interval truncated to [-100, 100] points" if points else "t interval")
                        + "); paired t-test; the Wilcoxon signed-rank test only where the non-zero pairs can reach "
                        f"p < 0.05 (at least {wilcoxon_min_pairs()}).", ""]
    if c:
        return [*lines, f"_The declared contrast ({c['metric']}: {c['b']} - {c['a']}) has no seed with both values "
                "done yet._", ""]
    if not agg.lead:
        return [*lines, "_No numeric metric from a done run yet._", ""]
    return [*lines, "Mean [95% interval] over seeds of the main metrics (this study declares no `contrast:`):", "",
            _summary_table(agg, agg.lead, f"{link}summary.csv"), ""]


def _summary_table(agg: Aggregate, metrics: Sequence[str], more: str) -> str:
    """Grid points (numeric factors in numeric order) x ``metrics`` as ``mean [interval]`` (fractions in %)."""
    keys = list(agg.sweep)
    rows = sorted(agg.summary_rows(),
                  key=lambda row: [natural_key(row[k]) if is_number(row[k]) else () for k in keys])
    table = [[*(row[k] for k in keys), *(_mean_interval(row, m, agg.scale(m)) for m in metrics),
              max(row[f"{m}_n"] for m in metrics)] for row in rows]
    return md_table([*keys, *(_label(agg, m) for m in metrics), "seeds"], table, limit=_PAGE_ROWS, more=more)


def _label(agg: Aggregate, metric: str) -> str:
    """The metric's name with its unit in a table header or an axis label: ``test_acc (%)`` for a fraction."""
    return f"{metric} (%)" if agg.scale(metric) != 1 else metric


def _main_metric(agg: Aggregate) -> str | None:
    if agg.contrast and agg.contrast["metric"] in agg.metrics:
        return agg.contrast["metric"]
    return agg.lead[0] if agg.lead else None


def _factor_plots(agg: Aggregate, out: Path) -> list[str]:
    """One figure per swept numeric factor: the main metric (mean, 95% interval) against it."""
    metric = _main_metric(agg)
    numeric = [k for k, v in agg.sweep.items() if len(v) > 1 and all(is_number(x) for x in v)]
    if metric is None or not numeric:
        return []
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    scale = agg.scale(metric)
    summary = agg.summary_rows()
    n = max((r[f"{metric}_n"] for r in summary), default=0)
    lines = []
    for factor in numeric:
        others = [k for k in agg.sweep if k != factor]
        groups: dict[str, list[dict]] = {}
        for row in summary:
            if is_number(row[f"{metric}_mean"]):
                groups.setdefault(format_values({k: row[k] for k in others}) or metric, []).append(row)
        fig, ax = plt.subplots(figsize=(5.6, 3.6))
        for i, (label, rows) in enumerate(list(groups.items())[:10]):
            rows.sort(key=lambda r: r[factor])
            # an interval end that is undefined (one seed) is the mean
            mean, low, high = ([(v if is_number(v := r[f"{metric}_{k}"]) else r[f"{metric}_mean"]) * scale
                                for r in rows] for k in ("mean", "ci_low", "ci_high"))
            ax.errorbar([r[factor] for r in rows], mean,
                        yerr=[[m - lo for m, lo in zip(mean, low)], [hi - m for m, hi in zip(mean, high)]],
                        marker="o", ms=4, capsize=3, color=f"C{i}", label=label)
        values = agg.sweep[factor]
        if all(v > 0 for v in values) and max(values) / min(values) >= 8:
            ax.set_xscale("log", base=2)
            ax.set_xticks(values, [f"{v:g}" for v in values])
            ax.minorticks_off()
        elif all(isinstance(v, int) for v in values):  # a count: no tick between two whole numbers
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(factor)
        ax.set_ylabel(_label(agg, metric))
        if groups:
            ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"figures/{metric}_vs_{factor.replace('.', '_')}.png"
        savefig(fig, out / name, dpi=120)
        plt.close(fig)
        lines += [f"![{metric} against {factor}]({name})", "",
                  f"*{metric} against `{factor}`: mean over up to {n} seeds, bars = 95% interval "
                  f"({BOUNDED_METHOD if metric in agg.bounds else 't interval of the mean'}).*", ""]
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
    """Write ``summary.csv``, ``comparisons.csv`` and ``report.md`` (module docstring) into ``root``.

    Returns the path of ``report.md`` and the error of the kind's report hook
    (None when it worked). The outputs (``report.md``, the four CSV files, the figures)
    are replaced as a set (``io.staged_folder``): a failure mid-way leaves the old ones.
    """
    agg = aggregate(root)
    with io.staged_folder(agg.store.root, last=("report.md",)) as stage:
        kind_error = _write_report(agg, stage, kind)
    return agg.store.root / "report.md", kind_error


def _write_report(agg: Aggregate, stage: Path, kind: Kind | None) -> str | None:
    """``write_report`` with every output written into ``stage``; returns the kind's report error."""
    out = agg.store.root
    sweep_keys = list(agg.sweep)
    summary_cols = [*sweep_keys, "runs", "done", "failed", *(f"{m}_{s}" for m in agg.metrics for s in STATS)]
    io.write_text(stage / "summary.csv", to_csv(agg.summary_rows(), summary_cols))
    comparison_cols = ["factor", "value_a", "value_b", *sweep_keys, "metric", "n", "mean_a", "mean_b",
                       "mean_diff", "diff_ci_low", "diff_ci_high", "unit", "t_stat", "t_pvalue",
                       "wilcoxon_stat", "wilcoxon_pvalue", "note"]
    io.write_text(stage / "comparisons.csv", to_csv(agg.comparison_rows(), comparison_cols))
    write_tables(out, stage)  # curves.csv, finals.csv (manifold_lab.reporting.tables)

    spec, records = agg.spec, agg.records
    n_done = sum(r is not None and r.ok for r in records)
    n_failed = sum(r is not None and not r.ok for r in records)
    n_pending = records.count(None)
    seeds = (spec.get("sweep") or {}).get("seeds", [])
    kind_lines, kind_error, main_figure = _kind_items(agg, kind, stage)

    lines = [f"# {spec['name']}", ""]
    if spec.get("description"):
        lines += [str(spec["description"]).strip(), ""]
    if spec.get("overrides"):
        lines += [f"_Run with overrides of the experiment file: `{' '.join(spec['overrides'])}`; the description "
                  "above is the file's, the numbers below are the runs'._", ""]
    lines += [f"Kind `{spec['kind']}`; {len(agg.points)} grid point(s) x {len(seeds)} seed(s) = "
              f"{len(records)} runs: {n_done} done, {n_failed} failed, {n_pending} not run.", "",
              "## The answer", "", *headline(agg), *main_figure]

    if factor_lines := _factor_plots(agg, stage):
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
              f"    {shlex.join(['manifold-lab', 'report', display_path(out)])}", ""]
    failed = [(run, r) for run, r in zip(agg.plan, records) if r is not None and not r.ok]
    if failed:
        lines += ["Failed runs:", "",
                  md_table(["#", "run id", "status", "error"],
                           [[run["index"], f"`{run['run_id']}`", r.status, r.error or ""] for run, r in failed],
                           limit=_PAGE_ROWS, more="plan.json and each run's status.json"), ""]
    io.write_text(stage / "report.md", "\n".join(lines))
    return kind_error


def write_suite_report(suite, root: Path, lines: dict[str, list[str]], command: str) -> Path:
    """``root/report.md`` of a suite (``manifold_lab.spec.suite.Suite``): one section per part: its answer (the
    numbers its own report opens with), its summary lines (``lines[part name]``: what this call printed), its
    figures and a link to its report; a part this call did not reach (a gate held it) says so."""
    out = [f"# {suite.name}", "", suite.description, "", "Regenerate (completed runs are skipped):", "",
           f"    {command}", ""]
    for spec in suite.parts:
        part, said = root / spec.name, "; ".join(f"`{line}`" for line in lines.get(spec.name, []))
        out += [f"## {spec.name}", "", spec.description.strip(), ""]
        if not (part / "plan.json").is_file():
            out += [f"_Not started: {said or 'an earlier part stopped the suite'}._", ""]
            continue
        out += [*headline(aggregate(part), f"{spec.name}/"),
                f"{said or '_Not run by this call._'} Full report: [{spec.name}/report.md]({spec.name}/report.md).",
                ""]
        for fig in sorted((part / "figures").glob("*.png")):
            out += [f"![{fig.stem}]({spec.name}/figures/{fig.name})", ""]
    return io.write_text(root / "report.md", "\n".join(out))
