"""Aggregation: summary.csv, comparisons.csv and report.md against hand computations."""

import csv
import itertools
import math
import re

import numpy as np
import pytest
from kinds_for_tests import KIND, cli, write_spec
from scipy import stats

from manifold_lab.errors import UsageError
from manifold_lab.reporting.report import write_report
from manifold_lab.execution.runner import run_experiment
from manifold_lab.spec.load import load_spec
from manifold_lab.stats import bounded_interval, describe, paired, t_interval, wilcoxon_min_pairs
from manifold_lab.kinds import register

register(KIND)

SEEDS = [0, 1, 2, 3, 4]
SPEC = """\
name: agg
kind: closed_form
description: Closed-form metrics for checking the aggregation.
params: {fail_seeds: [4]}
sweep:
  a: [1.0, 3.0]
  b: [0, 10]
  seeds: [0, 1, 2, 3, 4]
"""


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def hand_interval(x):
    """x̄ ± t s/√n with the t quantile from the table of Student's t (scipy only for the quantile)."""
    x = np.asarray(x, float)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return x.mean() - half, x.mean() + half


def exact_wilcoxon_p(d):
    """Two-sided exact signed-rank p-value by enumerating all 2^n sign patterns (no ties, no zeros)."""
    ranks = stats.rankdata(np.abs(d))
    observed = ranks[np.asarray(d) > 0].sum()
    total = ranks.sum()
    null = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product([0, 1], repeat=len(d))]
    tail = min(observed, total - observed)
    return min(1.0, 2 * np.mean([w <= tail for w in null]))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("agg")
    spec = load_spec(write_spec(folder / "agg.yaml", SPEC))
    summary = run_experiment(spec, out=folder / "out", report=write_report)
    assert (summary.done, len(summary.failed)) == (16, 4)  # seed 4 fails everywhere
    return folder / "out"


def test_summary_matches_a_hand_computation(results):
    rows = read_csv(results / "summary.csv")
    assert [(float(r["a"]), int(r["b"])) for r in rows] == [(1.0, 0), (1.0, 10), (3.0, 0), (3.0, 10)]
    done_seeds = np.array([0, 1, 2, 3])  # seed 4 failed: not averaged
    for row in rows:
        a, b = float(row["a"]), int(row["b"])
        assert (row["runs"], row["done"], row["failed"]) == ("5", "4", "1")
        y = a * (done_seeds + 1) + b  # the kind's closed form
        assert float(row["y_mean"]) == pytest.approx(y.mean(), rel=1e-12)
        assert float(row["y_std"]) == pytest.approx(np.sqrt(((y - y.mean()) ** 2).sum() / 3), rel=1e-12)
        low, high = hand_interval(y)
        assert (float(row["y_ci_low"]), float(row["y_ci_high"])) == pytest.approx((low, high), rel=1e-12)
        assert row["y_n"] == "4"
        assert float(row["z_mean"]) == pytest.approx(a**2 + done_seeds.mean(), rel=1e-12)
    # Non-numeric or non-scalar metrics (a bool, a string, a list) are not averaged.
    assert not any(c.startswith(("flag_", "label_", "curve_")) for c in rows[0])


def test_paired_comparison_matches_a_hand_computation(results):
    rows = read_csv(results / "comparisons.csv")
    # Factor a (1 -> 3) with b held at 0: d = (3 - 1) * (seed + 1) for the 4 shared done seeds.
    (row,) = [r for r in rows if r["factor"] == "a" and r["b"] == "0" and r["metric"] == "y"]
    d = 2.0 * (np.array([0, 1, 2, 3]) + 1)
    t = d.mean() / (d.std(ddof=1) / math.sqrt(4))
    assert (row["value_a"], row["value_b"], row["n"]) == ("1.0", "3.0", "4")
    assert float(row["mean_diff"]) == pytest.approx(d.mean(), rel=1e-12)
    assert (float(row["diff_ci_low"]), float(row["diff_ci_high"])) == pytest.approx(hand_interval(d), rel=1e-12)
    assert float(row["t_stat"]) == pytest.approx(t, rel=1e-12)
    assert float(row["t_pvalue"]) == pytest.approx(2 * stats.t.sf(t, 3), rel=1e-9)
    # 4 pairs: the smallest two-sided exact p is 2/16 > 0.05, so no Wilcoxon test is reported.
    assert math.isnan(float(row["wilcoxon_pvalue"]))
    assert row["note"] == "4 non-zero pairs: too few for a Wilcoxon test to reach p < 0.05 (needs >= 6)"
    # Factor b (0 -> 10): y differs by exactly 10 on every seed, z not at all.
    (row,) = [r for r in rows if r["factor"] == "b" and r["a"] == "1.0" and r["metric"] == "y"]
    assert float(row["mean_diff"]) == 10.0 and math.isnan(float(row["t_pvalue"]))
    assert row["note"].startswith("constant differences: t undefined; 4 non-zero pairs: too few")
    (row,) = [r for r in rows if r["factor"] == "b" and r["a"] == "1.0" and r["metric"] == "z"]
    assert math.isnan(float(row["wilcoxon_pvalue"])) and row["note"] == "all differences are zero: no test"
    # 2 factors x 2 settings of the other x 1 pair x 3 numeric metrics (y, z, w; no bookkeeping one).
    assert len(rows) == 2 * 2 * 1 * 3


