"""The claim table: the verdict rule, claims read from results folders, the command, the committed README."""

import json
from pathlib import Path

import pytest

from manifold_lab.cli import main
from manifold_lab.experiment import claims as C
from manifold_lab.experiment.store import ResultsStore
from manifold_lab.experiment.sweep import set_path

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("d, expected", [
    ({0: 0.01, 1: 0.02, 2: 0.015}, C.SUPPORTED),
    ({0: -0.01, 1: -0.02, 2: -0.015}, C.CONTRADICTED),
    ({0: 0.01, 1: -0.02, 2: 0.015}, C.INCONCLUSIVE),
    ({0: 0.01, 1: 0.02}, "not enough runs yet (2 of 3 seeds)"),
])
def test_verdict_rule(d, expected):
    assert C.verdict(d)[0] == expected


def make_study(results, name, kind, sweep, runs):
    """A results folder as the runner writes it; ``runs`` = [(sweep values, seed, metrics, relu_stats)]."""
    store = ResultsStore(results / name)
    plan = []
    for i, (values, seed, metrics, relu) in enumerate(runs):
        params = {}
        for key, value in values.items():
            params = set_path(params, key, value)
        run_id = f"{name[:4]}{i:08d}"
        plan.append({"index": i, "run_id": run_id, "params": params, "seed": seed, "sweep_values": values})
        store.begin(run_id, {})
        if relu is not None:
            (store.run_dir(run_id) / "relu_stats.json").write_text(json.dumps(relu))
        store.finish(run_id, "done" if metrics else "failed", metrics or {}, None if metrics else "boom", 1.0)
    store.write_plan({"name": name, "kind": kind, "sweep": {**sweep, "seeds": [0, 1, 2]}}, "cmd", plan)


def relu_record(mean, channels=60, name="features.1.act2"):
    return {"name": name, "channels": channels, "min": 0, "max": channels, "mean": mean, "threshold": channels / 6}


def test_figure6a_and_figure7_from_a_results_folder(tmp_path):
    acc = {"identity": [0.60, 0.62, 0.61], "relu6": [0.58, 0.60, 0.595]}
    below = {"identity": [0, 1, 2], "relu6": [2, 3, 0]}  # layers below C/6 per seed (final)
    runs = [({"model.bottleneck_act": act}, s, {"test_acc": acc[act][s]},
             {"step0": [relu_record(30)] * 4,
              "final": [relu_record(5)] * below[act][s] + [relu_record(30)] * (4 - below[act][s])
              # a bottleneck activation is not a Figure 7 layer: never counted
              + [relu_record(0, name="features.1.act3")] * (act == "relu6")})
            for act in acc for s in range(3)]
    runs.append(({"model.bottleneck_act": "relu6"}, 3, None, None))  # a failed run is not a number
    make_study(tmp_path, "figure6a_linear_bottleneck_cifar10", "mobilenetv2",
               {"model.bottleneck_act": ["identity", "relu6"]}, runs)
    row = C.claim_figure6a(tmp_path)
    # differences 2, 2, 1.5 points: mean 11/6, sd 0.5/sqrt(3), t interval mean +- t_{0.975,2} sd / sqrt(3)
    assert row.verdict == C.SUPPORTED
    mean, half = 11 / 6, 4.302652729911275 * (0.5 / 3 ** 0.5) / 3 ** 0.5
    assert f"{mean:+.2f} points [{mean - half:+.2f}, {mean + half:+.2f}], n = 3" in row.ours
    assert "linear 61.0% [" in row.ours and "(n = 3)" in row.ours
    fig7 = C.claim_figure7(tmp_path)
    assert fig7.verdict == C.CONTRADICTED  # one relu6 network has 3 layers below the threshold
    assert "relu6 final: 2, 3, 0 of 4 layers below" in fig7.ours
    assert "linear step0: 0, 0, 0 of 4" in fig7.ours


