"""The converged scale (issue 24): the CPU subset study's row and the converged studies of the GPU campaign beside
the budget rows, with their pre-registered convergence rules and verdicts."""

import math

import pytest

from manifold_lab.reproduction import claims as C
from manifold_lab.reproduction import readme as M
from manifold_lab.reproduction import verdict as V
from manifold_lab.stats import holm_adjust
from tests.test_claims import REPO, make_study

STUDY = "figure6a_converged_subset_cifar10"
NOISE = [0.004, -0.003, 0.002, -0.004, 0.001]  # per seed, so that the paired differences have a spread


def converged_row(tmp_path, gap, *, clean=None, missing=()):
    """The row on a constructed study: identity at 0.80 test accuracy, relu6 ``gap`` below it (plus noise);
    ``clean[(arm, seed)]`` = final clean train accuracy (default 0.995; None: not recorded); ``missing``: runs
    that failed."""
    clean = clean or {}
    runs = [({"model.bottleneck_act": a}, s,
             None if (a, s) in missing else
             {"test_acc": 0.80 - (a == "relu6") * (gap + NOISE[s]),
              **({} if clean.get((a, s), 0.995) is None else {"clean_train_acc": clean.get((a, s), 0.995)})},
             None)
            for a in ("identity", "relu6") for s in range(5)]
    make_study(tmp_path, STUDY, "mobilenetv2", {"model.bottleneck_act": ["identity", "relu6"]}, runs)
    return V.evaluate([C.PAIRED_CLAIMS["figure6a_converged_subset"]], tmp_path)[0]


@pytest.mark.parametrize("gap, expected", [(0.03, "supported"), (-0.03, "contradicted"),
                                           (0.0, "no difference detected (+0.00 points [")])
def test_a_converged_study_gives_each_preregistered_answer(tmp_path, gap, expected):
    row = converged_row(tmp_path, gap)
    assert row.verdict.startswith(expected)
    assert "final clean train accuracy (convergence rule: every run at least 99%): linear 99.50% (lowest 99.50%, " \
           "n = 5); relu6 99.50%" in row.ours  # the arms side by side


def test_one_run_below_99_percent_clean_train_accuracy_withholds_the_verdict(tmp_path):
    row = converged_row(tmp_path, 0.03, clean={("relu6", 3): 0.9875})
    assert row.verdict == "not converged: no verdict (1 of 10 runs below 99%: relu6 seed 3 98.75%)"
    assert "relu6 99.35% (lowest 98.75%, n = 5)" in row.ours  # mean (4 x 99.50 + 98.75) / 5


def test_a_run_without_its_clean_train_accuracy_withholds_the_verdict(tmp_path):
    """The rule asks every run to show 99%: a done run that does not record it cannot pass by omission."""
    row = converged_row(tmp_path, 0.03, clean={("relu6", 2): None})
    assert row.verdict == ("not converged: no verdict (1 of 10 runs below 99%: relu6 seed 2 (clean train accuracy "
                           "not recorded))")
    assert "relu6 99.50% (lowest 99.50%, n = 4)" in row.ours


def test_no_verdict_before_every_planned_run_is_done(tmp_path):
    row = converged_row(tmp_path, 0.03, missing={("identity", 4)})
    assert row.verdict == "not enough runs yet (9 of 10 planned runs done)"
    assert math.isnan(row.tests[0].p)


# The converged studies of the GPU campaign (results/converged_campaign/<study>/): their rows beside the budget
# rows, and their pre-registered convergence rule (experiments/figure6a_converged_cifar10.yaml, addendum 1).

C6A = "converged_campaign/figure6a_converged_cifar10"
C6B = "converged_campaign/figure6b_converged_cifar10"
CINJ = "converged_campaign/injective_bottleneck_converged_cifar10"
FLAT = [0.5, 0.8] + [0.995] * 10  # a clean-train curve that ends on a plateau at 99.5%


def converged_study(results, study, factor, acc, *, clean=None, curve=None, missing=(), seeds=5):
    """A converged study on constructed run records: arm ``a`` of ``factor`` at test accuracy ``acc[a]`` (plus
    per-seed noise but for the first arm); ``clean[(a, seed)]``: last-epoch clean train accuracy (default 0.995;
    None: not recorded), ``curve[(a, seed)]``: its per-epoch curve (default ``FLAT`` ending at that accuracy;
    None: not recorded); ``missing``: runs that failed."""
    clean, curve = clean or {}, curve or {}
    runs = []
    for i, a in enumerate(acc):
        for s in range(seeds):
            final = clean.get((a, s), 0.995)
            metrics = {"test_acc": acc[a] + (i > 0) * NOISE[(s + i) % 5]}
            if final is not None:
                metrics["clean_train_acc"] = final
            got = curve.get((a, s), FLAT[:-1] + [final] if final is not None else FLAT)
            if got is not None:
                metrics["curve_clean_train_acc"] = got
            runs.append(({factor: a, "train.epochs": 200}, s, None if (a, s) in missing else metrics, None))
    make_study(results, study, "mobilenetv2", {factor: list(acc)}, runs)


