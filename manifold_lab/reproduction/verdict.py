"""The verdict rule of the claim table, and the evaluation of a paired claim (``ClaimSpec``).

The rule. For a test, ``d`` is the per-seed difference oriented so that the
paper (or the pre-registration) predicts ``d > 0``; its p-value is the paired t
test of the mean of ``d`` (two-sided, or one-sided ``greater`` where the
experiment file pre-registered it). All paired tests in the table form one
family: their p-values are adjusted by Holm's step-down procedure
(``manifold_lab.stats.holm_adjust``, family-wise error 5%), and

- *supported*: adjusted p < 0.05 and mean of ``d`` > 0;
- *contradicted*: adjusted p < 0.05 and mean of ``d`` < 0 (two-sided tests only);
- *inconclusive at this scale*: otherwise; when the mean of ``d`` runs against the prediction, it says so
  with more than ``MIN_SEEDS`` seeds (``AGAINST``) and "no evidence either way" with ``MIN_SEEDS`` exactly
  (``NO_EVIDENCE``);
- *not enough runs yet*: fewer than ``MIN_SEEDS`` seeds completed both sides.

A row with several verdict tests takes the weakest verdict among them;
``descriptive`` tests are shown (and counted in the family) but do not decide
the row, nor do ``own`` tests (a prediction other than the row's claim, judged on
its own). A row may declare the same claim at the converged scale
(``ClaimSpec.converged``): its tests join the one family and its rule draws a
second verdict, shown beside the row's (``Claim.converged``). Claims that are
not paired differences (Theorem 1, Figure 1, Figure 7) state their own rule in
their row. The inputs are study folders, read by
``manifold_lab.reproduction.records`` (which states their shape).
"""

from __future__ import annotations

import math
import re
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from manifold_lab.kinds import RunRecord
from manifold_lab.reproduction.device_check import devices_of
from manifold_lab.reproduction.records import difference, done_runs, per_seed, run_counts, swept_values
from manifold_lab.stats import describe, holm_adjust

MIN_SEEDS = 3
ALPHA = 0.05
SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive at this scale"
AGAINST = "; the point estimate runs against the prediction"
#: An inconclusive test whose estimate runs against the prediction at n <= MIN_SEEDS: too few seeds to read a
#: direction into it.
NO_EVIDENCE = "; no evidence either way"
POWER = 0.8
#: The converged-scale cell of a row that declares no converged study.
NONE_PLANNED = "none planned"


@dataclass
class Claim:
    """One row of the table (``tests``: the paired tests behind it, for the family table)."""

    claim: str
    paper: str
    ours: str
    verdict: str
    command: str
    tests: list = field(default_factory=list)
    converged: str = NONE_PLANNED  # the converged-scale cell: verdict and numbers, "not run yet (...)" or a note
    converged_row: Claim | None = None  # the converged-scale row evaluated (its tests: the family table)


def _pts(summary: dict, scale: float = 100.0, unit: str = " points") -> str:
    """``+1.23 points [0.45, 2.01], n = 5`` from ``describe`` output."""
    if not summary["n"]:
        return "no runs yet"
    mean = f"{scale * summary['mean']:+.2f}{unit}"
    if summary["n"] < 2 or math.isnan(summary["ci_low"]):
        return f"{mean}, n = {summary['n']}"
    return f"{mean} [{scale * summary['ci_low']:+.2f}, {scale * summary['ci_high']:+.2f}], n = {summary['n']}"


def _acc(runs: list[RunRecord], metric: str, fixed: dict) -> str:
    """Mean of an accuracy with its 95% interval (t, truncated to [0, 1]), in percent."""
    s = describe(list(per_seed(runs, metric, fixed).values()), (0.0, 1.0))
    if not s["n"]:
        return "no runs"
    ci = "" if math.isnan(s["ci_low"]) else f" [{100 * s['ci_low']:.1f}, {100 * s['ci_high']:.1f}]"
    return f"{100 * s['mean']:.1f}%{ci} (n = {s['n']})"


def _worst(verdicts: list[str]) -> str:
    """Several differences that must all hold: contradicted > not enough > inconclusive > supported."""
    for v in (CONTRADICTED, "not enough", INCONCLUSIVE):
        for got in verdicts:
            if got.startswith(v):
                return got
    return SUPPORTED


