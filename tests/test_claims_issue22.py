"""Issue 22's corrections of the claim table: the withdrawn probe-correlation row, power, the matched-accuracy
gap, where each study trained, and the injective-bottleneck study's pre-registered rule."""

import json
import math
import re
from pathlib import Path

import pytest

from manifold_lab.kinds import RunRecord
from manifold_lab.power import detectable_difference
from manifold_lab.reproduction import claims as C
from manifold_lab.reproduction import readme as M
from manifold_lab.reproduction import verdict as V
from manifold_lab.stats import describe
from tests.test_claims import make_study

REPO = Path(__file__).resolve().parents[1]


def test_the_probe_correlation_row_is_withdrawn_in_the_open_with_a_link_to_its_addendum(tmp_path):
    row = C.row_claim(C.ROWS["probe_correlation"], tmp_path)
    assert row.verdict == "withdrawn: the measure rewards dead branches"
    assert "out = x + f(x)" in row.ours and "the rule gave" in row.ours  # the rule's own verdict stays visible
    link = re.search(r"\]\(\.\./(experiments/probe_penalty_correlation\.md)#([a-z-]+)\)", row.ours)
    assert link, row.ours
    # the anchor is a heading of the pre-registration (GitHub's slug of "## Addendum: withdrawn")
    headings = [re.sub(r"[^a-z0-9 -]", "", h[3:].lower()).replace(" ", "-")
                for h in (REPO / link.group(1)).read_text().splitlines() if h.startswith("## ")]
    assert link.group(2) in headings
    committed = (REPO / "results" / "README.md").read_text()
    assert "**withdrawn: the measure rewards dead branches**" in committed


def test_every_paired_test_states_the_difference_it_detects_with_80_percent_power(tmp_path):
    d = {0: 0.01, 1: 0.03, 2: 0.02, 3: 0.025}
    two = V.TestResult(V.PairedTest("d", "s", "m", {}, {}), d, describe(list(d.values())), 0.01)
    sd = describe(list(d.values()))["std"]
    assert two.detectable() == pytest.approx(detectable_difference(4, sd, alpha=0.05, power=0.8))
    one = V.TestResult(V.PairedTest("d", "s", "m", {}, {}, alternative="greater"), d, two.summary, 0.01)
    assert one.detectable() == pytest.approx(detectable_difference(4, sd, alpha=0.10, power=0.8))
    assert one.detectable() < two.detectable()
    const = {0: 0.01, 1: 0.01, 2: 0.01}
    assert math.isnan(V.TestResult(two.spec, const, describe(list(const.values())), float("nan")).detectable())
    # the family table has the column, with the number of the test's row
    fig6a = [({"model.bottleneck_act": a}, s, {"test_acc": 0.6 + (a == "identity") * d[s]}, None)
             for a in ("identity", "relu6") for s in range(4)]
    make_study(tmp_path, "figure6a_linear_bottleneck_cifar10", "mobilenetv2",
               {"model.bottleneck_act": ["identity", "relu6"]}, fig6a)
    text = M.render(C.claims(tmp_path), tmp_path)
    assert "| n | mean difference (points) | detectable (points) | raw p |" in text
    assert f"| linear - relu6 | 4 | +2.13 | {100 * two.detectable():.2f} |" in text  # mean 2.125 (float: 2.13)
    assert "width 0.5, not recorded epochs (how the gap changes" in text  # read from the runs: none recorded here


def test_the_gap_at_matched_clean_train_accuracy_interpolates_the_linear_curve():
    def run(act, seed, clean, test, curve=None):
        metrics = {"clean_train_acc": clean, "test_acc": test}
        if curve:
            metrics.update(curve_clean_train_acc=curve[0], curve_test_acc=curve[1])
        return RunRecord(f"{act}{seed}", {"model": {"bottleneck_act": act}}, seed, "done", metrics, Path("."))

    runs = [run("identity", 0, 0.9, 0.6, ([0.5, 0.7, 0.9], [0.40, 0.50, 0.60])),
            run("relu6", 0, 0.8, 0.45),  # 0.8 lies halfway from 0.7 to 0.9: linear 0.55 there
            run("identity", 1, 0.6, 0.5, ([0.5, 0.6, 0.6], [0.40, 0.50, 0.50])),
            run("relu6", 1, 0.65, 0.45),  # never reached by the linear curve: left out
            run("identity", 2, 0.9, 0.6, ([0.7, 0.8, 0.9], [0.50, 0.55, 0.60])),
            run("relu6", 2, 0.6, 0.40)]  # reached at the first epoch: its test accuracy
    assert V.matched_gaps(runs, C._LIN, C._RELU6) == pytest.approx({0: 0.10, 2: 0.10})


