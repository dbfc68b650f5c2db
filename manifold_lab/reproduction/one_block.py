"""Where the ReLU6-bottleneck penalty comes from, one block at a time (issue 22, section 3; beyond the paper).

``experiments/one_block_penalty_cifar10.yaml`` puts ReLU6 after the projection of one block ``N`` at a time
(arm ``block_N``: ``features.N`` alone, every other bottleneck linear) against the linear network (arm
``none``), the first block (no shortcut) and the second block (shortcut) of each stage, at the same
resolution and width. With ``acc`` the test accuracy on the full test split, per seed ``s``:

    penalty(N)_s = acc(none)_s - acc(block_N)_s
    contrast_s   = mean over the stages (F, S) of penalty(F)_s - penalty(S)_s
                 = mean over the stages of acc(block_S)_s - acc(block_F)_s

``contrast`` is the row's primary test (``primary_test``: a paired t test over the seeds, Holm-adjusted with
the claim table); ``stage_rule`` words its verdict as pre-registered and adds, descriptively, each stage's
contrast and each block's penalty. ``block_correlation`` is the pre-registered correlation that replaces the
withdrawn probe correlation: over the blocks, Spearman's rho between

    branch loss_N = mean over seeds of 1 - r2_branch_linear of features.N in the block_N network
                    (probe.json "final": the held-out ridge R^2 of the bottleneck pre-activation from
                    act3's output; act3 is that network's only non-linear bottleneck)
    penalty_N     = mean over seeds of penalty(N)_s

with a 95% percentile bootstrap interval over the blocks (``probe_correlation.spearman_bootstrap``:
``N_BOOT`` resamples, ``numpy.random.default_rng(0)``, resamples with a constant vector left out).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from manifold_lab.reproduction.probe_correlation import N_BOOT, spearman_bootstrap
from manifold_lab.reproduction.records import difference, done_runs, per_seed, probe_records, run_counts
from manifold_lab.reproduction.verdict import CONTRADICTED, SUPPORTED, PairedTest, _pts
from manifold_lab.stats import describe

STUDY = "one_block_penalty_cifar10"
#: The stages the CPU ran, (first block, second block) each: addendum 1 of the experiment file (c=24, 32, 64).
CPU_STAGES = ((2, 3), (4, 5), (7, 8))
#: Their runs in the plan (``run --list``): the first 7 arms of the sweep x 7 seeds; the CPU's command trains
#: these alone (``run --runs``), leaving stages c=96 and c=160 to a device.
CPU_RUNS = "0-48"
COMMAND = f"manifold-lab run experiments/{STUDY}.yaml --runs {CPU_RUNS} --reference"
#: The linear network: "none" is stored as bottleneck_act identity (manifold_lab/train/config.py).
NONE = {"model.bottleneck_act": "identity"}
MIN_BLOCKS = 6
FOLLOWS, REVERSED = ("supported: the penalty follows the missing shortcut",
                     "contradicted: a block with a shortcut costs more than the one without")
PREDICTS, OPPOSITE, NO_PREDICTION = ("the branch loss predicts the penalty", "it predicts the opposite",
                                     "does not predict at this scale")


def block(n: int) -> dict:
    """The arm ``block_N`` as stored params: ReLU6 after the projection of ``features.N`` alone."""
    return {"model.bottleneck_act": "relu6", "model.bottleneck_act_blocks": f"block_{n}"}


def planned_arms(stages=CPU_STAGES) -> tuple[dict, ...]:
    """The arms whose every planned run must be done before a verdict: the linear network and the stages' blocks."""
    return (NONE, *(block(n) for pair in stages for n in pair))


def primary_test(stages=CPU_STAGES) -> PairedTest:
    """The pre-registered primary test: ``contrast_s`` (module docstring) over ``stages``."""
    (first, second), *rest = stages
    return PairedTest("mean over stages of acc(second block) - acc(first block) = penalty(first) - penalty(second)",
                      STUDY, "test_acc", block(second), block(first),
                      pairs=tuple((block(s), block(f)) for f, s in rest), all_planned=planned_arms(stages))


def stage_rule(spec, tests: list, results: Path, stages=CPU_STAGES) -> tuple[str, str]:
    """The row's verdict in the pre-registered words (``FOLLOWS`` for supported, ``REVERSED`` for contradicted,
    the rule's own words otherwise) and, descriptive, each stage's contrast and each block's penalty with their
    95% intervals. ``rule(spec, evaluated tests, results) -> (text, verdict)`` of ``rules.PAIRED_RULES``."""
    runs = done_runs(results / STUDY)
    acc = {n: per_seed(runs, "test_acc", block(n)) for pair in stages for n in pair}
    linear = per_seed(runs, "test_acc", NONE)
    parts = [f"stage of block_{f} / block_{s}: acc(block_{s}) - acc(block_{f}) = "
             f"{_pts(describe(list(difference(acc[s], acc[f]).values())))}" for f, s in stages]
    parts += [f"penalty of block_{n} (none - block_{n}) = {_pts(describe(list(difference(linear, acc[n]).values())))}"
              for pair in stages for n in pair]
    verdict = tests[0].verdict
    verdict = {SUPPORTED: FOLLOWS, CONTRADICTED: REVERSED}.get(verdict, verdict)
    return ("descriptive: " + "; ".join(parts)) if runs else "", verdict