@dataclass(frozen=True)
class PairedTest:
    """One paired test over seeds, oriented so that ``d > 0`` is the prediction.

    ``d = metric(a) - metric(b)`` seed by seed, the arms given as ``{dotted param: value}``
    on top of ``fixed``; with ``across`` (a swept parameter), ``d`` is that gap at the level
    ``narrow`` minus the gap at ``wide`` (``"first"`` / ``"last"`` name the smallest /
    largest *planned* value, so a partial sweep gives no verdict). ``at = (param, level)``
    pins a swept parameter at a planned level (``"last"``: the longest budget). ``alternative`` is
    ``"two-sided"`` or ``"greater"`` (a pre-registered one-sided test); ``role`` is
    ``"verdict"``, ``"descriptive"`` or ``"own"`` (a verdict of its own, e.g. another paper's prediction,
    that does not decide the row); ``all_planned``: no p-value until every planned run of the
    study is done (a pre-registered n), or, given as a tuple of arms (param filters), every planned run of
    those arms (a pre-registered part of the study). ``pairs``: further ``(a, b)`` pairs; ``d`` is then the
    per-seed mean of ``metric(a) - metric(b)`` over ``(a, b)`` and every pair, on the seeds that have them all.
    """

    label: str
    study: str
    metric: str
    a: dict
    b: dict
    fixed: dict = field(default_factory=dict)
    across: str | None = None
    narrow: Any = "first"
    wide: Any = "last"
    at: tuple | None = None
    alternative: str = "two-sided"
    role: str = "verdict"
    all_planned: bool | tuple = False
    pairs: tuple = ()


@dataclass(frozen=True)
class ClaimSpec:
    """One row: the claim, the paper's evidence, the setting, its tests and descriptive extras.

    ``arms``: ``(label, study, metric, params)`` whose mean accuracy the row shows;
    ``gaps``: ``(study, metric, a, b, factor, fixed)`` for the gap at every planned level of
    ``factor`` with its relative size (mean gap / mean metric(a)), the error ratio
    ``(1 - mean metric(b)) / (1 - mean metric(a))`` and the per-seed slope of the gap against
    ``log2(level)`` (``slope=True``); ``stale``: ``(study, params, metric key, note)``, the
    note (a function returning it, called only then) shown while a done run of that arm lacks
    the key (made before a fix); ``matched``: ``(study, a, b, factor, level)`` for the gap at matched
    clean-train accuracy at that planned level (``matched_gaps``, descriptive). ``{param:KEY}`` in
    ``setting`` is replaced by the values of the dotted parameter KEY over the first study's done runs.
    ``rule``: a pre-registered rule ``rule(spec, evaluated tests, results) -> (text, verdict)`` (from
    ``rules.PAIRED_RULES``) that draws the row's verdict from its evaluated tests (and adds its own
    description), instead of the weakest verdict of the tests. ``command``: the command that regenerates
    the row's committed runs when it is not ``manifold-lab run experiments/<study>.yaml --reference`` of each study
    (a part of a study: ``--runs``). ``converged``: the same claim at the converged scale, a ``ClaimSpec`` whose
    tests join the table's Holm family and whose row fills the converged-scale column (its ``command``: the
    campaign that runs it; a study is named by its folder under the results folder, its experiment file is
    ``experiments/<the folder's name>.yaml``), or a note shown there instead of ``NONE_PLANNED``.
    ``{planned}`` in ``setting``: the number of planned runs of the first study (``planned_runs``).
    """

    claim: str
    paper: str
    setting: str
    tests: tuple[PairedTest, ...]
    studies: tuple[str, ...]
    arms: tuple = ()
    gaps: tuple = ()
    slope: bool = False
    stale: tuple = ()
    matched: tuple = ()
    rule: Any = None
    command: str = ""
    converged: Any = None


