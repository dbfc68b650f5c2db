"""The reproduction's claim table (``results/README.md``): one row per claim of the paper.

Every number is read from a committed results folder (``results/<study>/``) and
every verdict is drawn by one rule, so the table regenerates with
``manifold-lab claims`` and nothing in it is typed by hand.

Claims as data. A claim stated as paired differences over seeds is a
``ClaimSpec`` (``PAIRED_CLAIMS``): the study, and one or more ``PairedTest``
(metric, the arm the paper predicts higher ``a`` and the other ``b``, optionally
a factor ``across`` whose two levels turn the contrast into a difference of
gaps, the predicted sign, the alternative), plus descriptive extras (gaps per
level, relative gap and error ratio, slope against log level). One function,
``evaluate``, turns every spec into a row; adding a study adds a spec, not code.

The rule. For a test, ``d`` is the per-seed difference oriented so that the
paper (or the pre-registration) predicts ``d > 0``; its p-value is the paired t
test of the mean of ``d`` (two-sided, or one-sided ``greater`` where the
experiment file pre-registered it). All paired tests in the table form one
family: their p-values are adjusted by Holm's step-down procedure
(``manifold_lab.experiment.stats.holm_adjust``, family-wise error 5%), and

- *supported*: adjusted p < 0.05 and mean of ``d`` > 0;
- *contradicted*: adjusted p < 0.05 and mean of ``d`` < 0 (two-sided tests only);
- *inconclusive at this scale*: otherwise;
- *not enough runs yet*: fewer than ``MIN_SEEDS`` seeds completed both sides.

A row with several verdict tests takes the weakest verdict among them;
``descriptive`` tests are shown (and counted in the family) but do not decide
the row. Claims that are not paired differences (Theorem 1, Figure 1, Figure 7)
state their own rule in their row. Shapes of the inputs: each study folder
holds ``spec.yaml``, ``plan.json`` and ``runs/<id>/{metrics.json,
relu_stats.json, status.json}`` as written by ``manifold_lab.experiment.runner``.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from manifold_lab.errors import UsageError
from manifold_lab.experiment.device_check import devices_of
from manifold_lab.experiment.stats import describe, holm_adjust
from manifold_lab.kinds import RunRecord

MIN_SEEDS = 3
ALPHA = 0.05
SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive at this scale"
AGAINST = "; the point estimate runs against the prediction"


@dataclass
class Claim:
    """One row of the table (``tests``: the paired tests behind it, for the family table)."""

    claim: str
    paper: str
    ours: str
    verdict: str
    command: str
    tests: list = field(default_factory=list)


# --------------------------------------------------------------------------- reading results

def done_runs(folder: Path) -> list[RunRecord]:
    """The done runs of a results folder ([] when the folder or its plan is missing)."""
    from manifold_lab.experiment.report import aggregate

    if not (folder / "plan.json").exists():
        return []
    return [r for r in aggregate(folder).records if r is not None and r.ok]


def run_counts(folder: Path) -> tuple[int, int, int]:
    """``(planned, done, failed)`` runs of a results folder."""
    from manifold_lab.experiment.report import aggregate

    if not (folder / "plan.json").exists():
        return 0, 0, 0
    records = aggregate(folder).records
    return (len(records), sum(r is not None and r.ok for r in records),
            sum(r is not None and not r.ok for r in records))


def swept_values(folder: Path, key: str) -> list:
    """The planned values of the swept parameter ``key`` (sorted), done or not: a partial sweep
    must not stand in for the whole one."""
    from manifold_lab.experiment.report import aggregate

    return sorted(aggregate(folder).sweep.get(key, [])) if (folder / "plan.json").exists() else []


def per_seed(runs: list[RunRecord], metric: str, fixed: dict | None = None, **kw) -> dict[int, float]:
    """``{seed: metric}`` of the runs whose dotted params equal ``fixed`` (or ``model__width_mult=..`` keywords)."""
    want = {**(fixed or {}), **{k.replace("__", "."): v for k, v in kw.items()}}
    return {r.seed: float(r.metrics[metric]) for r in runs
            if metric in r.metrics and all(r.param(k) == v for k, v in want.items())}


def difference(better: dict[int, float], worse: dict[int, float]) -> dict[int, float]:
    """Per seed ``better - worse`` over the seeds both have."""
    return {s: better[s] - worse[s] for s in sorted(set(better) & set(worse))}


def _pts(summary: dict, scale: float = 100.0, unit: str = " points") -> str:
    """``+1.23 points [0.45, 2.01], n = 5`` from ``describe`` output."""
    if not summary["n"]:
        return "no runs yet"
    mean = f"{scale * summary['mean']:+.2f}{unit}"
    if summary["n"] < 2 or math.isnan(summary["ci_low"]):
        return f"{mean}, n = {summary['n']}"
    return f"{mean} [{scale * summary['ci_low']:+.2f}, {scale * summary['ci_high']:+.2f}], n = {summary['n']}"


def _acc(runs: list[RunRecord], metric: str = "test_acc", fixed: dict | None = None, **kw) -> str:
    """Mean of an accuracy with its 95% interval (t, truncated to [0, 1]), in percent."""
    s = describe(list(per_seed(runs, metric, fixed, **kw).values()), (0.0, 1.0))
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


# --------------------------------------------------------------------------- claims as data

@dataclass(frozen=True)
class PairedTest:
    """One paired test over seeds, oriented so that ``d > 0`` is the prediction.

    ``d = metric(a) - metric(b)`` seed by seed, the arms given as ``{dotted param: value}``
    on top of ``fixed``; with ``across`` (a swept parameter), ``d`` is that gap at the level
    ``narrow`` minus the gap at ``wide`` (``"first"`` / ``"last"`` name the smallest /
    largest *planned* value, so a partial sweep gives no verdict). ``at = (param, level)``
    pins a swept parameter at a planned level (``"last"``: the longest budget). ``alternative`` is
    ``"two-sided"`` or ``"greater"`` (a pre-registered one-sided test); ``role`` is
    ``"verdict"`` or ``"descriptive"``.
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