def test_gap_trend_over_width(tmp_path):
    # gap(linear - relu6) is 4 points at width 0.25 and 1 point at width 1.0 on every seed
    acc = {(0.25, "identity"): 0.50, (0.25, "relu6"): 0.46, (1.0, "identity"): 0.70, (1.0, "relu6"): 0.69}
    runs = [({"model.width_mult": w, "model.bottleneck_act": a}, s, {"test_acc": v + 0.01 * s}, None)
            for (w, a), v in acc.items() for s in range(3)]
    make_study(tmp_path, "width_sweep_cifar10", "mobilenetv2",
               {"model.width_mult": [0.25, 1.0], "model.bottleneck_act": ["identity", "relu6"]}, runs)
    d, narrow, wide = C._gap_trend(C.done_runs(tmp_path / "width_sweep_cifar10"), "test_acc",
                                   "model.width_mult", 0.25, 1.0)
    assert narrow == pytest.approx({0: 0.04, 1: 0.04, 2: 0.04})
    assert d == pytest.approx({0: 0.03, 1: 0.03, 2: 0.03})
    row = C.claim_width(tmp_path)
    assert "gap at 0.25 minus gap at 1 = +3.00 points" in row.ours
    assert row.verdict.startswith("not enough runs yet (toy")  # the toy study is missing


def test_command_writes_the_table_and_rejects_a_missing_folder(tmp_path, capsys):
    assert main(["claims", "--results", str(tmp_path)]) == 0
    text = (tmp_path / "README.md").read_text()
    assert text.count("\n| ") == 2 + len(C.CLAIMS) + len(C.STUDIES)  # two header lines and the rows
    assert "not run yet" in text
    assert main(["claims", "--results", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "results folder not found" in err[0]


def test_committed_readme_is_current(monkeypatch):
    monkeypatch.chdir(REPO)
    assert (REPO / "results" / "README.md").read_text() == C.render(C.claims("results"), "results")


def test_a_partial_width_sweep_gives_no_verdict(tmp_path):
    # width 1.0 is planned but has no run yet: the trend is not judged on 0.25 vs 0.5
    runs = [({"model.width_mult": w, "model.bottleneck_act": a}, s, {"test_acc": 0.5 + 0.1 * (a == "identity") * w}, None)
            for w in (0.25, 0.5) for a in ("identity", "relu6") for s in range(3)]
    make_study(tmp_path, "width_sweep_cifar10", "mobilenetv2",
               {"model.width_mult": [0.25, 0.5, 1.0], "model.bottleneck_act": ["identity", "relu6"]}, runs)
    row = C.claim_width(tmp_path)
    assert "gap at 0.25 minus gap at 1 = no runs yet" in row.ours and "1: no runs yet" in row.ours
    assert row.verdict.startswith("not enough runs yet")


def test_an_inconclusive_trend_says_when_its_estimate_runs_against_the_prediction(tmp_path):
    # gap(narrow) - gap(wide) per seed = -3, +1, -1 points: mean -1, interval contains 0
    gap_narrow = [0.02, 0.06, 0.04]
    runs = [({"model.width_mult": w, "model.bottleneck_act": a}, s,
             {"test_acc": 0.5 + (a == "identity") * (gap_narrow[s] if w == 0.25 else 0.05)}, None)
            for w in (0.25, 1.0) for a in ("identity", "relu6") for s in range(3)]
    make_study(tmp_path, "width_sweep_cifar10", "mobilenetv2",
               {"model.width_mult": [0.25, 1.0], "model.bottleneck_act": ["identity", "relu6"]}, runs)
    row = C.claim_width(tmp_path)
    assert "-1.00 points" in row.ours
    assert "inconclusive at this scale; the point estimate runs against the prediction" in row.ours
    # the same gaps the other way round (mean +1) carry no such note
    runs = [({"model.width_mult": w, "model.bottleneck_act": a}, s,
             {"test_acc": 0.5 + (a == "identity") * (0.1 - gap_narrow[s] if w == 0.25 else 0.05)}, None)
            for w in (0.25, 1.0) for a in ("identity", "relu6") for s in range(3)]
    make_study(tmp_path / "b", "width_sweep_cifar10", "mobilenetv2",
               {"model.width_mult": [0.25, 1.0], "model.bottleneck_act": ["identity", "relu6"]}, runs)
    row = C.claim_width(tmp_path / "b")
    assert "+1.00 points" in row.ours and "against the prediction" not in row.ours