def test_the_scale_note_says_where_each_study_trained_from_provenance(tmp_path):
    for name, prov in (("budget_ladder_cifar10", {"device": "auto", "gpu": "NVIDIA H200", "cpu_count": 16}),
                       ("figure6a_linear_bottleneck_cifar10", {"device": "auto", "gpu": None, "cpu_count": 2})):
        make_study(tmp_path, name, "mobilenetv2", {"model.bottleneck_act": ["identity"]},
                   [({"model.bottleneck_act": "identity", "train.epochs": 20}, 0, {"test_acc": 0.6}, None)])
        for r in (tmp_path / name / "runs").iterdir():
            (r / "provenance.json").write_text(json.dumps(prov))
    assert M.trained_where(tmp_path) == \
        "CPU, 2 cores: figure6a_linear_bottleneck_cifar10; NVIDIA H200: budget_ladder_cifar10"
    text = M.render(C.claims(tmp_path), tmp_path)
    assert "run on a 2-core CPU" not in text and "(CPU, 2 cores: figure6a" in text
    assert "width 0.5, 20 epochs (how the gap changes with longer training" in text  # Figure 6a's row


INJ = "injective_bottleneck_cifar10"
ARMS = ("identity", "relu6", "leaky_relu_0.1", "leaky_relu_0.3", "elu", "softplus")
NOISE = [0.004, -0.003, 0.002, -0.004, 0.001]  # per seed, so that the paired differences have a spread


def injective_row(tmp_path, acc, *, missing=()):
    """The injective row on a constructed study: ``acc[arm]`` = mean test accuracy, plus the arm's own noise
    pattern; ``missing``: (arm, seed) pairs whose run failed (the study is partial)."""
    runs = [({"model.bottleneck_act": a}, s,
             None if (a, s) in missing else {"test_acc": acc[a] + NOISE[(s + 2 * i) % 5] * (i > 0),
                                             "probe_final_r2_branch_linear_mean": 1.0 - 0.1 * i},
             None)
            for i, a in enumerate(ARMS) for s in range(5)]
    make_study(tmp_path, INJ, "mobilenetv2", {"model.bottleneck_act": list(ARMS)}, runs)
    return V.evaluate([C.PAIRED_CLAIMS["injective"]], tmp_path)[0]


@pytest.mark.parametrize("injective, expected", [
    (0.64, "the injective arms are free (the information account is supported)"),  # Q = 1 of P = 13 points
    (0.52, "they cost as much as relu6 (the information account is refuted)"),  # Q = P, d not significant
    (0.58, "in between"),  # Q = 7 of 13: cheaper than relu6, but not free
])
def test_the_injective_rule_can_give_each_preregistered_answer(tmp_path, injective, expected):
    acc = {"identity": 0.65, "relu6": 0.52, **{a: injective for a in ARMS[2:]}}
    row = injective_row(tmp_path, acc)
    assert row.verdict == expected
    assert len(row.tests) == 5 and all(t.summary["n"] == 5 for t in row.tests)
    assert "penalty of relu6 (identity - relu6) = +" in row.ours
    assert "detectable with 80% power before Holm's adjustment:" in row.ours
    assert f"penalty of elu = {100 * (0.65 - injective):+.2f} points" in row.ours
    assert "branch-level loss, descriptive" in row.ours and "; relu6 0.90 [0.90, 0.90] (n = 5);" in row.ours


def test_no_relu6_penalty_is_inconclusive_and_a_partial_study_gives_no_verdict(tmp_path):
    acc = {"identity": 0.52, "relu6": 0.52, **{a: 0.60 for a in ARMS[2:]}}
    row = injective_row(tmp_path / "flat", acc)
    assert row.verdict.startswith("inconclusive at this scale (the relu6 penalty itself is not significant")
    acc = {"identity": 0.65, "relu6": 0.52, **{a: 0.64 for a in ARMS[2:]}}
    row = injective_row(tmp_path / "partial", acc, missing={("elu", 4)})
    assert row.verdict == "not enough runs yet (29 of 30 planned runs done)"
    assert all(math.isnan(t.p) for t in row.tests)  # no test enters the Holm family before the planned n
    assert "elu " in row.ours and "(n = 4)" in row.ours  # which runs are done, arm by arm
    row = V.evaluate([C.PAIRED_CLAIMS["injective"]], tmp_path / "none")[0]
    assert row.verdict == f"not enough runs yet ({INJ} not run yet)"