@dataclass(frozen=True)
class ClaimSpec:
    """One row: the claim, the paper's evidence, the setting, its tests and descriptive extras.

    ``arms``: ``(label, study, metric, params)`` whose mean accuracy the row shows;
    ``gaps``: ``(study, metric, a, b, factor, fixed)`` for the gap at every planned level of
    ``factor`` with its relative size (mean gap / mean metric(a)), the error ratio
    ``(1 - mean metric(b)) / (1 - mean metric(a))`` and the per-seed slope of the gap against
    ``log2(level)`` (``slope=True``); ``stale``: ``(study, params, metric key, note)``, the
    note shown while a done run of that arm lacks the key (made before a fix).
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

    def text(self) -> str:
        if not self.planned:
            return f"{self.spec.label}: {self.spec.study} not run yet"
        p = "" if math.isnan(self.p) else (
            f", paired t p = {self.p:.2g}{' (one-sided)' if self.spec.alternative == 'greater' else ''}, "
            f"Holm-adjusted p = {self.p_adj:.2g}")
        role = "; descriptive" if self.spec.role == "descriptive" else ""
        mixed = ""
        if len(self.devices) > 1:
            mixed = (f"; its runs ran on {_devices_text(self.devices)}, which differ by themselves "
                     "(see \"Same network, two devices\")")
        return f"{self.spec.label} = {_pts(self.summary)}{p} ({self.verdict}{role}{mixed})"


def _devices_text(devices: dict, unit: str = "") -> str:
    """``"CPU (3) and NVIDIA H200 (1)"`` of ``{device label: runs}``."""
    return " and ".join(f"{k} ({v}{unit})" for k, v in sorted(devices.items()))


def _level(value, planned: list):
    if value == "first":
        return planned[0] if planned else None
    if value == "last":
        return planned[-1] if planned else None
    return value


def _arm_filters(test: PairedTest, planned: dict) -> list[dict] | None:
    """The param filters of the arms behind ``d``: a, b (at each compared level with ``across``);
    None when a compared level is not planned."""
    fixed = dict(test.fixed)
    if test.at is not None:
        fixed[test.at[0]] = _level(test.at[1], planned.get(test.at[0], []))
    if test.across is None:
        return [{**fixed, **test.a}, {**fixed, **test.b}]
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
    p = t_pvalue(values, test.alternative) if len(values) >= MIN_SEEDS else float("nan")
    return TestResult(test, d, describe(values), p, devices=test_devices(runs, test, planned, set(d)))


def judge(result: TestResult) -> str:
    """The rule of the module docstring, on the adjusted p-value."""
    n, mean = result.summary["n"], result.summary["mean"]
    if not result.planned:
        return f"not enough runs yet ({result.spec.study} not run yet)"
    if n < MIN_SEEDS:
        return f"not enough runs yet ({n} of {MIN_SEEDS} seeds)"
    if math.isnan(result.p_adj):
        return f"{INCONCLUSIVE} (constant differences: no t test)"
    if result.p_adj < ALPHA and mean > 0:
        return SUPPORTED
    if result.p_adj < ALPHA and mean < 0 and result.spec.alternative == "two-sided":
        return CONTRADICTED
    return INCONCLUSIVE + (AGAINST if mean < 0 else "")


def _gap_text(runs, planned, study, metric, a, b, factor, fixed, slope) -> str:
    """Gap, relative gap and error ratio at every planned level of ``factor``; the slope against log2(level)."""
    parts, gaps = [], {}
    for level in planned:
        at = {**fixed, factor: level}
        acc_a, acc_b = per_seed(runs, metric, {**at, **a}), per_seed(runs, metric, {**at, **b})
        g = difference(acc_a, acc_b)
        gaps[level] = g
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


def _width_of(results: Path, study: str) -> str:
    """The width multiplier a study ran at: its results' ``spec.yaml``, else its experiment file."""
    import yaml

    from manifold_lab.data.base import repo_root
    from manifold_lab.experiment.spec import load_spec

    resolved = results / study / "spec.yaml"
    width = None
    if resolved.exists():
        width = ((yaml.safe_load(resolved.read_text()) or {}).get("params") or {}).get("model", {}).get("width_mult")
    if width is None:
        width = load_spec(repo_root() / "experiments" / f"{study}.yaml").params.model.width_mult
    return f"{width:g}"