@dataclass
class TestResult:
    """A ``PairedTest`` evaluated: per-seed ``d``, its summary, raw and Holm-adjusted p, verdict."""

    spec: PairedTest
    d: dict
    summary: dict
    p: float
    p_adj: float = float("nan")
    verdict: str = ""
    planned: bool = True
    devices: dict = field(default_factory=dict)  # {device label: runs} of the runs behind d
    waiting: str = ""  # why there is no p-value yet (``all_planned``)

    def detectable(self) -> float:
        """The smallest mean difference this test detects with ``POWER`` at its n and observed spread
        (``manifold_lab.power.detectable_difference``; a one-sided test at ``ALPHA`` as a two-sided one at
        ``2 ALPHA``, whose upper critical value it shares); NaN below 2 seeds or without spread."""
        from manifold_lab.power import detectable_difference

        n, sd = self.summary["n"], self.summary["std"]
        if n < 2 or not sd > 0:
            return float("nan")
        alpha = 2 * ALPHA if self.spec.alternative == "greater" else ALPHA
        return detectable_difference(n, sd, alpha=alpha, power=POWER)

    def text(self) -> str:
        if not self.planned:
            return f"{self.spec.label}: {self.spec.study} not run yet"
        p = "" if math.isnan(self.p) else (
            f", paired t p = {self.p:.2g}{' (one-sided)' if self.spec.alternative == 'greater' else ''}, "
            f"Holm-adjusted p = {self.p_adj:.2g}")
        role = "; descriptive" if self.spec.role == "descriptive" else ""
        mixed = (f"; its runs ran on {devices_text(self.devices)}, which differ by themselves "
                 "(see \"Same network, two devices\")") if len(self.devices) > 1 else ""
        detectable = self.detectable()
        power = "" if math.isnan(detectable) else (f", detectable with {POWER:.0%} power before Holm's "
                                                    f"adjustment: {100 * detectable:.2f} points")
        return f"{self.spec.label} = {_pts(self.summary)}{p}{power} ({self.verdict}{role}{mixed})"


def devices_text(devices: dict, unit: str = "") -> str:
    """``"CPU (3) and NVIDIA H200 (1)"`` of ``{device label: runs}``; one device's label alone, none ``""``."""
    if len(devices) < 2:
        return next(iter(devices), "")
    return " and ".join(f"{k} ({v}{unit})" for k, v in sorted(devices.items()))


def _level(value, planned: list):
    """``"first"`` / ``"last"``: the smallest / largest planned level (None when none is planned)."""
    if value not in ("first", "last"):
        return value
    return planned[0 if value == "first" else -1] if planned else None


def _arm_filters(test: PairedTest, planned: dict) -> list[dict] | None:
    """The param filters of the arms behind ``d``: a, b (at each compared level with ``across``);
    None when a compared level is not planned."""
    fixed = dict(test.fixed)
    if test.at is not None:
        fixed[test.at[0]] = _level(test.at[1], planned.get(test.at[0], []))
    if test.across is None:
        return [{**fixed, **arm} for pair in ((test.a, test.b), *test.pairs) for arm in pair]
    levels = planned.get(test.across, [])
    narrow, wide = _level(test.narrow, levels), _level(test.wide, levels)
    if narrow is None or wide is None:
        return None
    return [{**fixed, test.across: level, **arm} for level in (narrow, wide) for arm in (test.a, test.b)]


def paired_differences(runs: list[RunRecord], test: PairedTest, planned: dict | None = None) -> dict[int, float]:
    """The per-seed ``d`` of ``test`` (class docstring); ``planned``: ``{param: planned levels}``."""
    arms = _arm_filters(test, planned or {})
    if arms is None:
        return {}
    gaps = [difference(per_seed(runs, test.metric, a), per_seed(runs, test.metric, b))
            for a, b in zip(arms[::2], arms[1::2])]
    if test.pairs:
        seeds = sorted(set.intersection(*(set(g) for g in gaps)))
        return {s: float(np.mean([g[s] for g in gaps])) for s in seeds}
    return gaps[0] if len(gaps) == 1 else difference(*gaps)


def test_devices(runs: list[RunRecord], test: PairedTest, planned: dict, seeds) -> dict[str, int]:
    """``{device label: runs}`` of the runs behind ``d`` (``device_check.device_label``)."""
    arms = _arm_filters(test, planned) or []
    used = [r.run_dir for r in runs if r.seed in seeds and test.metric in r.metrics
            and any(all(r.param(k) == v for k, v in arm.items()) for arm in arms)]
    return dict(devices_of(used))


