"""The reproduction's claim table (``results/README.md``): one row per claim of the paper.

Every number is read from a committed results folder (``results/<study>/``) and
every verdict is drawn by one rule, so the table regenerates with
``manifold-lab claims`` and nothing in it is typed by hand.

Claims as data. A claim stated as paired differences over seeds is a
``ClaimSpec`` (``PAIRED_CLAIMS``): the study, and one or more ``PairedTest``
(metric, the arm the paper predicts higher ``a`` and the other ``b``, optionally
a factor ``across`` whose two levels turn the contrast into a difference of
gaps, the predicted sign, the alternative), plus descriptive extras (gaps per
level, relative gap and error ratio, slope against log level). One function,
``evaluate``, turns every spec into a row; adding a study adds a spec, not code.

The rule that turns a row's tests into its verdict is ``manifold_lab.reproduction.verdict``;
``manifold_lab.reproduction.readme`` renders the rows as ``results/README.md``.
"""

from __future__ import annotations

from pathlib import Path

from scipy import stats as sps

from manifold_lab.reproduction.records import csv_rows, damaged, done_runs, layers_below_threshold, old_sample
from manifold_lab.reproduction.verdict import (
    CONTRADICTED,
    MIN_SEEDS,
    SUPPORTED,
    Claim,
    ClaimSpec,
    PairedTest,
    evaluate,
)

_LIN, _RELU6 = {"model.bottleneck_act": "identity"}, {"model.bottleneck_act": "relu6"}
# The penalty-location arms by their stored params: "none" is stored as the linear network
# (manifold_lab/train/config.py), so it is matched by bottleneck_act, and "all" needs relu6 too.
_WHERE = {"none": _LIN, "all": {**_RELU6, "model.bottleneck_act_blocks": "all"},
          "without_shortcut": {**_RELU6, "model.bottleneck_act_blocks": "without_shortcut"},
          "with_shortcut": {**_RELU6, "model.bottleneck_act_blocks": "with_shortcut"}}
_CIFAR = "CIFAR-10 (JPEG copy)"



def _old_rule_note() -> str:
    """The note on Figure 6b's expansion arm while its runs predate issue 11, with the expansion shortcuts the
    committed runs (cifar_fast, width 0.5) had under the rule before it (a network is built: only when shown)."""
    from manifold_lab.models import mobilenet_v2
    from manifold_lab.models.mobilenetv2 import expansion_shortcuts_before_issue11

    old_rule = expansion_shortcuts_before_issue11(mobilenet_v2("cifar_fast", width_mult=0.5))
    return (f"**the expansion arm's runs predate issue 11: they had {old_rule} shortcuts against the "
            "bottleneck arm's 10 (old rule: both blocks keep their shape), so this contrast mixes "
            "placement with count; rerun: `manifold-lab run experiments/figure6b_shortcuts_cifar10.yaml`**")


#: The paired claims, in table order (``evaluate``); the other rows are ``claim_*`` functions.
PAIRED_CLAIMS = {
    "figure6a": ClaimSpec(
        "Linear bottleneck beats ReLU6 in the bottleneck (Figure 6a)",
        "ImageNet, 16 GPUs: linear ends higher on the 66-72% axis of Figure 6a; section 3.2: "
        "non-linear bottlenecks cost \"several percent\"",
        f"{_CIFAR}, width {{width}}",
        (PairedTest("linear - relu6", "figure6a_linear_bottleneck_cifar10", "test_acc", _LIN, _RELU6),),
        ("figure6a_linear_bottleneck_cifar10",),
        arms=(("linear", "figure6a_linear_bottleneck_cifar10", "test_acc", _LIN),
              ("relu6", "figure6a_linear_bottleneck_cifar10", "test_acc", _RELU6))),
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
        stale=(("figure6b_shortcuts_cifar10", {"model.shortcut": "expansion"}, "shortcuts", _old_rule_note),)),
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
                    "test_acc", _LIN, _RELU6, across="model.bottleneck_mult", alternative="greater"),),
        ("bottleneck_width_cifar10",),
        gaps=(("bottleneck_width_cifar10", "test_acc", _LIN, _RELU6, "model.bottleneck_mult", {}),),
        slope=True),
    "budget": ClaimSpec(
        "The ReLU6 penalty is not slow fitting: it persists as training converges",
        "Section 3.2 attributes the penalty to information loss, not to optimisation; not tested in the paper",
        f"{_CIFAR}, width {{width}}, linear vs relu6 at several budgets; pre-registered in "
        "experiments/budget_ladder_cifar10.yaml",
        (PairedTest("linear - relu6 at the longest budget", "budget_ladder_cifar10", "test_acc", _LIN, _RELU6,
                    at=("train.epochs", "last")),
         PairedTest("gap at the shortest minus gap at the longest budget (> 0: the gap shrinks)",
                    "budget_ladder_cifar10", "test_acc", _LIN, _RELU6, across="train.epochs",
                    role="descriptive")),
        ("budget_ladder_cifar10",),
        gaps=(("budget_ladder_cifar10", "test_acc", _LIN, _RELU6, "train.epochs", {}),
              ("budget_ladder_cifar10", "clean_train_acc", _LIN, _RELU6, "train.epochs", {}))),
    "penalty_location": ClaimSpec(
        "The ReLU6 penalty comes from the blocks without a shortcut",
        "Section 3.2's mechanism: where the whole representation passes through the bottleneck (7 of 17 "
        "blocks), a ReLU6 there loses information no shortcut carries around; not tested in the paper",
        f"{_CIFAR}, width {{width}}, ReLU6 in all / only shape-changing / only shortcut blocks; pre-registered in "
        "experiments/penalty_location_cifar10.yaml",
        (PairedTest("ReLU6 only with shortcut - ReLU6 only without", "penalty_location_cifar10", "test_acc",
                    _WHERE["with_shortcut"], _WHERE["without_shortcut"]),
         PairedTest("penalty of ReLU6 without shortcut (none - without_shortcut)", "penalty_location_cifar10",
                    "test_acc", _WHERE["none"], _WHERE["without_shortcut"], role="descriptive"),
         PairedTest("penalty of ReLU6 with shortcut (none - with_shortcut)", "penalty_location_cifar10",
                    "test_acc", _WHERE["none"], _WHERE["with_shortcut"], role="descriptive")),
        ("penalty_location_cifar10",),
        arms=tuple((k, "penalty_location_cifar10", "test_acc", v) for k, v in _WHERE.items())),
}