def evaluate(specs, results: str | Path = "results") -> list[Claim]:
    """Every ``ClaimSpec`` as a row; Holm adjustment across all the paired tests of all rows."""
    results = Path(results)
    evaluated = [[run_test(results, t) for t in spec.tests] for spec in specs]
    family = [r for rs in evaluated for r in rs]
    for r, adj in zip(family, holm_adjust([r.p for r in family])):
        r.p_adj = adj
        r.verdict = judge(r)
    rows = []
    for spec, rs in zip(specs, evaluated):
        parts = []
        for label, study, metric, params in spec.arms:
            if (results / study / "plan.json").exists():
                parts.append(f"{label} {_acc(done_runs(results / study), metric, params)}")
        for study, metric, a, b, factor, fixed in spec.gaps:
            folder = results / study
            if (folder / "plan.json").exists():
                parts.append(_gap_text(done_runs(folder), swept_values(folder, factor), study, metric, a, b,
                                       factor, fixed, spec.slope))
        parts += [r.text() for r in rs]
        for study in spec.studies:
            devices = devices_of(r.run_dir for r in done_runs(results / study))
            if len(devices) > 1:
                parts.append(f"{study} ran on {_devices_text(devices, ' runs')}: a difference between runs "
                             "of different devices includes the devices' offset")
        for study, params, key, note in spec.stale:
            if any(key not in r.metrics for r in done_runs(results / study)
                   if all(r.param(k) == v for k, v in params.items())):
                parts.append(note)
        verdict = _worst([r.verdict for r in rs if r.spec.role == "verdict"])
        setting = spec.setting.replace("{width}", _width_of(results, spec.studies[0]))
        rows.append(Claim(spec.claim, spec.paper, f"{setting}: " + "; ".join(parts), verdict,
                          "; ".join(f"manifold-lab run experiments/{s}.yaml" for s in spec.studies), rs))
    return rows


_LIN, _RELU6 = {"model.bottleneck_act": "identity"}, {"model.bottleneck_act": "relu6"}
# The penalty-location arms by their stored params: "none" is stored as the linear network
# (manifold_lab/train/config.py), so it is matched by bottleneck_act, and "all" needs relu6 too.
_WHERE = {"none": _LIN, "all": {**_RELU6, "model.bottleneck_act_blocks": "all"},
          "without_shortcut": {**_RELU6, "model.bottleneck_act_blocks": "without_shortcut"},
          "with_shortcut": {**_RELU6, "model.bottleneck_act_blocks": "with_shortcut"}}
_CIFAR = "CIFAR-10 (JPEG copy)"



def _old_rule_count() -> int:
    """Expansion shortcuts of the committed Figure 6b runs (cifar_fast, width 0.5) under the rule before issue 11."""
    from manifold_lab.models import mobilenet_v2
    from manifold_lab.models.mobilenetv2 import expansion_shortcuts_before_issue11

    return expansion_shortcuts_before_issue11(mobilenet_v2("cifar_fast", width_mult=0.5))


_OLD_RULE = _old_rule_count()