def t_pvalue(values: list[float], alternative: str = "two-sided") -> float:
    """Paired t test of ``mean(d) = 0`` (one-sample t on the differences); NaN when undefined."""
    x = np.asarray(values, dtype=float)
    if x.size < 2 or np.all(x == x[0]):
        return float("nan")
    return float(sps.ttest_1samp(x, 0.0, alternative=alternative).pvalue)


def run_test(results: Path, test: PairedTest) -> TestResult:
    """Evaluate one test on its study's done runs (``p_adj`` and ``verdict`` come from ``judge``)."""
    folder = results / test.study
    if not (folder / "plan.json").exists():
        return TestResult(test, {}, describe([]), float("nan"), planned=False)
    planned = {key: swept_values(folder, key) for key in (test.across, test.at and test.at[0]) if key}
    runs = done_runs(folder)
    d = paired_differences(runs, test, planned)
    values = list(d.values())
    total, done, _ = run_counts(folder, test.all_planned if isinstance(test.all_planned, tuple) else None)
    waiting = f"{done} of {total} planned runs done" if test.all_planned and done < total else ""
    p = t_pvalue(values, test.alternative) if len(values) >= MIN_SEEDS and not waiting else float("nan")
    return TestResult(test, d, describe(values), p, devices=test_devices(runs, test, planned, set(d)),
                      waiting=waiting)


def judge(result: TestResult) -> str:
    """The rule of the module docstring, on the adjusted p-value."""
    n, mean = result.summary["n"], result.summary["mean"]
    if not result.planned:
        return f"not enough runs yet ({result.spec.study} not run yet)"
    if result.waiting:
        return f"not enough runs yet ({result.waiting})"
    if n < MIN_SEEDS:
        return f"not enough runs yet ({n} of {MIN_SEEDS} seeds)"
    if math.isnan(result.p_adj):
        return f"{INCONCLUSIVE} (constant differences: no t test)"
    if result.p_adj < ALPHA and mean > 0:
        return SUPPORTED
    if result.p_adj < ALPHA and mean < 0 and result.spec.alternative == "two-sided":
        return CONTRADICTED
    if mean >= 0:
        return INCONCLUSIVE
    return INCONCLUSIVE + (NO_EVIDENCE if n <= MIN_SEEDS else AGAINST)


def _gap_text(runs, planned, metric, a, b, factor, fixed, slope) -> str:
    """Gap, relative gap and error ratio at every planned level of ``factor``; the slope against log2(level)."""
    parts, gaps = [], {}
    for level in planned:
        at = {**fixed, factor: level}
        acc_a, acc_b = per_seed(runs, metric, {**at, **a}), per_seed(runs, metric, {**at, **b})
        gaps[level] = g = difference(acc_a, acc_b)
        seeds = sorted(g)
        if not seeds:
            parts.append(f"{level:g}: no runs yet")
            continue
        # ratios of means over the seeds (a per-seed error ratio explodes where the linear error is ~0)
        mean_a, mean_b = np.mean([acc_a[s] for s in seeds]), np.mean([acc_b[s] for s in seeds])
        rel_text = f"{100 * (mean_a - mean_b) / mean_a:.1f}%" if mean_a > 0 else "undefined"
        ratio_text = f"{(1 - mean_b) / (1 - mean_a):.2f}" if mean_a < 1 else "undefined (no linear error)"
        parts.append(f"{level:g}: {_pts(describe(list(g.values()), (-1.0, 1.0)))}, relative {rel_text}, "
                     f"error ratio {ratio_text}")
    what = "gap" if metric in ("test_acc", "test_accuracy") else f"gap in {metric}"
    text = f"{what} by {factor.rsplit('.', 1)[-1]} ({'; '.join(parts)})"
    if slope:
        seeds = sorted(set.intersection(*(set(g) for g in gaps.values()))) if gaps else []
        x = np.log2(np.asarray(planned, dtype=float))
        slopes = [float(np.polyfit(x, [gaps[level][s] for level in planned], 1)[0]) for s in seeds] \
            if len(planned) >= 2 else []
        text += (f"; slope of the gap against log2({factor.rsplit('.', 1)[-1]}): "
                 f"{_pts(describe(slopes), unit=' points per doubling')}")
    return text


