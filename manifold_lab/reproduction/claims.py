"""The reproduction's claim table (``results/README.md``): one row per claim of the paper.

Every number is read from a committed results folder (``results/<study>/``) and
every verdict is drawn by one rule, so the table regenerates with
``manifold-lab claims`` and nothing in it is typed by hand.

Claims as data: a claim stated as paired differences over seeds is a
``ClaimSpec`` of ``PairedTest`` s (``PAIRED_CLAIMS``), all evaluated at once by
``evaluate`` (one Holm family); every other row is a ``Row`` (``ROWS``: Figure 7,
Theorem 1, Figure 1, the probe correlation, the ID profile) evaluated by
``RULES[row.rule]``. Adding a study adds a declaration, not code.

The converged scale: a ``ClaimSpec`` declares the same claim at the converged scale as its
``converged`` (a ``ClaimSpec`` on the converged study's folder under ``results/converged_campaign/``, the
campaign's ``--reference`` output, with the convergence rule ``PAIRED_RULES["plateau"]``); its tests join
the one Holm family and the table shows its verdict beside the row's.

The rule that turns a row's tests into its verdict is ``manifold_lab.reproduction.verdict``;
``manifold_lab.reproduction.readme`` renders the rows as ``results/README.md``.
"""

from __future__ import annotations

from pathlib import Path

from manifold_lab.reproduction import one_block as ONE
from manifold_lab.reproduction.rules import PAIRED_RULES, RULES, Row
from manifold_lab.reproduction.verdict import Claim, ClaimSpec, PairedTest, evaluate

_LIN, _RELU6 = {"model.bottleneck_act": "identity"}, {"model.bottleneck_act": "relu6"}
# The penalty-location arms by their stored params: "none" is stored as the linear network
# (manifold_lab/train/config.py), so it is matched by bottleneck_act, and "all" needs relu6 too.
_WHERE = {"none": _LIN, "all": {**_RELU6, "model.bottleneck_act_blocks": "all"},
          "without_shortcut": {**_RELU6, "model.bottleneck_act_blocks": "without_shortcut"},
          "with_shortcut": {**_RELU6, "model.bottleneck_act_blocks": "with_shortcut"}}
_CIFAR = "CIFAR-10 (JPEG copy)"
_SUBSET = "figure6a_converged_subset_cifar10"
_INJ, _INJECTIVE = "injective_bottleneck_cifar10", ("leaky_relu_0.1", "leaky_relu_0.3", "elu", "softplus")

#: The GPU campaign of the converged studies; its studies' folders are results/<campaign>/<study>/ (its
#: --reference output), their experiment files experiments/<study>.yaml.
CAMPAIGN = "experiments/converged_campaign.yaml"
CAMPAIGN_COMMAND = f"manifold-lab campaign {CAMPAIGN} --stop-after 12h --batch-runs 10 --reference"
_C6A, _C6B, _CINJ = (f"{Path(CAMPAIGN).stem}/{name}" for name in (
    "figure6a_converged_cifar10", "figure6b_converged_cifar10", "injective_bottleneck_converged_cifar10"))


def _at_convergence(claim: str, study: str, tests: tuple, arms: tuple, rule: str = "plateau") -> ClaimSpec:
    """A row's claim at the converged scale: ``study`` (a folder of the campaign), its pre-registered ``tests``
    (every one waits for all its planned runs) and ``arms``, judged by the convergence rule."""
    return ClaimSpec(
        f"{claim}, converged scale", "", f"full CIFAR-10 (JPEG copy, 50,000 training images), width {{width}}, "
        f"{{param:train.epochs}} epochs, the full test split; {{planned}} pre-registered runs, no verdict before all "
        f"are done; pre-registered in experiments/{Path(study).name}.yaml",
        tests, (study,), arms=arms, rule=PAIRED_RULES[rule], command=CAMPAIGN_COMMAND)


def _injective_tests(study: str) -> tuple:
    """The injective study's pre-registered tests on a study folder: the relu6 penalty, then each injective arm
    against relu6."""
    return (PairedTest("penalty of relu6 (identity - relu6)", study, "test_acc", _LIN, _RELU6, all_planned=True),
            *(PairedTest(f"{a} - relu6", study, "test_acc", {"model.bottleneck_act": a}, _RELU6, all_planned=True)
              for a in _INJECTIVE))


def _injective_arms(study: str) -> tuple:
    return tuple((a, study, "test_acc", {"model.bottleneck_act": a}) for a in ("identity", "relu6", *_INJECTIVE))


_SHORTCUT = {k: {"model.shortcut": k} for k in ("bottleneck", "expansion", "none", "sandglass")}