#: The paired claims, in table order (``evaluate``); the other rows are ``claim_*`` functions.
PAIRED_CLAIMS = {
    "figure6a": ClaimSpec(
        "Linear bottleneck beats ReLU6 in the bottleneck (Figure 6a)",
        "ImageNet, 16 GPUs: linear ends higher on the 66-72% axis of Figure 6a; section 3.2: "
        "non-linear bottlenecks cost \"several percent\"",
        f"{_CIFAR}, width {{width}}",
        (PairedTest("linear - relu6", "figure6a_linear_bottleneck_cifar10", "test_acc", _LIN, _RELU6),),
        ("figure6a_linear_bottleneck_cifar10",),
        arms=(("linear", "figure6a_linear_bottleneck_cifar10", "test_acc", _LIN),
              ("relu6", "figure6a_linear_bottleneck_cifar10", "test_acc", _RELU6))),
    "figure6b": ClaimSpec(
        "Shortcuts between bottlenecks beat shortcuts between expansions and no shortcut (Figure 6b)",
        "ImageNet: the bottleneck-to-bottleneck curve ends highest in Figure 6b",
        f"{_CIFAR}, width {{width}}",
        tuple(PairedTest(f"bottleneck - {other}", "figure6b_shortcuts_cifar10", "test_acc",
                         {"model.shortcut": "bottleneck"}, {"model.shortcut": other})
              for other in ("expansion", "none")),
        ("figure6b_shortcuts_cifar10",),
        arms=tuple((k, "figure6b_shortcuts_cifar10", "test_acc", {"model.shortcut": k})
                   for k in ("bottleneck", "expansion", "none")),
        stale=(("figure6b_shortcuts_cifar10", {"model.shortcut": "expansion"}, "shortcuts",
                f"**the expansion arm's runs predate issue 11: they had {_OLD_RULE} shortcuts against the "
                "bottleneck arm's 10 (old rule: both blocks keep their shape), so this contrast mixes "
                "placement with count; rerun: `manifold-lab run experiments/figure6b_shortcuts_cifar10.yaml`**"),)),
    "width": ClaimSpec(
        "The ReLU6-bottleneck penalty grows as the bottleneck narrows",
        "The mechanism of sections 3.2 and Appendix A (ReLU on a narrow layer collapses the manifold; "
        "Figure 1); Figure 6 itself is at one width",
        "width multiplier study (expanded layers and bottlenecks scaled together, so it does not isolate the "
        f"bottleneck; {_CIFAR}) and toy (two spirals in R^10, classify)",
        (PairedTest("CIFAR-10: gap at the narrowest minus gap at the widest width multiplier",
                    "width_sweep_cifar10", "test_acc", _LIN, _RELU6, across="model.width_mult"),
         PairedTest("toy: gap at the narrowest minus gap at the widest bottleneck", "toy_bottleneck_at_scale",
                    "test_accuracy", _LIN, _RELU6, fixed={"data.task": "classify"}, across="model.width")),
        ("width_sweep_cifar10", "toy_bottleneck_at_scale"),
        gaps=(("width_sweep_cifar10", "test_acc", _LIN, _RELU6, "model.width_mult", {}),
              ("toy_bottleneck_at_scale", "test_accuracy", _LIN, _RELU6, "model.width",
               {"data.task": "classify"}))),
    "bottleneck_width": ClaimSpec(
        "The ReLU6 penalty grows as only the bottleneck narrows (expanded layers fixed)",
        "The mechanism of section 3.2 (the bottleneck's dimension against what flows through it); "
        "not tested in the paper",
        f"{_CIFAR}, width {{width}}, expanded layers fixed (t k) as the bottleneck narrows; pre-registered in "
        "experiments/bottleneck_width_cifar10.yaml",
        (PairedTest("gap at the narrowest minus gap at the widest bottleneck", "bottleneck_width_cifar10",
                    "test_acc", _LIN, _RELU6, across="model.bottleneck_mult", alternative="greater"),),
        ("bottleneck_width_cifar10",),
        gaps=(("bottleneck_width_cifar10", "test_acc", _LIN, _RELU6, "model.bottleneck_mult", {}),),
        slope=True),
    "budget": ClaimSpec(
        "The ReLU6 penalty is not slow fitting: it persists as training converges",
        "Section 3.2 attributes the penalty to information loss, not to optimisation; not tested in the paper",
        f"{_CIFAR}, width {{width}}, linear vs relu6 at several budgets; pre-registered in "
        "experiments/budget_ladder_cifar10.yaml",
        (PairedTest("linear - relu6 at the longest budget", "budget_ladder_cifar10", "test_acc", _LIN, _RELU6,
                    at=("train.epochs", "last")),
         PairedTest("gap at the shortest minus gap at the longest budget (> 0: the gap shrinks)",
                    "budget_ladder_cifar10", "test_acc", _LIN, _RELU6, across="train.epochs",
                    role="descriptive")),
        ("budget_ladder_cifar10",),
        gaps=(("budget_ladder_cifar10", "test_acc", _LIN, _RELU6, "train.epochs", {}),
              ("budget_ladder_cifar10", "clean_train_acc", _LIN, _RELU6, "train.epochs", {}))),
    "penalty_location": ClaimSpec(
        "The ReLU6 penalty comes from the blocks without a shortcut",
        "Section 3.2's mechanism: where the whole representation passes through the bottleneck (7 of 17 "
        "blocks), a ReLU6 there loses information no shortcut carries around; not tested in the paper",
        f"{_CIFAR}, width {{width}}, ReLU6 in all / only shape-changing / only shortcut blocks; pre-registered in "
        "experiments/penalty_location_cifar10.yaml",
        (PairedTest("ReLU6 only with shortcut - ReLU6 only without", "penalty_location_cifar10", "test_acc",
                    _WHERE["with_shortcut"], _WHERE["without_shortcut"]),
         PairedTest("penalty of ReLU6 without shortcut (none - without_shortcut)", "penalty_location_cifar10",
                    "test_acc", _WHERE["none"], _WHERE["without_shortcut"], role="descriptive"),
         PairedTest("penalty of ReLU6 with shortcut (none - with_shortcut)", "penalty_location_cifar10",
                    "test_acc", _WHERE["none"], _WHERE["with_shortcut"], role="descriptive")),
        ("penalty_location_cifar10",),
        arms=tuple((k, "penalty_location_cifar10", "test_acc", v) for k, v in _WHERE.items())),
}