def claim_figure7(results: Path) -> Claim:
    folder = results / "figure6a_linear_bottleneck_cifar10"
    runs = done_runs(folder)
    parts, counts = [], []
    old = sum(old_sample(r) for r in runs)
    for act in ("identity", "relu6"):
        for when in ("step0", "final"):
            found = [x for x in (layers_below_threshold(r, when) for r in runs
                                 if r.param("model.bottleneck_act") == act) if x]
            if when == "final":
                counts += [below for below, _ in found]
            if found:
                parts.append(f"{'linear' if act == 'identity' else act} {when}: "
                             f"{', '.join(str(b) for b, _ in found)} of {found[0][1]} layers below (per seed)")
    if len(counts) < 2 * MIN_SEEDS:
        v = f"not enough runs yet ({len(counts)} of {2 * MIN_SEEDS} trained networks)"
    else:
        v = SUPPORTED if max(counts) <= 2 else CONTRADICTED
    note = (f" **{old} of {len(runs)} runs predate issue 11: their statistics come from the first 256 test "
            "images of a class-sorted split (all one class), with the threshold C/6 for every layer and step 0 on "
            "fresh running statistics; without checkpoints they are recomputed only by rerunning the study.**"
            if old else "")
    return Claim(
        "Trained layers stay above the invertibility threshold (Figure 7)",
        "ImageNet MobileNetV2: fully trained, all but two ReLU layers have a mean positive-channel count "
        "above C/6",
        f"{_CIFAR}, ReLU layers whose mean positive-channel count is below the layer's threshold (the "
        f"dimension entering it: C/t for an expansion) on a class-balanced test sample: "
        f"{'; '.join(parts) or 'no runs yet'}. Rule: supported if at most 2 layers are below in "
        f"every trained network.{note}",
        v, "manifold-lab run experiments/figure6a_linear_bottleneck_cifar10.yaml")


def claim_theorem1(results: Path) -> Claim:
    path = results / "theorem1" / "theorem1.csv"
    cmd = "manifold-lab theorem"
    if not path.exists():
        return Claim("Theorem 1: kept fraction N(m,n)/2^m", "proof", "not run yet", "not run yet", cmd)
    with damaged(path, cmd):
        rows = [r for r in csv_rows(path) if float(r["stderr"]) > 0]
        z = [abs(float(r["z"])) for r in rows]
        ms, ns = sorted({int(r["m"]) for r in rows}), sorted({int(r["n"]) for r in rows})
        if not z:
            raise ValueError("no row with a positive stderr")
    bound = float(sps.norm.ppf(1 - 0.025 / len(z)))  # Bonferroni: all points together at 95%
    return Claim(
        "Theorem 1: ReLU(Bx) keeps the fraction N(m,n)/2^m of an n-dimensional set",
        "Proof in Appendix A (no simulation in the paper)",
        f"Monte Carlo on the unit n-ball, m = {ms[0]}-{ms[-1]}, n = {', '.join(map(str, ns))}: "
        f"{len(z)} points with sampling error, largest |z| = {max(z):.2f}, {sum(x <= 3 for x in z)} of "
        f"{len(z)} within 3 s.e. Rule: supported if every |z| is below the Bonferroni 95% bound "
        f"{bound:.2f}",
        SUPPORTED if max(z) < bound else CONTRADICTED, cmd)