def _old_rule_note() -> str:
    """The note on Figure 6b's expansion arm while its runs predate issue 11, with the expansion shortcuts the
    committed runs (cifar_fast, width 0.5) had under the rule before it (a network is built: only when shown)."""
    from manifold_lab.models import mobilenet_v2
    from manifold_lab.models.mobilenetv2 import expansion_shortcuts_before_issue11

    old_rule = expansion_shortcuts_before_issue11(mobilenet_v2("cifar_fast", width_mult=0.5))
    return (f"**the expansion arm's runs predate issue 11: they had {old_rule} shortcuts against the "
            "bottleneck arm's 10 (old rule: both blocks keep their shape), so this contrast mixes "
            "placement with count; rerun: `manifold-lab run experiments/figure6b_shortcuts_cifar10.yaml`**")


#: The paired claims, in table order (``evaluate``); the other rows are ``ROWS``.
PAIRED_CLAIMS = {
    "figure6a": ClaimSpec(
        "Linear bottleneck beats ReLU6 in the bottleneck (Figure 6a)",
        "ImageNet, 16 GPUs: linear ends higher on the 66-72% axis of Figure 6a; section 3.2: "
        "non-linear bottlenecks cost \"several percent\"",
        f"{_CIFAR}, width {{width}}, {{param:train.epochs}} epochs (how the gap changes with longer training: the "
        "budget ladder's row)",
        (PairedTest("linear - relu6", "figure6a_linear_bottleneck_cifar10", "test_acc", _LIN, _RELU6),),
        ("figure6a_linear_bottleneck_cifar10",),
        arms=(("linear", "figure6a_linear_bottleneck_cifar10", "test_acc", _LIN),
              ("relu6", "figure6a_linear_bottleneck_cifar10", "test_acc", _RELU6)),
        converged=_at_convergence(
            "Linear bottleneck beats ReLU6 in the bottleneck (Figure 6a)", _C6A,
            (PairedTest("linear - relu6", _C6A, "test_acc", _LIN, _RELU6, all_planned=True),),
            (("linear", _C6A, "test_acc", _LIN), ("relu6", _C6A, "test_acc", _RELU6)))),
    "figure6a_converged_subset": ClaimSpec(
        "Linear bottleneck beats ReLU6 in the bottleneck when both are trained to convergence (Figure 6a, "
        "CPU subset)",
        "ImageNet, 16 GPUs, fully trained networks (Figure 6a); this row is the subset, not the full-data study",
        f"{_CIFAR}, width {{width}}, the 10,000-image training subset, {{param:train.epochs}} epochs, the full test "
        "split, 5 pre-registered seeds per arm, no verdict before all have run and none unless every run ends at 99% "
        "clean train accuracy; pre-registered in experiments/figure6a_converged_subset_cifar10.yaml",
        (PairedTest("linear - relu6", _SUBSET, "test_acc", _LIN, _RELU6, all_planned=True),),
        (_SUBSET,),
        arms=(("linear", _SUBSET, "test_acc", _LIN), ("relu6", _SUBSET, "test_acc", _RELU6)),
        rule=PAIRED_RULES["converged"],
        converged="none planned beyond this row (it is the CPU subset trained to convergence; the full-data study "
                  "is in Figure 6a's row)"),
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
        stale=(("figure6b_shortcuts_cifar10", {"model.shortcut": "expansion"}, "shortcuts", _old_rule_note),),
        converged=_at_convergence(
            "Shortcuts between bottlenecks beat shortcuts between expansions and no shortcut (Figure 6b)", _C6B,
            (*(PairedTest(f"bottleneck - {other}", _C6B, "test_acc", _SHORTCUT["bottleneck"], _SHORTCUT[other],
                          all_planned=True) for other in ("expansion", "none")),
             PairedTest("sandglass - bottleneck (MobileNeXt's prediction; does not decide this row)", _C6B,
                        "test_acc", _SHORTCUT["sandglass"], _SHORTCUT["bottleneck"], role="own", all_planned=True)),
            tuple((k, _C6B, "test_acc", v) for k, v in _SHORTCUT.items()))),
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
                    "test_acc", _LIN, _RELU6, across="model.bottleneck_mult", alternative="greater",
                    all_planned=True),),
        ("bottleneck_width_cifar10",),
        gaps=(("bottleneck_width_cifar10", "test_acc", _LIN, _RELU6, "model.bottleneck_mult", {}),),
        slope=True),
    "budget": ClaimSpec(
        "A ReLU6-bottleneck penalty remains at 80 epochs, the longest budget (not all of it is slow fitting)",
        "Section 3.2 attributes the penalty to information loss, not to optimisation; not tested in the paper",
        f"{_CIFAR}, width {{width}}, linear vs relu6 at several budgets; pre-registered in "
        "experiments/budget_ladder_cifar10.yaml",
        (PairedTest("linear - relu6 at the longest budget", "budget_ladder_cifar10", "test_acc", _LIN, _RELU6,
                    at=("train.epochs", "last"), all_planned=True),
         PairedTest("gap at the shortest minus gap at the longest budget (> 0: the gap shrinks)",
                    "budget_ladder_cifar10", "test_acc", _LIN, _RELU6, across="train.epochs",
                    role="descriptive", all_planned=True)),
        ("budget_ladder_cifar10",),
        gaps=(("budget_ladder_cifar10", "test_acc", _LIN, _RELU6, "train.epochs", {}),
              ("budget_ladder_cifar10", "clean_train_acc", _LIN, _RELU6, "train.epochs", {})),
        matched=(("budget_ladder_cifar10", _LIN, _RELU6, "train.epochs", "last"),)),
    "penalty_location": ClaimSpec(
        "The ReLU6 penalty comes from the blocks without a shortcut",
        "Section 3.2's mechanism: where the whole representation passes through the bottleneck (7 of 17 "
        "blocks), a ReLU6 there loses information no shortcut carries around; not tested in the paper",
        f"{_CIFAR}, width {{width}}, ReLU6 in all / only shape-changing / only shortcut blocks; pre-registered in "
        "experiments/penalty_location_cifar10.yaml",
        (PairedTest("ReLU6 only with shortcut - ReLU6 only without", "penalty_location_cifar10", "test_acc",
                    _WHERE["with_shortcut"], _WHERE["without_shortcut"], all_planned=True),
         PairedTest("penalty of ReLU6 without shortcut (none - without_shortcut)", "penalty_location_cifar10",
                    "test_acc", _WHERE["none"], _WHERE["without_shortcut"], role="descriptive", all_planned=True),
         PairedTest("penalty of ReLU6 with shortcut (none - with_shortcut)", "penalty_location_cifar10",
                    "test_acc", _WHERE["none"], _WHERE["with_shortcut"], role="descriptive", all_planned=True)),
        ("penalty_location_cifar10",),
        arms=tuple((k, "penalty_location_cifar10", "test_acc", v) for k, v in _WHERE.items())),
    "one_block": ClaimSpec(
        "Beyond the paper: the ReLU6 penalty follows the missing shortcut, not the block's position",
        "Section 3.2's mechanism, with the shortcut as what carries the information a ReLU6 bottleneck loses; the "
        "penalty-location study could not tell a missing shortcut from a block's position; not tested in the "
        "paper; pre-registered in experiments/one_block_penalty_cifar10.yaml",
        f"{_CIFAR}, width {{width}}, {{param:train.epochs}} epochs, the full test split, ReLU6 after the projection "
        "of one block at a time, the first (no shortcut) and second (shortcut) block of a stage; the CPU runs the "
        f"stages of blocks {', '.join(f'{f}/{s}' for f, s in ONE.CPU_STAGES)} (addendum 1), 7 pre-registered seeds, "
        "no verdict before all their runs have run",
        (ONE.primary_test(),),
        (ONE.STUDY,),
        arms=(("none", ONE.STUDY, "test_acc", ONE.NONE),
              *((f"block_{n}", ONE.STUDY, "test_acc", ONE.block(n)) for pair in ONE.CPU_STAGES for n in pair)),
        rule=PAIRED_RULES["one_block"], command=ONE.COMMAND),
    "injective": ClaimSpec(
        "Beyond the paper: an injective non-linear bottleneck costs (almost) nothing, so the ReLU6 penalty is "
        "information loss",
        "Section 3.2's account (ReLU on a narrow layer destroys information, a linear bottleneck keeps it); not "
        "tested in the paper; pre-registered in experiments/injective_bottleneck_cifar10.yaml",
        f"{_CIFAR}, width {{width}}, {{param:train.epochs}} epochs, the full test split; 5 pre-registered seeds per "
        "arm, no verdict before all have run",
        _injective_tests(_INJ),
        (_INJ,),
        arms=_injective_arms(_INJ),
        rule=PAIRED_RULES["injective"],
        converged=_at_convergence(
            "Beyond the paper: an injective non-linear bottleneck costs (almost) nothing, so the ReLU6 penalty is "
            "information loss", _CINJ, _injective_tests(_CINJ), _injective_arms(_CINJ), rule="plateau_injective")),
}