def layers_below_threshold(run: RunRecord, when: str = "final") -> tuple[int, int] | None:
    """``(layers whose mean positive-channel count is below their threshold, layers)`` from ``relu_stats.json``
    (``manifold_lab.train.relu_stats.layers_below_threshold``), or None without statistics."""
    from manifold_lab.train.relu_stats import layers_below_threshold as below

    data = _relu_stats(run)
    if data is None:
        return None
    with _damaged(run.run_dir / "relu_stats.json", "manifold-lab run with the study's spec (--force for this run)"):
        return below(data.get(when) or [])


def _relu_stats(run: RunRecord) -> dict | None:
    """The run's ``relu_stats.json`` (None when absent); a damaged one is one UsageError line naming it."""
    path = run.run_dir / "relu_stats.json"
    if not path.exists():
        return None
    with _damaged(path, "manifold-lab run with the study's spec (--force for this run)"):
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"expected a mapping, got {type(data).__name__}")
    return data


def old_sample(run: RunRecord) -> bool:
    """True when a run's Figure 7 statistics predate issue 11 (no class-balanced ``sample`` recorded)."""
    data = _relu_stats(run)
    return data is not None and "sample" not in data


def claim_figure7(results: Path) -> Claim:
    folder = results / "figure6a_linear_bottleneck_cifar10"
    runs = done_runs(folder)
    parts, counts = [], []
    old = sum(old_sample(r) for r in runs)
    for act in ("identity", "relu6"):
        for when in ("step0", "final"):
            found = [x for x in (layers_below_threshold(r, when) for r in runs
                                 if r.param("model.bottleneck_act") == act) if x]
            if when == "final":
                counts += [below for below, _ in found]
            if found:
                parts.append(f"{'linear' if act == 'identity' else act} {when}: "
                             f"{', '.join(str(b) for b, _ in found)} of {found[0][1]} layers below (per seed)")
    if len(counts) < 2 * MIN_SEEDS:
        v = f"not enough runs yet ({len(counts)} of {2 * MIN_SEEDS} trained networks)"
    else:
        v = SUPPORTED if max(counts) <= 2 else CONTRADICTED
    note = (f" **{old} of {len(runs)} runs predate issue 11: their statistics come from the first 256 test "
            "images of a class-sorted split (all one class), with the threshold C/6 for every layer and step 0 on "
            "fresh running statistics; without checkpoints they are recomputed only by rerunning the study.**"
            if old else "")
    return Claim(
        "Trained layers stay above the invertibility threshold (Figure 7)",
        "ImageNet MobileNetV2: fully trained, all but two ReLU layers have a mean positive-channel count "
        "above C/6",
        f"{_CIFAR}, ReLU layers whose mean positive-channel count is below the layer's threshold (the "
        f"dimension entering it: C/t for an expansion) on a class-balanced test sample: "
        f"{'; '.join(parts) or 'no runs yet'}. Rule: supported if at most 2 layers are below in "
        f"every trained network.{note}",
        v, "manifold-lab run experiments/figure6a_linear_bottleneck_cifar10.yaml")


#: Largest CSV a claim reads (the committed ones are a few kilobytes).
MAX_CSV_BYTES = 16 << 20


def _csv_rows(path: Path) -> list[dict]:
    """The rows of a results CSV (``csv.DictReader``), at most ``MAX_CSV_BYTES`` read."""
    if path.stat().st_size > MAX_CSV_BYTES:
        raise ValueError(f"larger than {MAX_CSV_BYTES:,} bytes")
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@contextmanager
def _damaged(path: Path, command: str) -> Iterator[None]:
    """Turn any error reading a results file (CSV, JSON) into one UsageError line naming the file and the fix."""
    try:
        yield
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError, csv.Error) as exc:
        what = f"missing column {exc}" if isinstance(exc, KeyError) else " ".join(str(exc).split())
        raise UsageError(f"{path} is damaged or empty ({what}); regenerate it with {command}") from None