def figure6a(tmp_path, gap=0.03, **kw):
    """Figure 6a's row with only its converged study (the budget study is absent): linear at 0.80, relu6 ``gap``
    below it."""
    converged_study(tmp_path, C6A, "model.bottleneck_act", {"identity": 0.80, "relu6": 0.80 - gap}, **kw)
    return V.evaluate([C.PAIRED_CLAIMS["figure6a"]], tmp_path)[0]


@pytest.mark.parametrize("gap, expected", [(0.03, "supported"), (-0.03, "contradicted"),
                                           (0.0, "no difference detected (+")])
def test_a_converged_pair_gets_a_verdict_beside_the_budget_one(tmp_path, gap, expected):
    row = figure6a(tmp_path, gap)
    assert row.verdict == "not enough runs yet (figure6a_linear_bottleneck_cifar10 not run yet)"  # the budget scale
    conv = row.converged_row
    assert conv.verdict.startswith(expected) and conv.tests[0].verdict.startswith(expected)
    assert conv.tests[0].summary["n"] == 5 and not math.isnan(conv.tests[0].p)
    assert row.converged == f"**{conv.verdict}**: {conv.ours}"
    # the arms' last-epoch clean train accuracies side by side, with their means over the last 10 epochs
    assert ("last-epoch clean train accuracy (convergence rule: every run at least 99%, every arm's mean within 1 "
            "point of its mean over the last 10 epochs): linear 99.50% (lowest 99.50%, mean over the last 10 epochs "
            "99.50%, n = 5); relu6 99.50% (lowest 99.50%, mean over the last 10 epochs 99.50%, n = 5)") in conv.ours
    assert conv.ours.startswith("full CIFAR-10 (JPEG copy, 50,000 training images), width 0.5, 200 epochs, the full "
                                "test split; 10 pre-registered runs")  # the constructed plan's 10 runs


def test_one_run_below_99_percent_clean_train_accuracy_gives_no_verdict_and_names_its_arm(tmp_path):
    row = figure6a(tmp_path, clean={("relu6", 3): 0.985}).converged_row
    assert row.verdict == "not converged: no verdict (relu6: seed 3 98.50%, 0.50 points below 99%)"
    assert "relu6 99.30% (lowest 98.50%, mean over the last 10 epochs 99.48%, n = 5)" in row.ours
    assert not math.isnan(row.tests[0].p)  # the test ran and is in the family; only its verdict is withheld


def test_a_done_run_without_its_clean_train_accuracy_or_curve_is_not_converged(tmp_path):
    row = figure6a(tmp_path / "a", clean={("identity", 1): None}).converged_row
    assert row.verdict == "not converged: no verdict (linear: seed 1 (clean train accuracy not recorded))"
    row = figure6a(tmp_path / "b", curve={("relu6", 0): None}).converged_row
    assert row.verdict == ("not converged: no verdict (relu6: seed 0 (no per-epoch clean train accuracy over the "
                           "last 10 epochs))")


@pytest.mark.parametrize("low, expected", [
    (0.965, "not converged: no verdict (linear: last-epoch mean 99.50% is 1.50 points above its mean over the last "
            "10 epochs (98.00%), 0.50 points beyond the 1-point plateau)"),
    (0.977, "supported"),  # 0.90 points above its last-10 mean: within the 1-point plateau
])
def test_an_arm_still_climbing_over_its_last_10_epochs_gets_no_verdict(tmp_path, low, expected):
    """The plateau part: every run ends at 99.5% (the floor passes), but the linear arm's last 10 epochs are half
    at ``low``: its last-epoch mean is (99.5 - low) / 2 above its mean over them."""
    climbing = [0.5, 0.8] + [low] * 5 + [0.995] * 5
    row = figure6a(tmp_path, curve={("identity", s): climbing for s in range(5)}).converged_row
    assert row.verdict == expected


def test_no_verdict_before_every_planned_run_is_done(tmp_path):
    row = figure6a(tmp_path, missing={("relu6", 4)})
    assert row.converged_row.verdict == "not enough runs yet (9 of 10 planned runs done)"
    assert math.isnan(row.converged_row.tests[0].p)  # it does not enter the Holm family before the planned n
    assert row.converged.startswith("**not enough runs yet (9 of 10 planned runs done)**: full CIFAR-10")