PROBE_COMMAND = "manifold-lab probe-correlation --out results/probe_penalty_correlation"

#: The rows that are not paired differences, in table order after ``PAIRED_CLAIMS``.
ROWS = {
    "figure7": Row(
        "Trained layers stay above the invertibility threshold (Figure 7)",
        "ImageNet MobileNetV2: fully trained, all but two ReLU layers have a mean positive-channel count above C/6",
        "manifold-lab run experiments/figure6a_linear_bottleneck_cifar10.yaml --reference",
        f"{_CIFAR}, class-balanced test sample; a layer's margin = its mean positive-channel count / its threshold, "
        "the dimension of the manifold it must keep (manifold_lab/train/relu_stats.py THRESHOLDS: min(k, k') for a "
        "block's expansion and depthwise ReLUs, i.e. C/t when it expands, k' for the t = 1 block; 3 for the stem; "
        "the last bottleneck's k' for the head); below = margin < 1; step 0 and trained both in eval mode with "
        "running statistics (step 0: a calibration pass over 250 training images)",
        "layers_below", "figure6a_linear_bottleneck_cifar10",
        {"arms": {"identity": "linear", "relu6": "relu6"}, "at_most": 2}),
    "theorem1": Row(
        "Theorem 1: ReLU(Bx) keeps the fraction N(m,n)/2^m of an n-dimensional set",
        "Proof in Appendix A (no simulation in the paper)",
        "manifold-lab theorem --out results/theorem1", "Monte Carlo on the unit n-ball", "z_within_bound",
        "theorem1/theorem1.csv"),
    "figure1": Row(
        "Figure 1: a 2-D spiral collapses through ReLU in R^2 and R^3 and survives in R^15 and R^30",
        "Figure 1 (pictures only)",
        "manifold-lab run experiments/figure1_spiral.yaml --reference",
        "collapsed fraction of the spiral (2,000 points, {seeds} seeds)", "collapse_intervals",
        "figure1_spiral/summary.csv", {"collapses": (2, 3), "survives": (15, 30), "below": 0.01}),
    "probe_correlation": Row(
        "Beyond the paper: the information the bottlenecks lose predicts the ReLU6 penalty",
        "Implied by section 3.2 (the penalty comes from information lost in the bottleneck), never tested; "
        "pre-registered in experiments/probe_penalty_correlation.md",
        PROBE_COMMAND,
        "loss = drop of the block-input R^2 (probe, trained networks), penalty = linear - relu6 accuracy",
        "preregistered_correlation", "probe_penalty_correlation",
        {"withdrawn": ("the measure rewards dead branches",
                       "for a block with a shortcut, out = x + f(x): a ReLU6 that zeroes the branch makes x perfectly "
                       "recoverable, so the block-input R^2 rises with the damage "
                       "([addendum](../experiments/probe_penalty_correlation.md#addendum-withdrawn))")}),
    "block_correlation": Row(
        "Beyond the paper: a block's branch loss predicts the ReLU6 penalty of that block",
        "Implied by section 3.2 (the penalty comes from information lost in the bottleneck), never tested; "
        "replaces the withdrawn probe correlation; pre-registered in experiments/one_block_penalty_cifar10.yaml",
        ONE.COMMAND,
        "branch loss = 1 - held-out ridge R^2 of block N's bottleneck pre-activation from its ReLU6 output (probe of "
        "the trained block_N network), penalty = acc(none) - acc(block_N), both means over 7 seeds",
        "block_correlation", ONE.STUDY, {"stages": ONE.CPU_STAGES}),
    "id_profile": Row(
        "Beyond the paper: trained networks' intrinsic dimension rises then falls through depth, untrained ones' "
        "is flat (Ansuini et al. 2019)",
        "Ansuini et al. (NeurIPS 2019), ImageNet CNNs; not in the MobileNetV2 paper",
        PROBE_COMMAND, "CIFAR-10 (JPEG copy), TwoNN of every block output (probe, 100 test images)",
        "described_profiles", "probe_penalty_correlation"),
}

#: Every row in table order: the paired claims (one Holm family), then the other rows.
CLAIMS = (*PAIRED_CLAIMS, *ROWS)


def row_claim(row: Row, results: str | Path = "results") -> Claim:
    """One ``Row`` evaluated by its rule (``RULES[row.rule]``); a row with ``params["withdrawn"] = (reason,
    why)`` keeps its numbers and the rule's verdict in the open, but its verdict is ``"withdrawn: <reason>"``."""
    ours, verdict = RULES[row.rule](row, Path(results))
    if "withdrawn" in row.params:
        reason, why = row.params["withdrawn"]
        ours, verdict = f"{ours}; the rule gave \"{verdict}\". Withdrawn: {why}", f"withdrawn: {reason}"
    return Claim(row.claim, row.paper, ours, verdict, row.command)


def claims(results: str | Path = "results") -> list[Claim]:
    """Every claim row, computed from the results folders under ``results`` (one Holm family)."""
    return [*evaluate(list(PAIRED_CLAIMS.values()), results), *(row_claim(row, results) for row in ROWS.values())]