def claim_theorem1(results: Path) -> Claim:
    path = results / "theorem1" / "theorem1.csv"
    cmd = "manifold-lab theorem"
    if not path.exists():
        return Claim("Theorem 1: kept fraction N(m,n)/2^m", "proof", "not run yet", "not run yet", cmd)
    with _damaged(path, cmd):
        rows = [r for r in _csv_rows(path) if float(r["stderr"]) > 0]
        z = [abs(float(r["z"])) for r in rows]
        ms, ns = sorted({int(r["m"]) for r in rows}), sorted({int(r["n"]) for r in rows})
        if not z:
            raise ValueError("no row with a positive stderr")
    bound = float(sps.norm.ppf(1 - 0.025 / len(z)))  # Bonferroni: all points together at 95%
    return Claim(
        "Theorem 1: ReLU(Bx) keeps the fraction N(m,n)/2^m of an n-dimensional set",
        "Proof in Appendix A (no simulation in the paper)",
        f"Monte Carlo on the unit n-ball, m = {ms[0]}-{ms[-1]}, n = {', '.join(map(str, ns))}: "
        f"{len(z)} points with sampling error, largest |z| = {max(z):.2f}, {sum(x <= 3 for x in z)} of "
        f"{len(z)} within 3 s.e. Rule: supported if every |z| is below the Bonferroni 95% bound "
        f"{bound:.2f}",
        SUPPORTED if max(z) < bound else CONTRADICTED, cmd)


def claim_figure1(results: Path) -> Claim:
    path = results / "figure1_spiral" / "summary.csv"
    cmd = "manifold-lab run experiments/figure1_spiral.yaml"
    if not path.exists():
        return Claim("Figure 1", "", "not run yet", "not run yet", cmd)
    with _damaged(path, cmd):
        rows = _csv_rows(path)
        if not rows:
            raise ValueError("no data row")
        row = rows[0]

        def cf(n):
            return {k: float(row[f"collapsed_fraction_n{n}_{k}"]) for k in ("mean", "ci_low", "ci_high", "n")}

        low, high = [cf(n) for n in (2, 3)], [cf(n) for n in (15, 30)]
    ok = all(c["ci_low"] > 0 for c in low) and all(c["ci_high"] < 0.01 for c in high)
    text = "; ".join(f"n = {n}: {100 * c['mean']:.1f}% [{100 * c['ci_low']:.1f}, {100 * c['ci_high']:.1f}]"
                     for n, c in zip((2, 3, 15, 30), low + high))
    return Claim(
        "Figure 1: a 2-D spiral collapses through ReLU in R^2 and R^3 and survives in R^15 and R^30",
        "Figure 1 (pictures only)",
        f"collapsed fraction of the spiral (2,000 points, {int(low[0]['n'])} seeds): {text}. Rule: supported "
        "if the interval at n = 2, 3 lies above 0 and at n = 15, 30 below 1%",
        SUPPORTED if ok else CONTRADICTED, cmd)


PROBE_COMMAND = "manifold-lab probe-correlation --out results/probe_penalty_correlation"


def claim_probe_correlation(results: Path) -> Claim:
    """Beyond the paper (issue 12): does the information the bottlenecks lose predict the ReLU6 penalty?
    The rule pre-registered in ``experiments/probe_penalty_correlation.md`` (``probe_correlation.verdict``)."""
    from manifold_lab.experiment import probe_correlation as P

    got = P.analyse(results)
    studies = sorted({c["study"] for c in got["conditions"]})
    rho = (f"Spearman rho = {got['rho']:+.2f} [{got['ci_low']:+.2f}, {got['ci_high']:+.2f}] (95% bootstrap)"
           if got["n"] >= 3 else "no correlation yet")
    return Claim(
        "Beyond the paper: the information the bottlenecks lose predicts the ReLU6 penalty",
        "Implied by section 3.2 (the penalty comes from information lost in the bottleneck), never tested; "
        "pre-registered in experiments/probe_penalty_correlation.md",
        f"{got['n']} conditions ({', '.join(studies) or 'none yet'}), loss = drop of the block-input R^2 "
        f"(probe, trained networks), penalty = linear - relu6 accuracy: {rho}",
        got["verdict"], PROBE_COMMAND)


def claim_id_profile(results: Path) -> Claim:
    """External check (Ansuini et al. 2019): described by the pre-registered shape rules, no verdict rule."""
    from manifold_lab.experiment import id_profile as G

    by = G.shares(G.run_profiles(results))
    ours = "; ".join(f"{v}: hunchback after training in {s['hunchback_final']} of {s['runs']} networks, flat at "
                     f"step 0 in {s['flat_step0']} of {s['runs']}" for v, s in sorted(by.items()))
    return Claim(
        "Beyond the paper: trained networks' intrinsic dimension rises then falls through depth, untrained ones' "
        "is flat (Ansuini et al. 2019)",
        "Ansuini et al. (NeurIPS 2019), ImageNet CNNs; not in the MobileNetV2 paper",
        f"CIFAR-10 (JPEG copy), TwoNN of every block output (probe, 100 test images): {ours}" if by else
        "no CIFAR-10 run with the probe yet",
        "described (share of networks; no verdict rule was pre-registered)" if by else "not enough runs yet",
        PROBE_COMMAND)


#: The rows in table order: a key of ``PAIRED_CLAIMS`` or a function of the results folder.
CLAIMS = ("figure6a", "figure6b", "width", "bottleneck_width", "budget", "penalty_location", claim_figure7,
          claim_theorem1, claim_figure1, claim_probe_correlation, claim_id_profile)


