"""The claim table: the verdict rule, claims read from results folders, the command, the committed README."""

import json
from pathlib import Path

import pytest

from manifold_lab.cli import main
from manifold_lab.reproduction import claims as C
from manifold_lab.reproduction import readme as M
from manifold_lab.reproduction import records
from manifold_lab.reproduction import verdict as V
from manifold_lab.stats import describe
from manifold_lab.kinds import RunRecord
from manifold_lab.execution.store import ResultsStore
from manifold_lab.spec.sweep import set_path

REPO = Path(__file__).resolve().parents[1]


def judged(d, alternative="two-sided", p_adj=None):
    """A TestResult for per-seed differences ``d`` judged at ``p_adj`` (default: its raw p)."""
    test = V.PairedTest("d", "study", "m", {}, {}, alternative=alternative)
    r = V.TestResult(test, d, describe(list(d.values())), V.t_pvalue(list(d.values()), alternative))
    r.p_adj = r.p if p_adj is None else p_adj
    return V.judge(r)


@pytest.mark.parametrize("d, expected", [
    ({0: 0.01, 1: 0.02, 2: 0.015}, V.SUPPORTED),  # t = 5.2, df 2: p = 0.035
    ({0: -0.01, 1: -0.02, 2: -0.015}, V.CONTRADICTED),
    ({0: 0.01, 1: -0.02, 2: 0.015}, V.INCONCLUSIVE),
    ({0: -0.01, 1: 0.02, 2: -0.015}, V.INCONCLUSIVE + V.NO_EVIDENCE),  # against the prediction at n = 3
    ({0: -0.01, 1: 0.02, 2: -0.015, 3: -0.01}, V.INCONCLUSIVE + V.AGAINST),
    ({0: 0.01, 1: 0.02}, "not enough runs yet (2 of 3 seeds)"),
])
def test_verdict_rule(d, expected):
    assert judged(d) == expected


def test_verdicts_come_from_the_adjusted_p_and_one_sided_tests_never_contradict():
    d = {0: 0.01, 1: 0.02, 2: 0.015}
    assert V.t_pvalue(list(d.values())) == pytest.approx(0.0351, abs=1e-4)  # t = 0.015 / (0.005 / sqrt 3)
    assert judged(d, p_adj=0.07) == V.INCONCLUSIVE  # the same test after Holm over a family
    neg = {k: -v for k, v in d.items()}
    assert judged(neg, alternative="greater") == V.INCONCLUSIVE + V.NO_EVIDENCE
    # one-sided p is half the two-sided p in the predicted direction
    assert V.t_pvalue(list(d.values()), "greater") == pytest.approx(V.t_pvalue(list(d.values())) / 2)


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


def relu_record(mean, channels=60, name="layer"):
    """A Figure 7 record of a layer the network rebuilt from the run's config does not have: its own threshold."""
    return {"name": name, "channels": channels, "min": 0, "max": channels, "mean": mean, "threshold": channels / 6}


def relu_records(means):
    return [relu_record(m, name=f"layer{i}") for i, m in enumerate(means)]