def test_before_its_study_has_run_the_cell_says_not_run_yet_with_the_planned_runs_of_the_experiment_file(tmp_path):
    from manifold_lab.spec.load import load_spec
    from manifold_lab.spec.sweep import plan

    rows = {r.claim: r for r in V.evaluate(list(C.PAIRED_CLAIMS.values()), tmp_path)}
    for key, name in (("figure6a", C6A), ("figure6b", C6B), ("injective", CINJ)):
        planned = len(plan(load_spec(REPO / "experiments" / f"{name.split('/')[1]}.yaml")))
        row = rows[C.PAIRED_CLAIMS[key].claim]
        assert row.converged == (f"not run yet (0 of {planned} planned runs; GPU campaign: `manifold-lab campaign "
                                 f"experiments/converged_campaign.yaml --stop-after 12h --batch-runs 10 --reference`, into "
                                 f"results/{name}/)")
        assert all(t.verdict == f"not enough runs yet ({name} not run yet)" for t in row.converged_row.tests)
    assert rows[C.PAIRED_CLAIMS["width"].claim].converged == "none planned"


def test_figure6b_at_convergence_the_sandglass_test_does_not_decide_the_row(tmp_path):
    acc = {"bottleneck": 0.80, "expansion": 0.77, "none": 0.70, "sandglass": 0.80}
    converged_study(tmp_path, C6B, "model.shortcut", acc, clean={("sandglass", 2): 0.95})
    row = V.evaluate([C.PAIRED_CLAIMS["figure6b"]], tmp_path)[0].converged_row
    expansion, none, sandglass = row.tests
    assert expansion.verdict == none.verdict == row.verdict == "supported"
    assert sandglass.verdict == "not converged: no verdict (sandglass: seed 2 95.00%, 4.00 points below 99%)"
    assert "sandglass 98.60% (lowest 95.00%" in row.ours


@pytest.mark.parametrize("elu_clean, expected", [
    (0.995, "the injective arms are free (the information account is supported)"),
    (0.98, "not converged: no verdict (elu: seed 0 98.00%, 1.00 points below 99%)"),
])
def test_the_injective_rule_decides_its_converged_study_once_every_arm_converged(tmp_path, elu_clean, expected):
    acc = {"identity": 0.80, "relu6": 0.70, "leaky_relu_0.1": 0.79, "leaky_relu_0.3": 0.79, "elu": 0.79,
           "softplus": 0.79}
    converged_study(tmp_path, CINJ, "model.bottleneck_act", acc, clean={("elu", 0): elu_clean})
    row = V.evaluate([C.PAIRED_CLAIMS["injective"]], tmp_path)[0].converged_row
    assert row.verdict == expected


def test_the_table_shows_both_scales_in_the_figure6a_row_and_one_holm_family(tmp_path):
    budget = [({"model.bottleneck_act": a}, s, {"test_acc": 0.60 + (a == "identity") * (0.03 + NOISE[s])}, None)
              for a in ("identity", "relu6") for s in range(5)]
    make_study(tmp_path, "figure6a_linear_bottleneck_cifar10", "mobilenetv2",
               {"model.bottleneck_act": ["identity", "relu6"]}, budget)
    converged_study(tmp_path, C6A, "model.bottleneck_act", {"identity": 0.80, "relu6": 0.79},
                    clean={("relu6", 1): 0.98})
    rows = C.claims(tmp_path)
    text = M.render(rows, tmp_path)
    assert "| claim of the paper | the paper's evidence | ours | verdict | converged scale | regenerate |" in text
    lines = text.splitlines()
    start = lines.index("| claim of the paper | the paper's evidence | ours | verdict | converged scale | regenerate |")
    main = lines[start + 2:lines.index("", start)]
    table = {line.split(" | ")[0][2:]: line.split(" | ") for line in main}
    assert len(table) == len(C.CLAIMS) and all(len(cells) == 6 for cells in table.values())
    cells = table[C.PAIRED_CLAIMS["figure6a"].claim]
    assert cells[3] == "**supported**"  # the budget scale
    assert cells[4].startswith("**not converged: no verdict (relu6: seed 1 98.00%, 1.00 points below 99%)**: full "
                               "CIFAR-10 (JPEG copy, 50,000 training images), width 0.5, 200 epochs")
    assert "relu6 99.20% (lowest 98.00%" in cells[4] and cells[5].startswith("`manifold-lab run experiments/figure6a_")
    assert table[C.PAIRED_CLAIMS["width"].claim][4] == "none planned"
    assert table[C.PAIRED_CLAIMS["figure6b"].claim][4].startswith("not run yet (0 of ")
    # the family table lists the converged test with its scale; both tests are in one Holm family
    (budget_test,), (conv_test,) = rows[0].tests, rows[0].converged_row.tests
    assert [budget_test.p_adj, conv_test.p_adj] == pytest.approx(holm_adjust([budget_test.p, conv_test.p]))
    assert min(budget_test.p_adj, conv_test.p_adj) == pytest.approx(2 * min(budget_test.p, conv_test.p))  # m = 2
    assert (f"| {C.PAIRED_CLAIMS['figure6a'].claim}, converged scale | linear - relu6 | 5 | "
            f"{100 * conv_test.summary['mean']:+.2f} |") in text
    assert "over the 2 tests below that have a p-value" in text
    assert f"| {C6A} | Figure 6a at the converged scale (full CIFAR-10, 200 epochs, GPU campaign) | 10 / 10, 0 failed" \
        in text