def claims(results: str | Path = "results") -> list[Claim]:
    """Every claim row, computed from the results folders under ``results`` (one Holm family)."""
    paired = dict(zip([k for k in CLAIMS if isinstance(k, str)],
                      evaluate([PAIRED_CLAIMS[k] for k in CLAIMS if isinstance(k, str)], results)))
    return [paired[k] if isinstance(k, str) else k(Path(results)) for k in CLAIMS]


# --------------------------------------------------------------------------- results/README.md

STUDIES = (
    ("figure1_spiral", "Figure 1 over ten seeds"),
    ("theorem1_collapse", "Theorem 1 over an (m, n) grid"),
    ("recoverability_depth", "recoverability through stacks of random blocks"),
    ("toy_linear_bottleneck", "toy ablation, 5 seeds, widths 1-8"),
    ("toy_bottleneck_at_scale", "toy ablation at scale, 20 seeds, widths 1-16"),
    ("figure6a_linear_bottleneck_cifar10", "Figure 6a on CIFAR-10 (JPEG copy)"),
    ("figure6b_shortcuts_cifar10", "Figure 6b on CIFAR-10 (JPEG copy)"),
    ("width_sweep_cifar10", "width multiplier study: width 0.25 / 0.5 / 1.0 x linear / relu6 (every layer "
                            "scaled, the expansion ratio unchanged: tests the whole network's width)"),
    ("bottleneck_width_cifar10", "bottleneck width study: bottleneck multiplier 1 / 0.5 / 0.25 x linear / relu6, "
                                 "expanded layers fixed (tests the bottleneck's dimension, section 3.2)"),
    ("budget_ladder_cifar10", "budget ladder: 20 / 40 / 80 epochs x linear / relu6"),
    ("penalty_location_cifar10", "penalty location: ReLU6 in all / shape-changing / shortcut blocks only"),
)

BUDGET_SPEC = "experiments/figure6a_linear_bottleneck_cifar10.yaml"