def test_report_lists_runs_failures_command_and_kind_items(results):
    report = (results / "report.md").read_text()
    assert re.search(r"^    manifold-lab run \S*agg\.yaml --out \S*out$", report, re.M)
    assert re.search(r"^    manifold-lab report \S*out$", report, re.M)
    assert "20 runs: 16 done, 4 failed, 0 not run" in report
    assert report.count("RuntimeError: asked to fail for seed 4") == 4
    assert report.count("| failed | RuntimeError: asked to fail for seed 4 |") == 4  # the failed runs' table
    assert "sum of y over 16 runs: " + str(sum(a * (s + 1) + b for a in (1.0, 3.0) for b in (0, 10) for s in range(4))) in report
    assert "![a stand-in figure](figures/closed_form.txt)" in report
    # The report is regenerated from the files alone, identically.
    before = {p: p.read_text() for p in (results / "report.md", results / "summary.csv", results / "comparisons.csv")}
    write_report(results)
    assert {p: p.read_text() for p in before} == before


def test_describe_and_paired_degenerate_cases():
    one = describe([2.5])
    assert one["mean"] == 2.5 and one["n"] == 1 and math.isnan(one["std"]) and math.isnan(one["ci_low"])
    assert describe([])["n"] == 0
    single = paired([1.0], [2.0])
    assert single["n"] == 1 and single["mean_diff"] == 1.0 and math.isnan(single["t_pvalue"])
    assert "no test" in single["note"]
    some_zero = paired([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], [1.0, 3.0, 5.0, 4.5, 5.5, 7.25, 8.75])
    assert "dropped 1 zero difference" in some_zero["note"] and not math.isnan(some_zero["wilcoxon_pvalue"])
    with pytest.raises(ValueError, match="equal length"):
        paired([1.0, 2.0], [1.0])


def test_report_command_on_a_folder_without_results(tmp_path):
    out = cli("report", tmp_path, cwd=tmp_path)
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert "holds no spec.yaml" in line
    with pytest.raises(UsageError, match="results folder not found"):
        write_report(tmp_path / "nope")