def test_figure6a_and_figure7_from_a_results_folder(tmp_path):
    acc = {"identity": [0.60, 0.62, 0.61], "relu6": [0.58, 0.60, 0.595]}
    below = {"identity": [0, 1, 2], "relu6": [2, 3, 0]}  # layers below C/6 per seed (final)
    runs = [({"model.bottleneck_act": act}, s, {"test_acc": acc[act][s]},
             {**({} if (act, s) == ("relu6", 2) else  # one run before issue 11
                 {"sample": {"per_class": 25, "bn": {"step0": "running statistics of a calibration pass"}}}),
              "step0": relu_records([30] * 4),
              "final": relu_records([5] * below[act][s] + [30] * (4 - below[act][s]))
              # a bottleneck activation is not a Figure 7 layer: never counted
              + [relu_record(0, name="features.1.act3")] * (act == "relu6")})
            for act in acc for s in range(3)]
    runs.append(({"model.bottleneck_act": "relu6"}, 3, None, None))  # a failed run is not a number
    make_study(tmp_path, "figure6a_linear_bottleneck_cifar10", "mobilenetv2",
               {"model.bottleneck_act": ["identity", "relu6"]}, runs)
    row = V.evaluate([C.PAIRED_CLAIMS["figure6a"]], tmp_path)[0]
    # differences 2, 2, 1.5 points: mean 11/6, sd 0.5/sqrt(3), t interval mean +- t_{0.975,2} sd / sqrt(3)
    assert row.verdict == V.SUPPORTED
    mean, half = 11 / 6, 4.302652729911275 * (0.5 / 3 ** 0.5) / 3 ** 0.5
    assert f"{mean:+.2f} points [{mean - half:+.2f}, {mean + half:+.2f}], n = 3" in row.ours
    assert "linear 61.0% [" in row.ours and "(n = 3)" in row.ours
    p = V.t_pvalue([0.02, 0.02, 0.015])
    assert (f"paired t p = {p:.2g}, Holm-adjusted p = {p:.2g}, "  # a family of 1
            "detectable with 80% power before Holm's adjustment: ") in row.ours
    assert row.ours.endswith("points (supported)")
    fig7 = C.row_claim(C.ROWS["figure7"], tmp_path)
    assert fig7.verdict == V.CONTRADICTED  # one relu6 network has 3 layers below the threshold
    assert "relu6 trained: 2, 3, 0 of 4 layers below" in fig7.ours
    assert "linear step 0: 0, 0, 0 of 4" in fig7.ours
    assert "**1 of 6 runs predate issue 11" in fig7.ours  # its statistics come from the old sample


def test_gap_trend_over_width(tmp_path):
    # gap(linear - relu6) is 4 points at width 0.25 and 1 point at width 1.0 on every seed
    acc = {(0.25, "identity"): 0.50, (0.25, "relu6"): 0.46, (1.0, "identity"): 0.70, (1.0, "relu6"): 0.69}
    runs = [({"model.width_mult": w, "model.bottleneck_act": a}, s, {"test_acc": v + 0.01 * s}, None)
            for (w, a), v in acc.items() for s in range(3)]
    make_study(tmp_path, "width_sweep_cifar10", "mobilenetv2",
               {"model.width_mult": [0.25, 1.0], "model.bottleneck_act": ["identity", "relu6"]}, runs)
    spec = C.PAIRED_CLAIMS["width"]
    runs_done = records.done_runs(tmp_path / "width_sweep_cifar10")
    d = V.paired_differences(runs_done, spec.tests[0], {"model.width_mult": [0.25, 1.0]})
    assert d == pytest.approx({0: 0.03, 1: 0.03, 2: 0.03})
    at_narrow = V.PairedTest("g", "width_sweep_cifar10", "test_acc", C._LIN, C._RELU6, at=("model.width_mult", "first"))
    assert V.paired_differences(runs_done, at_narrow, {"model.width_mult": [0.25, 1.0]}) == \
        pytest.approx({0: 0.04, 1: 0.04, 2: 0.04})
    row = V.evaluate([spec], tmp_path)[0]
    assert "widest width multiplier = +3.00 points [+3.00, +3.00], n = 3 (inconclusive at this scale " \
        "(constant differences: no t test))" in row.ours
    assert "0.25: +4.00 points [+4.00, +4.00], n = 3, relative 7.8%" in row.ours  # mean 0.04 / mean 0.51
    assert row.verdict.startswith("not enough runs yet (toy")  # the toy study is missing