def budget_numbers(results: str | Path = "results", spec: str = BUDGET_SPEC) -> dict:
    """The CIFAR budget as numbers read from its configuration (and run times from the run records).

    ``train_images = subset x classes``, ``steps = epochs x (train_images // batch_size)`` (the
    training loader drops the last incomplete batch), ``test_images = eval_subset x classes``;
    ``minutes``: the median wall time of the study's done runs (``status.json``), or None.
    """
    from manifold_lab.data.base import repo_root
    from manifold_lab.experiment.spec import load_spec

    path = Path(spec) if Path(spec).exists() else repo_root() / spec
    spec_obj = load_spec(path)
    cfg = spec_obj.params
    classes = 100 if cfg.data.name == "cifar100" else 10
    train_images = cfg.data.subset * classes
    seconds = []
    for r in done_runs(Path(results) / Path(spec).stem):
        status = r.run_dir / "status.json"
        if status.exists():
            seconds.append(float(json.loads(status.read_text()).get("seconds") or 0))
    return {"per_class": cfg.data.subset, "train_images": train_images, "test_per_class": cfg.data.eval_subset,
            "test_images": cfg.data.eval_subset * classes, "epochs": cfg.train.epochs,
            "batch_size": cfg.data.batch_size, "steps": cfg.train.epochs * (train_images // cfg.data.batch_size),
            "width": cfg.model.width_mult, "preset": cfg.model.preset, "jobs": spec_obj.jobs,
            "threads": cfg.train.threads, "minutes": statistics.median(seconds) / 60 if seconds else None}


def _scale(results) -> str:
    b = budget_numbers(results)
    at_once = (f", {b['jobs']} runs at a time with {b['threads']} torch thread(s) each" if b["jobs"] > 1 else "")
    minutes = (f" A width-{b['width']:g} run took {b['minutes']:.1f} minutes (median of the Figure 6a runs"
               f"{at_once})." if b["minutes"] else "")
    return f"""\
## How this scale differs from the paper's

The paper trains MobileNetV2 on ImageNet (1.28M images, 224 x 224) for about
7 million steps on 16 GPUs, RMSProp, and reports one run per variant with no
spread. The CIFAR-10 studies here run on a 2-core CPU: CIFAR-10 (JPEG copy),
32 x 32 images, {b['per_class']:,} training images per class ({b['train_images']:,} of the 50,000), \
{b['test_per_class']:,} test images per class ({b['test_images']:,}), the `{b['preset']}` strides, width \
{b['width']:g} (except the width studies), {b['epochs']} epochs of SGD with a cosine schedule \
({b['steps']:,} steps of batch {b['batch_size']}, the last incomplete batch of each epoch dropped), \
channels_last; budget and reasoning in `configs/cifar_cpu_budget.yaml` (these numbers are read from \
`{BUDGET_SPEC}`).{minutes} Accuracies are far below the paper's and the networks are
small-data, few-step networks: a verdict of *inconclusive at this scale* means
exactly that, not that the paper is wrong. The toy, Theorem 1 and Figure 1
studies are at full scale (they are cheap).

With GPUs, go further with the paper's own recipe:

    manifold-lab run experiments/imagenet_paper_recipe.yaml params.data.root=/path/to/imagenet
    torchrun --nproc_per_node=8 -m manifold_lab train experiments/imagenet_paper_recipe.yaml ...

or the CIFAR studies at full data and longer schedules, for example
`manifold-lab run experiments/figure6a_linear_bottleneck_cifar10.yaml params.data.subset=null
params.train.epochs=200 sweep.seeds=[0,1,2,3,4] --out results/figure6a_full`.
"""


def _family_table(rows: list[Claim]) -> list[str]:
    """Every paired test of the table: n, mean difference, raw and Holm-adjusted p, verdict."""
    lines = ["## The paired tests (one Holm family)", "",
             "Raw p: paired t test on the per-seed differences (one-sided where pre-registered); adjusted p: "
             f"Holm's step-down adjustment over the {sum(not math.isnan(t.p) for c in rows for t in c.tests)} "
             f"tests below that have a p-value; verdicts at adjusted p < {ALPHA:g}.", "",
             "| claim | test | n | mean difference (points) | raw p | adjusted p | verdict |",
             "|---|---|---|---|---|---|---|"]
    for c in rows:
        for t in c.tests:
            mean = "" if not t.summary["n"] else f"{100 * t.summary['mean']:+.2f}"
            p = "" if math.isnan(t.p) else f"{t.p:.2g}{' (one-sided)' if t.spec.alternative == 'greater' else ''}"
            adj = "" if math.isnan(t.p_adj) else f"{t.p_adj:.2g}"
            role = " (descriptive)" if t.spec.role == "descriptive" else ""
            cells = [c.claim, t.spec.label, str(t.summary["n"]), mean, p, adj, t.verdict + role]
            lines.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
    return lines + [""]


def render(rows: list[Claim], results: str | Path = "results") -> str:
    """``results/README.md``: the rule, the claim table, the scale note and the studies."""
    results = Path(results)
    lines = [
        "# Results: does the paper's claim hold?", "",
        "Generated by `manifold-lab claims` from the results folders below; every number comes from a "
        "committed run record and every verdict from one rule (`manifold_lab/experiment/claims.py`, where "
        "each paired claim is a declarative spec): for a claim stated as a paired difference over seeds, "
        "oriented so that the paper predicts a positive difference, the paired t test's p-value is adjusted "
        "for multiple testing by Holm's procedure across every paired test of the table (family-wise error "
        f"5%; raw and adjusted p in the table below it); *supported* if the adjusted p is below {ALPHA:g} and "
        "the mean difference positive, *contradicted* if it is below and the mean negative (two-sided tests), "
        f"*inconclusive at this scale* otherwise, and *not enough runs yet* with fewer than {MIN_SEEDS} seeds. "
        "A row that needs several differences takes the weakest verdict among them. Differences are in "
        "percentage points of test accuracy; intervals are unadjusted 95% t intervals.", "",
        "| claim of the paper | the paper's evidence | ours | verdict | regenerate |",
        "|---|---|---|---|---|",
    ]
    for c in rows:
        cells = [c.claim, c.paper, c.ours, f"**{c.verdict}**", f"`{c.command}`"]
        lines.append("| " + " | ".join(x.replace("|", "\\|").replace("\n", " ") for x in cells) + " |")
    from manifold_lab.experiment.device_check import section

    lines += [""] + _family_table(rows) + section(results) + [_scale(results), "## The studies", "",
              "| study | what | runs (done / planned, failed) | trained on | report |", "|---|---|---|---|---|"]
    for name, what in STUDIES:
        planned, done, failed = run_counts(results / name)
        report = f"[{name}/report.md]({name}/report.md)" if (results / name / "report.md").exists() else "not run yet"
        devices = devices_of(r.run_dir for r in done_runs(results / name))
        where = _devices_text(devices) if len(devices) > 1 else (next(iter(devices)) if devices else "")
        where = where.replace("unknown", "not recorded")  # runs that predate provenance.json
        lines.append(f"| {name} | {what} | {done} / {planned}, {failed} failed | {where} | {report} |")
    lines += ["", "Figure 1 and Theorem 1 as single commands: [figure1/](figure1/) (`manifold-lab spiral`), "
              "[theorem1/](theorem1/) (`manifold-lab theorem`). Table 3: [table3/](table3/table3.md) "
              "(`manifold-lab models --table3`). Beyond the paper, the lost information against the ReLU6 penalty and "
              "the ID profiles: [probe_penalty_correlation/](probe_penalty_correlation/report.md) "
              f"(`{PROBE_COMMAND}`).", ""]
    return "\n".join(lines)
