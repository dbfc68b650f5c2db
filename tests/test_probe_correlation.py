"""The pre-registered correlation analysis of issue 12 on synthetic results folders."""

import numpy as np
import pytest

from manifold_lab.reproduction import probe_correlation as P
from tests.test_claims import make_study


def _study(tmp_path, name, slopes, seeds=3):
    """One condition per width; penalty_w = slope_w * loss_w, known exactly."""
    runs = []
    for w, (loss, penalty) in slopes.items():
        for s in range(seeds):
            runs.append(({"model.width_mult": w, "model.bottleneck_act": "identity"}, s,
                         {"test_acc": 0.8, P.LOSS_KEY: 0.9}, None))
            runs.append(({"model.width_mult": w, "model.bottleneck_act": "relu6"}, s,
                         {"test_acc": 0.8 - penalty, P.LOSS_KEY: 0.9 - loss}, None))
    make_study(tmp_path, name, "mobilenetv2",
               {"model.width_mult": sorted(slopes), "model.bottleneck_act": ["identity", "relu6"]}, runs)
    return tmp_path / name


def test_conditions_are_paired_means(tmp_path):
    folder = _study(tmp_path, "width_sweep_cifar10", {0.25: (0.1, 0.05), 0.5: (0.2, 0.02)})
    got = P.conditions(folder)
    assert [c["condition"] for c in got] == ["model.width_mult=0.25", "model.width_mult=0.5"]
    assert [c["loss"] for c in got] == pytest.approx([0.1, 0.2])
    assert [c["penalty"] for c in got] == pytest.approx([0.05, 0.02])
    assert all(c["seeds"] == 3 for c in got)
    assert P.conditions(_study(tmp_path, "two_seeds", {1.0: (0.1, 0.1)}, seeds=2)) == []  # below MIN_SEEDS


def test_monotone_relation_is_rho_one_and_the_rule():
    loss = np.arange(8.0)
    res = P.spearman_bootstrap(loss, loss ** 2, n_boot=500)
    assert res["rho"] == 1.0 and res["ci_low"] == pytest.approx(1.0) and P.verdict(res) == P.PREDICTS
    res = P.spearman_bootstrap(loss, -loss, n_boot=500)
    assert res["rho"] == -1.0 and P.verdict(res) == P.OPPOSITE
    noise = np.random.default_rng(1).permutation(8)
    res = P.spearman_bootstrap(loss, noise, n_boot=2000)
    assert res["ci_low"] < 0 < res["ci_high"] and P.verdict(res) == P.NO_PREDICTION
    assert P.verdict(P.spearman_bootstrap(loss[:5], loss[:5], n_boot=10)) == "not enough conditions (5 of 6)"


def test_study_end_to_end_on_synthetic_folders(tmp_path):
    # six conditions over two studies, penalty increasing with loss: rho = 1
    _study(tmp_path, "width_sweep_cifar10", {0.25: (0.30, 0.06), 0.5: (0.20, 0.04), 1.0: (0.10, 0.02)})
    _study(tmp_path, "figure6a_linear_bottleneck_cifar10", {0.35: (0.25, 0.05), 0.75: (0.15, 0.03), 1.4: (0.05, 0.01)})
    payload = P.write_study(tmp_path, tmp_path / "out")
    assert payload["n"] == 6 and payload["rho"] == pytest.approx(1.0)
    # the rule's verdict, labelled provisional while pre-registered CIFAR-10 studies are missing
    assert payload["verdict"] == f"{P.PREDICTS} (provisional: budget_ladder_cifar10, bottleneck_width_cifar10 not in yet)"
    assert payload["pending"] == ["budget_ladder_cifar10", "bottleneck_width_cifar10"]
    assert len((tmp_path / "out" / "conditions.csv").read_text().splitlines()) == 7
    assert (tmp_path / "out" / "scatter.png").stat().st_size > 0
    report = (tmp_path / "out" / "report.md").read_text().splitlines()
    assert report[4] == "## The answer" and report[6].startswith(f"**{payload['verdict']}** (Spearman rho = +1.00")
    assert sum(line.startswith("| width_sweep_cifar10 |") for line in report) == 3
    empty = P.write_study(tmp_path / "out", tmp_path / "empty")  # no study there
    assert empty["n"] == 0 and empty["verdict"] == P.WAITING


def test_secondary_measures_and_the_error_penalty(tmp_path):
    """relu6_only takes the ReLU6 arm's own measure; lower_is_better turns an error into a penalty."""
    runs = []
    for s in range(3):
        runs.append(({"data.task": "regress", "model.bottleneck_act": "identity"}, s,
                     {"test_nmse": 0.10, P.LOSS_KEY: 0.9, "probe_final_zeroed_mean": 0.0}, None))
        runs.append(({"data.task": "regress", "model.bottleneck_act": "relu6"}, s,
                     {"test_nmse": 0.25 + 0.01 * s, P.LOSS_KEY: 0.7, "probe_final_zeroed_mean": 0.3}, None))
    make_study(tmp_path, "toy_linear_bottleneck", "toy_bottleneck",
               {"data.task": ["regress"], "model.bottleneck_act": ["identity", "relu6"]}, runs)
    folder = tmp_path / "toy_linear_bottleneck"
    assert P.conditions(folder) == []  # no accuracy: not in the primary analysis
    (c,) = P.conditions(folder, perf_keys=("test_nmse",), lower_is_better=True)
    assert c["penalty"] == pytest.approx(0.16) and c["loss"] == pytest.approx(0.2)
    (z,) = P.conditions(folder, "probe_final_zeroed_mean", perf_keys=("test_nmse",), lower_is_better=True,
                        relu6_only=True)
    assert z["loss"] == pytest.approx(0.3)


def test_secondary_analyses_are_reported_without_a_verdict(tmp_path):
    _study(tmp_path, "width_sweep_cifar10", {0.25: (0.30, 0.06), 0.5: (0.20, 0.04), 1.0: (0.10, 0.02)})
    _study(tmp_path, "figure6a_linear_bottleneck_cifar10", {0.35: (0.25, 0.05), 0.75: (0.15, 0.03), 1.4: (0.05, 0.01)})
    payload = P.write_study(tmp_path, tmp_path / "out")
    rows = {r["analysis"]: r for r in payload["secondary"]}
    assert list(rows) == [name for name, *_ in P.SECONDARY]
    cifar = rows["CIFAR-10 conditions only"]
    assert cifar["n"] == 6 and cifar["rho"] == pytest.approx(1.0)  # all six conditions are CIFAR-10 here
    assert rows["toy conditions only"]["n"] == 0  # no toy folder
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Secondary analyses (pre-registered, no verdict)" in report
    assert "| CIFAR-10 conditions only | 6 | +1.00 [+1.00, +1.00] |" in report
    assert "| toy conditions only | 0 | too few conditions |" in report