def matched_gaps(runs: list[RunRecord], a: dict, b: dict) -> dict[int, float]:
    """Per seed, arm ``a``'s test accuracy at arm ``b``'s final clean-train accuracy ``c`` minus ``b``'s test
    accuracy: ``a``'s per-epoch curves (``curve_clean_train_acc``, ``curve_test_acc``: metrics.jsonl) are
    interpolated linearly between the last epoch below ``c`` and the first at or above it (the first epoch's
    test accuracy if that one already reaches ``c``); seeds where ``a`` never reaches ``c`` are left out."""
    clean_b, test_b = per_seed(runs, "clean_train_acc", b), per_seed(runs, "test_acc", b)
    curves = {r.seed: (r.metrics["curve_clean_train_acc"], r.metrics["curve_test_acc"]) for r in runs
              if "curve_clean_train_acc" in r.metrics and all(r.param(k) == v for k, v in a.items())}
    out = {}
    for seed in sorted(set(curves) & set(clean_b) & set(test_b)):
        (x, y), c = curves[seed], clean_b[seed]
        i = next((i for i, v in enumerate(x) if v >= c), None)
        if i is not None:
            at = y[0] if i == 0 else y[i - 1] + (y[i] - y[i - 1]) * (c - x[i - 1]) / (x[i] - x[i - 1])
            out[seed] = at - test_b[seed]
    return out


def _matched_text(results: Path, study: str, a: dict, b: dict, factor: str, level) -> str:
    folder = results / study
    level = _level(level, swept_values(folder, factor))
    if level is None:  # the level is not planned: nothing to match
        return ""
    d = matched_gaps(done_runs(folder), {**a, factor: level}, {**b, factor: level})
    seeds = len(per_seed(done_runs(folder), "clean_train_acc", {**b, factor: level}))
    return (f"gap at matched clean-train accuracy at {level} {factor.rsplit('.', 1)[-1]} (per seed: the linear "
            "arm's test accuracy where its per-epoch clean-train accuracy reaches the relu6 arm's final one, minus "
            f"the relu6 arm's test accuracy; reached in {len(d)} of {seeds} seeds; descriptive) = "
            f"{_pts(describe(list(d.values())))}")


def _experiment(study: str) -> Path:
    """The experiment file of a study folder (``results/<study>``, ``results/<campaign>/<study>``)."""
    from manifold_lab.data.base import repo_root

    return repo_root() / "experiments" / f"{Path(study).name}.yaml"


def planned_runs(results: Path, study: str) -> tuple[int, int, int]:
    """``(planned, done, failed)`` runs of a study: its folder's plan, or before it has one, the plan of its
    experiment file (``spec.sweep.plan``: what the pre-registration plans, nothing done yet)."""
    folder = Path(results) / study
    if (folder / "plan.json").exists():
        return run_counts(folder)
    from manifold_lab.spec import load_spec
    from manifold_lab.spec.sweep import plan

    path = _experiment(study)
    return (len(plan(load_spec(path))) if path.exists() else 0), 0, 0


def _param_values(results: Path, study: str, key: str) -> str:
    """The values of a dotted parameter over a study's done runs, e.g. ``"20"``; its experiment file's value
    before any run."""
    runs, values = done_runs(results / study), set()
    for r in runs:
        with suppress(KeyError, TypeError):  # not recorded
            values.add(r.param(key))
    if not runs:
        from manifold_lab.spec import load_spec

        path = _experiment(study)
        values = {RunRecord("", load_spec(path).params.model_dump(), 0, "", {}, path).param(key)} \
            if path.exists() else set()
    return ", ".join(f"{v:g}" for v in sorted(values - {None})) or "not recorded"