def test_a_broken_kind_report_keeps_the_tables_and_is_reported(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = load_spec(write_spec(tmp_path / "s.yaml", SPEC), ["params.fail_report=true", "params.fail_seeds=[]"])
    summary = run_experiment(spec, report=write_report)
    assert summary.report_error == "RuntimeError: asked to fail the report"
    report = (spec.output / "report.md").read_text()
    assert "_The kind's report failed: RuntimeError: asked to fail the report_" in report
    assert "## The answer" in report and "| w | y | z | seeds |" in report and (spec.output / "summary.csv").exists()
    out = cli("report", spec.output, cwd=tmp_path)
    assert out.returncode == 1 and "asked to fail the report" in out.stderr


def test_wilcoxon_only_where_p_below_005_is_reachable():
    """The smallest exact two-sided p of n pairs is 2/2^n: 0.0625 at n = 5, 0.03125 at n = 6."""
    assert wilcoxon_min_pairs() == 6 and wilcoxon_min_pairs(alternative="greater") == 5
    assert wilcoxon_min_pairs(alpha=0.01) == 8  # 2/2^7 = 0.0156, 2/2^8 = 0.0078
    five = paired([0.0] * 5, [1.0, 2.0, 3.0, 4.0, 5.0])
    assert math.isnan(five["wilcoxon_pvalue"]) and "too few for a Wilcoxon test" in five["note"]
    assert five["t_pvalue"] < 0.05  # the t-test still runs
    d = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    six = paired([0.0] * 6, d)
    assert six["wilcoxon_pvalue"] == pytest.approx(exact_wilcoxon_p(d), rel=1e-12) == pytest.approx(2 / 64)


def test_bounded_interval_stays_inside_0_and_1():
    near_one = [1.0, 1.0, 0.99, 0.80]  # the t interval of the mean runs past 1
    t_low, t_high = describe(near_one)["ci_low"], describe(near_one)["ci_high"]
    assert t_high > 1.0
    # Truncated at 1, the lower end is the t interval's own (same width below the mean).
    assert bounded_interval(near_one) == (pytest.approx(t_low), 1.0)
    near_zero = [0.0, 0.0, 0.01, 0.2]  # the same at 0
    assert describe(near_zero)["ci_low"] < 0
    assert bounded_interval(near_zero) == (0.0, pytest.approx(describe(near_zero)["ci_high"]))
    assert describe(near_zero, (0, 1))["ci_low"] == 0.0
    assert bounded_interval([1.0, 1.0, 1.0]) == (1.0, 1.0) and bounded_interval([0.0, 0.0]) == (0.0, 0.0)
    assert all(math.isnan(v) for v in bounded_interval([0.5]))
    # Skewed: five 1.0s and one 0.4; the mean 0.9 stays inside (a logit-scale t interval left it out).
    low, high = bounded_interval([1, 1, 1, 1, 1, 0.4])
    assert low < 0.9 < high == 1.0
    # Well inside the bounds it is the t interval itself.
    mid = [0.61, 0.63, 0.64, 0.62, 0.65]
    assert bounded_interval(mid) == pytest.approx(t_interval(mid))
    # Other bounds, and values outside them are an error.
    assert bounded_interval([-1.0, -0.9, -1.0], -1, 1)[0] == -1.0
    with pytest.raises(ValueError, match="outside"):
        bounded_interval([0.5, 1.2])


CONTRAST_SPEC = """\
name: con
kind: closed_form
description: A declared contrast.
contrast: {factor: b, a: 0, b: 10, metric: y}
params: {a: 2.0}
sweep:
  a: [1.0, 4.0, 16.0, 2.0]
  b: [0, 10]
  seeds: [0, 1, 2, 3, 4, 5]
"""


def test_report_opens_with_the_declared_contrast_and_plots_numeric_factors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = load_spec(write_spec(tmp_path / "con.yaml", CONTRAST_SPEC))
    assert spec.contrast == {"factor": "b", "a": 0, "b": 10, "metric": "y"}
    run_experiment(spec, report=write_report)
    report = (spec.output / "report.md").read_text()
    first_screen = report.splitlines()[:20]
    assert "## The answer" in first_screen
    assert "**y: 10 - 0** (`b`, the contrast this study declares), paired over the seeds both completed:" in first_screen
    # y(b=10) - y(b=0) = 10 on every seed: mean 10, a zero-width interval; one row per value of a, numeric order.
    rows = [line for line in first_screen if line.startswith("| ") and line.endswith(" |") and "mean 0" not in line]
    assert [row.split(" | ")[0] for row in rows] == ["| 1", "| 2", "| 4", "| 16"]
    assert all(" | 6 | " in row and " | +10 | [+10, +10] | " in row for row in rows)
    # The main figure comes with the answer; the plot against the numeric factor a follows.
    assert report.index("![a stand-in figure]") < report.index("## Against each swept numeric factor")
    assert "![y against a](figures/y_vs_a.png)" in report and (spec.output / "figures" / "y_vs_a.png").exists()
    assert report.count("\n") < 120  # about a page


def test_a_bad_contrast_is_one_line_naming_the_choices(tmp_path, monkeypatch, capsys):
    # In this process (the command's exit status and stderr, without a start of Python per case;
    # the one-line promise across a process boundary is tests/test_spec.py's)
    from manifold_lab.cli import main

    monkeypatch.chdir(tmp_path)
    write_spec(tmp_path / "con.yaml", CONTRAST_SPEC)
    for override, expected in [
        ("contrast.factor=c", "contrast.factor 'c' is not a swept parameter; swept: a, b"),
        ("contrast.b=5", "contrast.b 5 is not a value of sweep.b; values: 0, 10"),
        ("contrast.metrc=y", "unknown key 'contrast.metrc' (did you mean 'metric'?)"),
        ("contrast.b=0", "contrast.a and contrast.b are the same value 0"),
    ]:
        status, err = main(["run", "con.yaml", override, "--dry-run"]), capsys.readouterr().err
        assert status == 2 and expected in err and err.count("\n") == 1, err
    assert main(["run", "con.yaml", "contrast=null", "sweep.b=[0]", "--dry-run"]) == 0
    assert not (tmp_path / "runs").exists()
