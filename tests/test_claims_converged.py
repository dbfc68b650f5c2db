"""The row of the CPU study of converged networks (issue 24): its pre-registered convergence rule and verdicts."""

import math

import pytest

from manifold_lab.reproduction import claims as C
from manifold_lab.reproduction import verdict as V
from tests.test_claims import make_study

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