def _width_of(results: Path, study: str) -> str:
    """The width multiplier a study ran at: its results' ``spec.yaml``, else its experiment file."""
    from manifold_lab import io
    from manifold_lab.spec import load_spec
    from manifold_lab.spec.bounds import safe_load_bounded

    resolved = results / study / "spec.yaml"
    width = None
    if resolved.exists():
        params = (safe_load_bounded(io.read_text(resolved)) or {}).get("params") or {}
        width = params.get("model", {}).get("width_mult")
    if width is None:
        width = load_spec(_experiment(study)).params.model.width_mult
    return f"{width:g}"


def _row(spec: ClaimSpec, rs: list[TestResult], results: Path) -> Claim:
    """One ``ClaimSpec`` as a row, from its evaluated (judged) tests. Its rule runs first, as it may decide its
    tests' verdicts (``rules.plateau_rule``), so that their texts show them."""
    verdict = _worst([r.verdict for r in rs if r.spec.role == "verdict"])
    rule_text = ""
    if spec.rule:
        rule_text, verdict = spec.rule(spec, rs, results)
    parts = [f"{label} {_acc(done_runs(results / study), metric, params)}"
             for label, study, metric, params in spec.arms if (results / study / "plan.json").exists()]
    for study, metric, a, b, factor, fixed in spec.gaps:
        folder = results / study
        if (folder / "plan.json").exists():
            parts.append(_gap_text(done_runs(folder), swept_values(folder, factor), metric, a, b, factor, fixed,
                                   spec.slope))
    parts += [r.text() for r in rs]
    for study in spec.studies:
        devices = devices_of(r.run_dir for r in done_runs(results / study))
        if len(devices) > 1:
            parts.append(f"{study} ran on {devices_text(devices, ' runs')}: a difference between runs "
                         "of different devices includes the devices' offset")
    parts += [text for m in spec.matched if (text := _matched_text(results, *m))]
    for study, params, key, note in spec.stale:
        if any(key not in r.metrics for r in done_runs(results / study)
               if all(r.param(k) == v for k, v in params.items())):
            parts.append(note())
    parts += [rule_text] if rule_text else []
    setting = spec.setting.replace("{width}", _width_of(results, spec.studies[0]))
    if "{planned}" in setting:
        setting = setting.replace("{planned}", str(planned_runs(results, spec.studies[0])[0]))
    setting = re.sub(r"\{param:([\w.]+)\}", lambda m: _param_values(results, spec.studies[0], m.group(1)), setting)
    return Claim(spec.claim, spec.paper, f"{setting}: " + "; ".join(parts), verdict,
                 spec.command or "; ".join(f"manifold-lab run experiments/{s}.yaml --reference" for s in spec.studies),
                 rs)


def converged_cell(spec: ClaimSpec, row: Claim, results: Path) -> str:
    """The converged-scale cell of a row: ``not run yet`` with the planned runs (its experiment file's plan) and
    the campaign's command before its study has a plan; its verdict and numbers after."""
    study = spec.studies[0]
    if not (results / study / "plan.json").exists():
        planned = planned_runs(results, study)[0]
        return (f"not run yet (0 of {planned} planned runs; GPU campaign: `{spec.command}`, into "
                f"results/{study}/)")
    return f"**{row.verdict}**: {row.ours}"


def evaluate(specs, results: str | Path = "results") -> list[Claim]:
    """Every ``ClaimSpec`` as a row, with its converged-scale row where it declares one; Holm adjustment across
    all the paired tests of all rows, at both scales."""
    results = Path(results)
    converged = [spec.converged if isinstance(spec.converged, ClaimSpec) else None for spec in specs]
    evaluated = [[run_test(results, t) for t in spec.tests] for spec in specs]
    at_convergence = [[run_test(results, t) for t in c.tests] if c else [] for c in converged]
    family = [r for rs in (*evaluated, *at_convergence) for r in rs]
    for r, adj in zip(family, holm_adjust([r.p for r in family])):
        r.p_adj = adj
        r.verdict = judge(r)
    rows = []
    for spec, rs, c, crs in zip(specs, evaluated, converged, at_convergence):
        row = _row(spec, rs, results)
        if c is not None:
            row.converged_row = _row(c, crs, results)
            row.converged = converged_cell(c, row.converged_row, results)
        elif isinstance(spec.converged, str):
            row.converged = spec.converged
        rows.append(row)
    return rows
