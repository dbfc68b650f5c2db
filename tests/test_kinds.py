"""The manifold experiment kinds: run() on tiny params, report(), and the quickstart end to end."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from manifold_lab.kinds import ReportContext, RunContext, RunRecord, get_kind

REPO = Path(__file__).resolve().parents[1]


def _run(kind_name, params, seed, tmp_path):
    kind = get_kind(kind_name)
    p = kind.params.model_validate(params)
    run_dir = tmp_path / "runs" / f"{kind_name}-{seed}-{len(list(tmp_path.glob('runs/*')))}"
    run_dir.mkdir(parents=True)
    metrics = kind.run(p, seed, RunContext(run_dir, seed, logging.getLogger("test")))
    return p, metrics, RunRecord(run_dir.name, p.model_dump(), seed, "done", metrics, run_dir)


def _finite_scalars(metrics, keys):
    missing = set(keys) - set(metrics)
    assert not missing, f"missing metric keys {sorted(missing)}"
    for k in keys:
        assert isinstance(metrics[k], (int, float)) and math.isfinite(metrics[k]), (k, metrics[k])


def _report(kind_name, records, sweep_keys, tmp_path):
    items = get_kind(kind_name).report(ReportContext("t", tmp_path, records, sweep_keys))
    assert items
    for item in items:
        if item.figure:
            assert (tmp_path / item.figure).stat().st_size > 1000
    return items


# --------------------------------------------------------------------------- toy_bottleneck

TOY_TINY = {"model": {"width": 2, "depth": 2, "expand_ratio": 3},
            "data": {"n_train": 60, "n_test": 50, "n_dims": 5}, "train": {"steps": 20}}


def test_toy_bottleneck_kind(tmp_path):
    records = []
    for task in ("classify", "regress"):
        for act in ("identity", "relu6"):
            params = {**TOY_TINY, "model": {**TOY_TINY["model"], "bottleneck_act": act},
                      "data": {**TOY_TINY["data"], "task": task}}
            for seed in (0, 1):
                _, m, rec = _run("toy_bottleneck", params, seed, tmp_path)
                score = ["test_accuracy", "test_error"] if task == "classify" else ["test_nmse"]
                blocks = [f"block{b}_{s}" for b in range(2)
                          for s in ("invertible_fraction", "active_mean", "active_min", "active_max")]
                _finite_scalars(m, score + blocks + ["final_train_loss", "params",
                                                     "invertible_fraction_min", "active_fraction_mean"])
                if task == "classify":
                    assert m["test_accuracy"] + m["test_error"] == pytest.approx(1.0)
                # Lemma-2 statistics: counts of 3*2 expansion units, threshold k = 2.
                assert 0 <= m["block0_active_min"] <= m["block0_active_mean"] <= m["block0_active_max"] <= 6
                assert m["invertible_fraction_min"] == min(m["block0_invertible_fraction"],
                                                           m["block1_invertible_fraction"])
                records.append(rec)
    items = _report("toy_bottleneck", records, ["data.task", "model.bottleneck_act"], tmp_path)
    table = next(i.markdown for i in items if i.markdown)
    assert table.count("\n") == 1 + 2 * 2  # header, rule, one row per (task, activation) at width 2


def test_toy_params_reject_bad_values():
    import pydantic

    params = get_kind("toy_bottleneck").params
    with pytest.raises(pydantic.ValidationError):
        params.model_validate({"model": {"width": 0}})
    with pytest.raises(pydantic.ValidationError):
        params.model_validate({"model": {"bottleneck_act": "gelu"}})
    with pytest.raises(pydantic.ValidationError):
        params.model_validate({"model": {"widht": 2}})



# --------------------------------------------------------------------------- recoverability


def test_recoverability_kind(tmp_path):
    from manifold_lab.kinds.recoverability import CURVES

    records = []
    for act in ("identity", "relu"):
        for seed in (0, 1):
            params = {"manifold": "spiral", "n_samples": 120, "width": 3, "depth": 3, "expand_ratio": 2,
                      "bottleneck_act": act, "shortcut": act == "identity", "n_neighbors": 5}
            _, m, rec = _run("recoverability", params, seed, tmp_path)
            _finite_scalars(m, [f"final_{c}" for c in CURVES] + ["input_twonn_dimension"])
            for c in CURVES:
                assert len(m[c]) == 3 and m[f"final_{c}"] == m[c][-1]
                assert all(math.isfinite(v) for v in m[c])
            for c in ("invertible_fraction", "collapsed_fraction", "trustworthiness", "knn_overlap"):
                assert all(0.0 <= v <= 1.0 for v in m[c]), (c, m[c])
            records.append(rec)
    items = _report("recoverability", records, ["bottleneck_act", "shortcut"], tmp_path)
    assert [i.figure for i in items] == ["figures/recoverability_0.png"]


def test_recoverability_rejects_unknown_manifold():
    import pydantic

    with pytest.raises(pydantic.ValidationError, match="manifold"):
        get_kind("recoverability").params.model_validate({"manifold": "klein_bottle"})


# --------------------------------------------------------------------------- collapse_theorem


@pytest.mark.parametrize("m, n", [(1, 2), (4, 1), (6, 2), (8, 3)])
def test_collapse_theorem_kind(tmp_path, m, n):
    from manifold_lab.theory import kept_fraction

    _, metrics, _ = _run("collapse_theorem", {"m": m, "n": n, "n_matrices": 100, "n_points": 50}, 0, tmp_path)
    _finite_scalars(metrics, ["kept_fraction_mc", "standard_error", "kept_fraction_theory", "difference", "z_score"])
    assert metrics["kept_fraction_theory"] == kept_fraction(m, n)
    assert metrics["difference"] == pytest.approx(metrics["kept_fraction_mc"] - metrics["kept_fraction_theory"])
    if m < n:  # fewer rows than dimensions: every point collapses
        assert metrics["kept_fraction_mc"] == 0.0 and metrics["kept_fraction_theory"] == 0.0
    else:  # Theorem 1 within 4 standard errors (the estimate over 100 matrices)
        assert abs(metrics["z_score"]) < 4, metrics


def test_collapse_theorem_report(tmp_path):
    records = [_run("collapse_theorem", {"m": m, "n": 2, "n_matrices": 20, "n_points": 20}, 0, tmp_path)[2]
               for m in (2, 4)]
    items = _report("collapse_theorem", records, ["m"], tmp_path)
    table = next(i.markdown for i in items if i.markdown)
    assert "| 2 | 2 |" in table and "| 4 | 2 |" in table


# --------------------------------------------------------------------------- spiral_figure


def test_spiral_figure_kind(tmp_path):
    from manifold_lab.kinds.spiral_figure import FIGURE_METRICS

    records = []
    for seed in (0, 1):
        _, m, rec = _run("spiral_figure", {"dims": [2, 30], "n_points": 300}, seed, tmp_path)
        _finite_scalars(m, [f"{name}_n{d}" for name in FIGURE_METRICS for d in (2, 30)])
        assert (rec.run_dir / m["figure"]).exists()
        # n = 2: ReLU of a 2-D embedding folds the spiral; n = 30 keeps it (Figure 1).
        assert m["collapsed_fraction_n2"] > m["collapsed_fraction_n30"]
        records.append(rec)
    items = _report("spiral_figure", records, [], tmp_path)
    assert len([i for i in items if i.figure]) == 2


# --------------------------------------------------------------------------- quickstart end to end


@pytest.mark.slow
def test_quickstart_end_to_end_then_skips(tmp_path, capfd, monkeypatch):
    """`python -m manifold_lab run experiments/quickstart.yaml` (a suite of three parts) writes
    report.md with every part's answer; a rerun skips every run."""
    import re

    out = tmp_path / "quickstart"
    cmd = [sys.executable, "-m", "manifold_lab", "run", "experiments/quickstart.yaml", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # its wall time is a benchmark (benchmarks/results/quickstart.json), not a test; 240 s only stops a hang
    first = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert first.returncode == 0, first.stderr[-2000:]
    parts = re.findall(r"(quickstart_\w+): (\d+) runs: (\d+) done, 0 skipped, 0 failed", first.stdout)
    assert [p[0] for p in parts] == ["quickstart_spiral", "quickstart_theorem", "quickstart_toy"]
    assert all(p[1] == p[2] for p in parts)
    n_runs = sum(int(p[1]) for p in parts)
    report = (out / "report.md").read_text()
    assert "quickstart_toy/figures/score_vs_width.png" in report
    # The tour's page has numbers: each part opens with its answer (the toy part's declared contrast).
    assert "**test_accuracy: identity - relu6** in percentage points (`model.bottleneck_act`" in report
    assert re.search(r"^\| 1 \| 3 \| \d+\.\d+ \| \d+\.\d+ \| [+-]\d+\.\d+ \| \[", report, re.M)  # width 1, 3 seeds, %
    assert re.search(r"^quickstart_toy: 18/18 runs \(run 17 \(\w+\) done in [\d.]+ s\), elapsed", first.stderr, re.M)
    assert (out / "quickstart_toy" / "figures" / "score_vs_width.png").exists()
    assert (out / "quickstart_spiral" / "report.md").exists() and (out / "quickstart_theorem" / "report.md").exists()
    metrics = sorted(out.glob("*/runs/*/metrics.json"))
    assert len(metrics) == n_runs
    stamps = [p.stat().st_mtime_ns for p in metrics]

    # the rerun in this process (the first run above is the command itself): nothing to train
    from manifold_lab.cli import main

    monkeypatch.chdir(REPO)
    capfd.readouterr()
    assert main(cmd[3:]) == 0
    again = re.findall(r"(quickstart_\w+): (\d+) runs: 0 done, (\d+) skipped, 0 failed", capfd.readouterr().out)
    assert sum(int(p[2]) for p in again) == n_runs
    assert [p.stat().st_mtime_ns for p in metrics] == stamps