def test_command_writes_the_table_and_rejects_a_missing_folder(tmp_path, capsys):
    assert main(["claims", "--results", str(tmp_path)]) == 0
    text = (tmp_path / "README.md").read_text()
    tests = sum(len(spec.tests) + len(getattr(spec.converged, "tests", ())) for spec in C.PAIRED_CLAIMS.values())
    # claim table, family table (one row per paired test, both scales), studies: a header line and the rows each
    assert text.count("\n| ") == 3 + len(C.CLAIMS) + tests + len(M.STUDIES) + len(M.CONVERGED_STUDIES)
    assert "not run yet" in text
    assert main(["claims", "--results", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "results folder not found" in err[0]


def test_committed_readme_is_current(monkeypatch):
    monkeypatch.chdir(REPO)
    assert (REPO / "results" / "README.md").read_text() == M.render(C.claims("results"), "results")


def test_a_partial_width_sweep_gives_no_verdict(tmp_path):
    # width 1.0 is planned but has no run yet: the trend is not judged on 0.25 vs 0.5
    runs = [({"model.width_mult": w, "model.bottleneck_act": a}, s, {"test_acc": 0.5 + 0.1 * (a == "identity") * w}, None)
            for w in (0.25, 0.5) for a in ("identity", "relu6") for s in range(3)]
    make_study(tmp_path, "width_sweep_cifar10", "mobilenetv2",
               {"model.width_mult": [0.25, 0.5, 1.0], "model.bottleneck_act": ["identity", "relu6"]}, runs)
    row = V.evaluate([C.PAIRED_CLAIMS["width"]], tmp_path)[0]
    assert "widest width multiplier = no runs yet" in row.ours and "1: no runs yet" in row.ours
    assert row.verdict.startswith("not enough runs yet")


def test_an_inconclusive_trend_says_when_its_estimate_runs_against_the_prediction(tmp_path):
    # gap(narrow) - gap(wide) per seed = -3, +1, -1 points: mean -1, interval contains 0
    gap_narrow = [0.02, 0.06, 0.04]
    runs = [({"model.width_mult": w, "model.bottleneck_act": a}, s,
             {"test_acc": 0.5 + (a == "identity") * (gap_narrow[s] if w == 0.25 else 0.05)}, None)
            for w in (0.25, 1.0) for a in ("identity", "relu6") for s in range(3)]
    make_study(tmp_path, "width_sweep_cifar10", "mobilenetv2",
               {"model.width_mult": [0.25, 1.0], "model.bottleneck_act": ["identity", "relu6"]}, runs)
    row = V.evaluate([C.PAIRED_CLAIMS["width"]], tmp_path)[0]
    assert "-1.00 points" in row.ours
    assert "inconclusive at this scale; no evidence either way" in row.ours  # n = 3: no direction read into it
    # the same gaps the other way round (mean +1) carry no such note
    runs = [({"model.width_mult": w, "model.bottleneck_act": a}, s,
             {"test_acc": 0.5 + (a == "identity") * (0.1 - gap_narrow[s] if w == 0.25 else 0.05)}, None)
            for w in (0.25, 1.0) for a in ("identity", "relu6") for s in range(3)]
    make_study(tmp_path / "b", "width_sweep_cifar10", "mobilenetv2",
               {"model.width_mult": [0.25, 1.0], "model.bottleneck_act": ["identity", "relu6"]}, runs)
    row = V.evaluate([C.PAIRED_CLAIMS["width"]], tmp_path / "b")[0]
    assert "+1.00 points" in row.ours and "against the prediction" not in row.ours


def test_holm_across_the_table_can_turn_a_raw_p_below_005_into_inconclusive(tmp_path):
    # Figure 6a: d = 1, 3, 2 points; Figure 6b: bottleneck - expansion d = 1.5, 3, 2.5 and bottleneck - none
    # d = 10, 11, 12: three tests in one family, Holm multiplies the smallest p by 3, the next by 2.
    fig6a = [({"model.bottleneck_act": a}, s, {"test_acc": v}, None)
             for a, vs in {"identity": [0.60, 0.62, 0.61], "relu6": [0.59, 0.59, 0.59]}.items()
             for s, v in enumerate(vs)]
    make_study(tmp_path, "figure6a_linear_bottleneck_cifar10", "mobilenetv2",
               {"model.bottleneck_act": ["identity", "relu6"]}, fig6a)
    acc = {"bottleneck": [0.60, 0.61, 0.62], "expansion": [0.585, 0.58, 0.595], "none": [0.50, 0.50, 0.50]}
    fig6b = [({"model.shortcut": k}, s, {"test_acc": v, "shortcuts": 10 * (k != "none")}, None)
             for k, vs in acc.items() for s, v in enumerate(vs)]
    make_study(tmp_path, "figure6b_shortcuts_cifar10", "mobilenetv2",
               {"model.shortcut": list(acc)}, fig6b)
    rows = V.evaluate([C.PAIRED_CLAIMS["figure6a"], C.PAIRED_CLAIMS["figure6b"]], tmp_path)
    raw = [t.p for r in rows for t in r.tests]
    assert raw == pytest.approx([V.t_pvalue([0.01, 0.03, 0.02]), V.t_pvalue([0.015, 0.03, 0.025]),
                                 V.t_pvalue([0.10, 0.11, 0.12])])
    p_6a, p_exp, p_none = raw
    assert p_none < p_exp < 0.05 < p_6a  # 0.0028, 0.034, 0.074
    # by hand, in sorted order: 3 p_none, max(that, 2 p_exp), max(that, p_6a)
    adjusted = [t.p_adj for r in rows for t in r.tests]
    assert adjusted == pytest.approx([max(2 * p_exp, p_6a), 2 * p_exp, 3 * p_none])
    # bottleneck - expansion: raw p 0.034 < 0.05, adjusted 0.068: no longer supported
    assert [t.verdict for r in rows for t in r.tests] == [V.INCONCLUSIVE, V.INCONCLUSIVE, V.SUPPORTED]
    assert rows[1].verdict == V.INCONCLUSIVE  # a row takes its weakest test's verdict: inconclusive beats supported
    assert f"paired t p = {p_exp:.2g}, Holm-adjusted p = {2 * p_exp:.2g}, detectable" in rows[1].ours
    assert "predate issue 11" not in rows[1].ours  # every expansion run recorded its shortcut count
    # the same expansion runs without a recorded count are flagged as made under the old rule
    fig6b = [({"model.shortcut": k}, s, {"test_acc": v}, None) for k, vs in acc.items() for s, v in enumerate(vs)]
    make_study(tmp_path / "old", "figure6b_shortcuts_cifar10", "mobilenetv2", {"model.shortcut": list(acc)}, fig6b)
    old = V.evaluate([C.PAIRED_CLAIMS["figure6b"]], tmp_path / "old")[0]
    assert "the expansion arm's runs predate issue 11: they had 5 shortcuts against the bottleneck arm's 10" \
        in old.ours


def test_a_preregistered_one_sided_trend_with_its_slope(tmp_path):
    # gap(linear - relu6) per seed at bottleneck_mult 0.25 / 0.5 / 1: seed s: 6 + s, 4, 2 points
    gaps = {0.25: lambda s: 0.06 + 0.01 * s, 0.5: lambda s: 0.04, 1.0: lambda s: 0.02}
    runs = [({"model.bottleneck_mult": m, "model.bottleneck_act": a}, s,
             {"test_acc": 0.6 + (gaps[m](s) if a == "identity" else 0.0)}, None)
            for m in gaps for a in ("identity", "relu6") for s in range(3)]
    make_study(tmp_path, "bottleneck_width_cifar10", "mobilenetv2",
               {"model.bottleneck_mult": [0.25, 0.5, 1.0], "model.bottleneck_act": ["identity", "relu6"]}, runs)
    row = V.evaluate([C.PAIRED_CLAIMS["bottleneck_width"]], tmp_path)[0]
    test = row.tests[0]
    assert test.d == pytest.approx({0: 0.04, 1: 0.05, 2: 0.06})
    assert test.p == pytest.approx(V.t_pvalue([0.04, 0.05, 0.06], "greater"))  # one-sided, as pre-registered
    assert row.verdict == V.SUPPORTED
    # slope of the gap against log2(mult) at x = -2, -1, 0: seed 0: (6, 4, 2) -> -2 points per doubling;
    # seed 1: (7, 4, 2) -> -2.5; seed 2: (8, 4, 2) -> -3; mean -2.5
    assert "slope of the gap against log2(bottleneck_mult): -2.50 points per doubling [" in row.ours
    # relative gap and error ratio at 1.0: 2 / 62 and 0.40 / 0.38
    assert f"1: +2.00 points [+2.00, +2.00], n = 3, relative 3.2%, error ratio {0.40 / 0.38:.2f}" in row.ours


def test_budget_numbers_come_from_the_configuration():
    b = M.budget_numbers(REPO / "results")
    # 1,000 images per class x 10 classes, batches of 128 with the last one dropped: 78 steps per epoch
    assert (b["train_images"], b["batch_size"], b["epochs"]) == (10_000, 128, 20)
    assert b["steps"] == 20 * (10_000 // 128) == 1_560
    assert "1,560 steps of batch 128" in M._scale(REPO / "results")


CONVERGED = sorted(key for key, spec in C.PAIRED_CLAIMS.items() if isinstance(spec.converged, V.ClaimSpec))


@pytest.mark.parametrize("key", sorted(C.PAIRED_CLAIMS) + [f"{key}, converged" for key in CONVERGED])
def test_every_paired_claim_matches_its_experiment_file(key):
    """The declared tests name real studies, swept factors and planned arms (the pre-registration holds), at the
    budget and at the converged scale (a study of the campaign: experiments/<its folder's name>.yaml)."""
    from manifold_lab.spec.load import load_spec
    from manifold_lab.spec.sweep import plan

    spec = C.PAIRED_CLAIMS[key.split(",")[0]]
    if key.endswith(", converged"):
        spec = spec.converged
        from manifold_lab.spec.suite import load_suite

        suite = load_suite(REPO / C.CAMPAIGN)  # the campaign's --reference output: results/<suite>/<part>/
        assert spec.command == C.CAMPAIGN_COMMAND
        assert all(Path(s).parent.name == suite.name and Path(s).name in [p.name for p in suite.parts]
                   for s in spec.studies)
        assert all(t.all_planned is True and t.alternative == "two-sided" for t in spec.tests)
    for test in spec.tests:
        assert test.study in spec.studies and test.alternative in ("two-sided", "greater")
        assert test.role in ("verdict", "descriptive", "own")
        experiment = load_spec(REPO / "experiments" / f"{Path(test.study).name}.yaml")
        for factor in filter(None, (test.across, test.at and test.at[0])):
            assert factor in experiment.sweep and len(experiment.sweep[factor]) >= 2
        runs = [RunRecord(r.run_id, r.params, r.seed, "done", {}, Path(".")) for r in plan(experiment)]
        for arm in (test.a, test.b):  # every arm has runs in the plan, for every seed
            want = {**test.fixed, **arm}
            seeds = {r.seed for r in runs if all(r.param(k) == v for k, v in want.items())}
            assert seeds == set(experiment.seeds), (test.label, arm)


def test_the_studies_table_says_where_each_study_trained_and_gaps_name_their_metric(tmp_path):
    """A study trained on a GPU says so; one without provenance says it was not recorded; a gap in a
    metric other than test accuracy names that metric."""
    runs = [({"train.epochs": e, "model.bottleneck_act": a}, s, {"test_acc": 0.6, "clean_train_acc": v}, None)
            for e in (20, 80) for a, v in (("identity", 0.7), ("relu6", 0.6)) for s in range(3)]
    make_study(tmp_path, "budget_ladder_cifar10", "mobilenetv2",
               {"train.epochs": [20, 80], "model.bottleneck_act": ["identity", "relu6"]}, runs)
    for run in (tmp_path / "budget_ladder_cifar10" / "runs").iterdir():
        (run / "provenance.json").write_text(json.dumps({"device": "auto", "gpu": "NVIDIA H200"}))
    make_study(tmp_path, "figure6a_linear_bottleneck_cifar10", "mobilenetv2", {"model.bottleneck_act": ["identity"]},
               [({"model.bottleneck_act": "identity"}, 0, {"test_acc": 0.6}, None)])
    text = M.render(C.claims(tmp_path), tmp_path)
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in text.splitlines() if line.startswith("| ")}
    assert rows["budget_ladder_cifar10"][3] == "NVIDIA H200"
    assert rows["figure6a_linear_bottleneck_cifar10"][3] == "not recorded"
    assert "gap by epochs (20: +0.00 points" in text and "; gap in clean_train_acc by epochs (20: +10.00 points" in text


@pytest.mark.parametrize("key", ["penalty_location", "bottleneck_width", "budget"])
def test_a_preregistered_study_gives_no_verdict_before_all_its_planned_runs(tmp_path, key):
    """Their files pre-register the seeds (5, 5, 3): one failed run of the plan withholds the verdict, even where
    the paired test alone would already have MIN_SEEDS pairs."""
    spec = C.PAIRED_CLAIMS[key]
    study = spec.studies[0]
    factors = {"penalty_location": {"model.bottleneck_act_blocks": ["none", "with_shortcut", "without_shortcut"]},
               "bottleneck_width": {"model.bottleneck_mult": [0.25, 1.0]},
               "budget": {"train.epochs": [20, 80]}}[key]
    (factor, levels), = factors.items()
    runs = []
    for level in levels:
        for act in ("identity", "relu6"):
            if key == "penalty_location" and (level == "none") != (act == "identity"):
                continue
            for s in range(4):
                values = {factor: level, "model.bottleneck_act": act}
                acc = 0.6 + 0.05 * (act == "identity") + 0.01 * s
                failed = (level, act, s) == (levels[-1], "relu6", 3)
                runs.append((values, s, None if failed else {"test_acc": acc, "clean_train_acc": acc}, None))
    make_study(tmp_path, study, "mobilenetv2", {**factors, "model.bottleneck_act": ["identity", "relu6"]}, runs)
    row = V.evaluate([spec], tmp_path)[0]
    assert "planned runs done)" in row.verdict and row.verdict.startswith("not enough runs yet"), row.verdict
    assert all(t.summary["n"] >= V.MIN_SEEDS for t in row.tests)  # the paired test alone would have had a verdict


def test_a_row_with_a_contradicted_test_is_contradicted_whatever_its_other_tests_say(tmp_path):
    """Figure 6b: bottleneck - expansion clearly positive, bottleneck - none clearly negative (two-sided)."""
    acc = {"bottleneck": [0.60, 0.61, 0.62, 0.60], "expansion": [0.50, 0.52, 0.51, 0.50],
           "none": [0.70, 0.72, 0.71, 0.73]}
    runs = [({"model.shortcut": k}, s, {"test_acc": v, "shortcuts": 10 * (k != "none")}, None)
            for k, vs in acc.items() for s, v in enumerate(vs)]
    make_study(tmp_path, "figure6b_shortcuts_cifar10", "mobilenetv2", {"model.shortcut": list(acc)}, runs)
    row, = V.evaluate([C.PAIRED_CLAIMS["figure6b"]], tmp_path)
    assert sorted(t.verdict for t in row.tests) == sorted([V.SUPPORTED, V.CONTRADICTED])
    assert row.verdict == V.CONTRADICTED


def _committed_copy(tmp_path, relative):
    """A copy of the committed ``results/<relative>`` at ``tmp_path/<relative>``; returns its path."""
    path = tmp_path / relative
    path.parent.mkdir(parents=True)
    path.write_bytes((Path(__file__).resolve().parents[1] / "results" / relative).read_bytes())
    return path


def _rewrite_csv(path, change):
    """Rewrite the CSV at ``path`` with ``change(rows)`` applied to its list of dict rows."""
    import csv
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    change(rows)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_the_theorem1_rule_fails_on_one_point_far_from_theory_and_ignores_exact_points(tmp_path):
    """The committed Monte Carlo table passes; one point moved to |z| = 5 fails it; a point without sampling
    error (stderr 0) does not enter, whatever its z."""
    path = _committed_copy(tmp_path, "theorem1/theorem1.csv")
    row = C.ROWS["theorem1"]
    assert C.row_claim(row, tmp_path).verdict == V.SUPPORTED

    def exact_point_far_off(rows):
        rows[0].update(stderr="0", z="50")
    _rewrite_csv(path, exact_point_far_off)
    assert C.row_claim(row, tmp_path).verdict == V.SUPPORTED

    def one_point_far_off(rows):
        sampled = next(r for r in rows if float(r["stderr"]) > 0)
        sampled["z"] = "-5"
    _rewrite_csv(path, one_point_far_off)
    claim = C.row_claim(row, tmp_path)
    assert claim.verdict == V.CONTRADICTED and "largest |z| = 5.00" in claim.ours


@pytest.mark.parametrize("column, value", [("collapsed_fraction_n2_ci_low", "0"),
                                           ("collapsed_fraction_n3_ci_low", "-0.001"),
                                           ("collapsed_fraction_n15_ci_high", "0.02"),
                                           ("collapsed_fraction_n30_ci_high", "0.01")])
def test_the_figure1_rule_fails_when_a_low_dimension_keeps_the_spiral_or_a_high_one_loses_it(tmp_path, column,
                                                                                            value):
    """The committed summary passes; an interval touching 0 at n = 2 or 3, or reaching 1% at n = 15 or 30,
    fails it."""
    path = _committed_copy(tmp_path, "figure1_spiral/summary.csv")
    row = C.ROWS["figure1"]
    assert C.row_claim(row, tmp_path).verdict == V.SUPPORTED
    _rewrite_csv(path, lambda rows: rows[0].update({column: value}))
    assert C.row_claim(row, tmp_path).verdict == V.CONTRADICTED