def block_points(results: Path, stages=CPU_STAGES) -> list[dict]:
    """One point per block with its paired seeds (``none`` and ``block_N`` both done, both with a probe):
    ``{block, seeds, penalty, branch_loss, branch_loss_step0, label_drop}``, each a mean over those seeds
    (``label_drop``: the held-out label-probe accuracy of ``features.N``'s output, none minus block_N)."""
    runs = done_runs(results / STUDY)
    linear = {r.seed: r for r in runs if all(r.param(k) == v for k, v in NONE.items())}
    out = []
    for n in (n for pair in stages for n in pair):
        name, rows = f"features.{n}", []
        for r in (r for r in runs if all(r.param(k) == v for k, v in block(n).items()) and r.seed in linear):
            mine, lin = probe_records(r), probe_records(linear[r.seed])
            if mine is None or lin is None or "test_acc" not in r.metrics or "test_acc" not in linear[r.seed].metrics:
                continue
            rows.append((float(linear[r.seed].metrics["test_acc"]) - float(r.metrics["test_acc"]),
                         1.0 - mine["final"][name]["r2_branch_linear"], 1.0 - mine["step0"][name]["r2_branch_linear"],
                         lin["final"][name]["label_accuracy"] - mine["final"][name]["label_accuracy"]))
        if rows:
            mean = np.mean(rows, axis=0)
            out.append({"block": n, "seeds": len(rows), "penalty": float(mean[0]), "branch_loss": float(mean[1]),
                        "branch_loss_step0": float(mean[2]), "label_drop": float(mean[3])})
    return out


def _rho_text(res: dict) -> str:
    if res["n"] < 3:
        return "too few blocks"
    if np.isnan(res["rho"]):
        return "undefined (a constant measure)"
    return f"Spearman rho = {res['rho']:+.2f} [{res['ci_low']:+.2f}, {res['ci_high']:+.2f}]"


def block_correlation(row, results: Path) -> tuple[str, str]:
    """The pre-registered rule (the experiment file): *the branch loss predicts the penalty* if the 95% bootstrap
    interval of Spearman's rho over the blocks lies above 0, *the opposite* if below, *does not predict at this
    scale* if it contains 0; no verdict before every planned run of ``row.params["stages"]`` is done, or with
    fewer than ``MIN_BLOCKS`` blocks. Secondary, no verdict: the same against the label-accuracy drop and against
    the untrained (step 0) branch loss."""
    stages = row.params["stages"]
    total, done, _ = run_counts(results / STUDY, planned_arms(stages))
    points = block_points(results, stages)
    res = spearman_bootstrap([p["branch_loss"] for p in points], [p["penalty"] for p in points], n_boot=N_BOOT)
    if not total:
        verdict = f"not enough runs yet ({STUDY} not run yet)"
    elif done < total:
        verdict = f"not enough runs yet ({done} of {total} planned runs done)"
    elif len(points) < MIN_BLOCKS:
        verdict = f"not enough blocks ({len(points)} of {MIN_BLOCKS})"
    else:
        verdict = PREDICTS if res["ci_low"] > 0 else OPPOSITE if res["ci_high"] < 0 else NO_PREDICTION
    per_block = "; ".join(f"block_{p['block']}: branch loss {p['branch_loss']:.3f}, penalty "
                          f"{100 * p['penalty']:+.2f} points (n = {p['seeds']})" for p in points)
    secondary = "; ".join(
        f"{what}: {_rho_text(spearman_bootstrap([p[key] for p in points], [p['penalty'] for p in points]))}"
        for what, key in (("label-accuracy drop", "label_drop"), ("step-0 branch loss", "branch_loss_step0")))
    planned = [f"block_{n}" for pair in stages for n in pair]
    blocks = ", ".join(planned)
    if not points:
        return f"blocks {blocks}, {row.setting}: no runs yet", verdict
    counted = (f"{len(points)} blocks ({blocks})" if len(points) == len(planned)
               else f"{len(points)} of the {len(planned)} planned blocks with paired runs so far ({blocks})")
    return (f"{counted}, {row.setting}: {_rho_text(res)} (95% bootstrap); {per_block}. "
            f"Secondary, no verdict: {secondary}", verdict)