def claim_figure1(results: Path) -> Claim:
    path = results / "figure1_spiral" / "summary.csv"
    cmd = "manifold-lab run experiments/figure1_spiral.yaml"
    if not path.exists():
        return Claim("Figure 1", "", "not run yet", "not run yet", cmd)
    with damaged(path, cmd):
        rows = csv_rows(path)
        if not rows:
            raise ValueError("no data row")
        row = rows[0]

        def cf(n):
            return {k: float(row[f"collapsed_fraction_n{n}_{k}"]) for k in ("mean", "ci_low", "ci_high", "n")}

        low, high = [cf(n) for n in (2, 3)], [cf(n) for n in (15, 30)]
    ok = all(c["ci_low"] > 0 for c in low) and all(c["ci_high"] < 0.01 for c in high)
    text = "; ".join(f"n = {n}: {100 * c['mean']:.1f}% [{100 * c['ci_low']:.1f}, {100 * c['ci_high']:.1f}]"
                     for n, c in zip((2, 3, 15, 30), low + high))
    return Claim(
        "Figure 1: a 2-D spiral collapses through ReLU in R^2 and R^3 and survives in R^15 and R^30",
        "Figure 1 (pictures only)",
        f"collapsed fraction of the spiral (2,000 points, {int(low[0]['n'])} seeds): {text}. Rule: supported "
        "if the interval at n = 2, 3 lies above 0 and at n = 15, 30 below 1%",
        SUPPORTED if ok else CONTRADICTED, cmd)


PROBE_COMMAND = "manifold-lab probe-correlation --out results/probe_penalty_correlation"


def claim_probe_correlation(results: Path) -> Claim:
    """Beyond the paper (issue 12): does the information the bottlenecks lose predict the ReLU6 penalty?
    The rule pre-registered in ``experiments/probe_penalty_correlation.md`` (``probe_correlation.verdict``)."""
    from manifold_lab.reproduction import probe_correlation as P

    got = P.analyse(results, with_secondary=False)
    studies = sorted({c["study"] for c in got["conditions"]})
    rho = (f"Spearman rho = {got['rho']:+.2f} [{got['ci_low']:+.2f}, {got['ci_high']:+.2f}] (95% bootstrap)"
           if got["n"] >= 3 else "no correlation yet")
    return Claim(
        "Beyond the paper: the information the bottlenecks lose predicts the ReLU6 penalty",
        "Implied by section 3.2 (the penalty comes from information lost in the bottleneck), never tested; "
        "pre-registered in experiments/probe_penalty_correlation.md",
        f"{got['n']} conditions ({', '.join(studies) or 'none yet'}), loss = drop of the block-input R^2 "
        f"(probe, trained networks), penalty = linear - relu6 accuracy: {rho}",
        got["verdict"], PROBE_COMMAND)


def claim_id_profile(results: Path) -> Claim:
    """External check (Ansuini et al. 2019): described by the pre-registered shape rules, no verdict rule."""
    from manifold_lab.reproduction import id_profile as G

    by = G.shares(G.run_profiles(results))
    ours = "; ".join(f"{v}: hunchback after training in {s['hunchback_final']} of {s['runs']} networks, flat at "
                     f"step 0 in {s['flat_step0']} of {s['runs']}" for v, s in sorted(by.items()))
    return Claim(
        "Beyond the paper: trained networks' intrinsic dimension rises then falls through depth, untrained ones' "
        "is flat (Ansuini et al. 2019)",
        "Ansuini et al. (NeurIPS 2019), ImageNet CNNs; not in the MobileNetV2 paper",
        f"CIFAR-10 (JPEG copy), TwoNN of every block output (probe, 100 test images): {ours}" if by else
        "no CIFAR-10 run with the probe yet",
        "described (share of networks; no verdict rule was pre-registered)" if by else "not enough runs yet",
        PROBE_COMMAND)


#: The rows in table order: a key of ``PAIRED_CLAIMS`` or a function of the results folder.
CLAIMS = ("figure6a", "figure6b", "width", "bottleneck_width", "budget", "penalty_location", claim_figure7,
          claim_theorem1, claim_figure1, claim_probe_correlation, claim_id_profile)


def claims(results: str | Path = "results") -> list[Claim]:
    """Every claim row, computed from the results folders under ``results`` (one Holm family)."""
    paired = dict(zip([k for k in CLAIMS if isinstance(k, str)],
                      evaluate([PAIRED_CLAIMS[k] for k in CLAIMS if isinstance(k, str)], results)))
    return [paired[k] if isinstance(k, str) else k(Path(results)) for k in CLAIMS]
