"""The rules of the claim table's rows that are not paired differences: one evaluator per kind of rule.

A ``Row`` declares the wording (claim, the paper's evidence, setting, command),
what its rule reads and the rule's constants; ``RULES[row.rule](row, results)``
returns the row's numbers and verdict. The paired differences have their own
rule, ``manifold_lab.reproduction.verdict``; the rows themselves are data in
``manifold_lab.reproduction.claims``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from scipy import stats as sps

from manifold_lab.reproduction.one_block import block_correlation, stage_rule
from manifold_lab.reproduction.records import csv_rows, damaged, done_runs, old_sample, per_seed, relu_stats
from manifold_lab.reproduction.verdict import ALPHA, CONTRADICTED, INCONCLUSIVE, MIN_SEEDS, SUPPORTED
from manifold_lab.stats import describe

__all__ = ["PAIRED_RULES", "RULES", "Row", "arm_convergence", "collapse_intervals", "converged_rule",
           "described_profiles", "layers_below", "plateau_rule", "preregistered_correlation", "z_within_bound"]


@dataclass(frozen=True)
class Row:
    """A row that is not a paired difference, as data (module docstring): ``rule`` is the key of its evaluator
    in ``RULES``, ``source`` what it reads (under the results folder), ``params`` its constants."""

    claim: str
    paper: str
    command: str
    setting: str
    rule: str
    source: str
    params: dict = field(default_factory=dict)


def _margins_text(label: str, when: str, found: list[dict]) -> str:
    """``found``: one ``{layer: margin}`` per seed; the layers below per seed, which, and the margins' range."""
    below = [sorted(k for k, v in m.items() if v < 1) for m in found]
    names = sorted({k for b in below for k in b})
    which = ", ".join(f"{k} in {sum(k in b for b in below)}" for k in names)
    mins = [min(m.values()) for m in found]
    medians = [float(np.median(list(m.values()))) for m in found]
    return (f"{label} {when}: {', '.join(str(len(b)) for b in below)} of {len(found[0])} layers below (per seed)"
            f"{f' ({which})' if names else ''}, smallest margin {min(mins):.2f}-{max(mins):.2f}, median margin "
            f"{min(medians):.2f}-{max(medians):.2f}")


def layers_below(row: Row, results: Path) -> tuple[str, str]:
    """Figure 7's rule: *supported* if every trained network (``params["arms"]``, ``MIN_SEEDS`` each at least)
    has at most ``params["at_most"]`` ReLU layers below their threshold after training; *contradicted* otherwise.

    Thresholds are today's (``relu_stats.THRESHOLDS``, per layer with its reason) for the network rebuilt from
    each run's configuration, whatever rule its records carry; a layer's margin is its mean positive-channel
    count / threshold (below 1: below). Step 0 is shown measured as the trained networks are (eval mode, running
    statistics; ``manifold_lab.train.figure7.step0_records``); runs without such a step 0 are named with the command
    that adds it. The per-study report of the mobilenetv2 kind measures its Figure 7 table the same way."""
    from manifold_lab.train.figure7 import STEP0_COMMAND as COMMAND, step0_records as step0, thresholds
    from manifold_lab.train.relu_stats import margins

    def step0_records(run):
        return step0(run.run_dir, relu_stats(run))

    runs = done_runs(results / row.source)
    parts, counts = [], {}
    old = sum(old_sample(r) for r in runs)
    for act, label in row.params["arms"].items():
        mine = [r for r in runs if r.param("model.bottleneck_act") == act]
        for when, records in (("step 0", step0_records), ("trained", lambda r: (relu_stats(r) or {}).get("final"))):
            found = [margins(recs, thresholds(r.params.get("model", {}))) for r in mine if (recs := records(r))]
            if when == "trained":
                counts[label] = [sum(v < 1 for v in m.values()) for m in found]
            if found:
                parts.append(_margins_text(label, when, found))
    missing = sum(relu_stats(r) is not None and step0_records(r) is None for r in runs)
    short = {label: len(c) for label, c in counts.items() if len(c) < MIN_SEEDS}
    if short:
        verdict = ("not enough runs yet (" + ", ".join(f"{label} {n} of {MIN_SEEDS}" for label, n in short.items())
                   + " trained networks)")
    else:
        verdict = SUPPORTED if max(max(c) for c in counts.values()) <= row.params["at_most"] else CONTRADICTED
    note = (f" **{old} of {len(runs)} runs predate issue 11: their statistics come from the first 256 test "
            "images of a class-sorted split (all one class), with the threshold C/6 for every layer and step 0 on "
            "fresh running statistics; without checkpoints they are recomputed only by rerunning the study.**"
            if old else "")
    if missing:
        note += (f" {missing} of {len(runs)} runs have no step 0 measured as their trained network is: "
                 f"`{COMMAND.format(folder=f'results/{row.source}')}` adds it.")
    return (f"{row.setting}: {'; '.join(parts) or 'no runs yet'}. Rule: supported if at most "
            f"{row.params['at_most']} layers are below in every trained network.{note}", verdict)


def z_within_bound(row: Row, results: Path) -> tuple[str, str]:
    """Theorem 1's rule: *supported* if every |z| of Monte Carlo against theory (rows with a positive standard
    error) is below the Bonferroni bound ``Phi^-1(1 - 0.025 / points)``: all points together at 95%."""
    path = results / row.source
    if not path.exists():
        return "not run yet", "not run yet"
    with damaged(path, row.command):
        rows = [r for r in csv_rows(path) if float(r["stderr"]) > 0]
        z = [abs(float(r["z"])) for r in rows]
        ms, ns = sorted({int(r["m"]) for r in rows}), sorted({int(r["n"]) for r in rows})
        if not z:
            raise ValueError("no row with a positive stderr")
    bound = float(sps.norm.ppf(1 - 0.025 / len(z)))
    return (f"{row.setting}, m = {ms[0]}-{ms[-1]}, n = {', '.join(map(str, ns))}: {len(z)} points with sampling "
            f"error, largest |z| = {max(z):.2f}, {sum(x <= 3 for x in z)} of {len(z)} within 3 s.e. Rule: "
            f"supported if every |z| is below the Bonferroni 95% bound {bound:.2f}",
            SUPPORTED if max(z) < bound else CONTRADICTED)


def collapse_intervals(row: Row, results: Path) -> tuple[str, str]:
    """Figure 1's rule: *supported* if the 95% interval of the collapsed fraction lies above 0 at every
    dimension of ``params["collapses"]`` and below ``params["below"]`` at every one of ``params["survives"]``."""
    path = results / row.source
    if not path.exists():
        return "not run yet", "not run yet"
    collapses, survives, below = row.params["collapses"], row.params["survives"], row.params["below"]
    with damaged(path, row.command):
        rows = csv_rows(path)
        if not rows:
            raise ValueError("no data row")
        cf = {n: {k: float(rows[0][f"collapsed_fraction_n{n}_{k}"]) for k in ("mean", "ci_low", "ci_high", "n")}
              for n in (*collapses, *survives)}
    ok = all(cf[n]["ci_low"] > 0 for n in collapses) and all(cf[n]["ci_high"] < below for n in survives)
    text = "; ".join(f"n = {n}: {100 * c['mean']:.1f}% [{100 * c['ci_low']:.1f}, {100 * c['ci_high']:.1f}]"
                     for n, c in cf.items())
    return (f"{row.setting.format(seeds=int(cf[collapses[0]]['n']))}: {text}. Rule: supported if the interval at "
            f"n = {', '.join(map(str, collapses))} lies above 0 and at n = {', '.join(map(str, survives))} below "
            f"{below:.0%}", SUPPORTED if ok else CONTRADICTED)


def preregistered_correlation(row: Row, results: Path) -> tuple[str, str]:
    """Beyond the paper (issue 12): the rule pre-registered in ``experiments/probe_penalty_correlation.md``
    on Spearman's rho and its bootstrap interval (``probe_correlation.verdict``)."""
    from manifold_lab.reproduction import probe_correlation as P

    got = P.analyse(results, with_secondary=False)
    studies = sorted({c["study"] for c in got["conditions"]})
    rho = (f"Spearman rho = {got['rho']:+.2f} [{got['ci_low']:+.2f}, {got['ci_high']:+.2f}] (95% bootstrap)"
           if got["n"] >= 3 else "no correlation yet")
    return f"{got['n']} conditions ({', '.join(studies) or 'none yet'}), {row.setting}: {rho}", got["verdict"]


def described_profiles(row: Row, results: Path) -> tuple[str, str]:
    """External check (Ansuini et al. 2019): the share of networks of each shape by the pre-registered shape
    rules (``id_profile``); described, no verdict rule."""
    from manifold_lab.reproduction import id_profile as G

    by = G.shares(G.run_profiles(results))
    if not by:
        return "no CIFAR-10 run with the probe yet", "not enough runs yet"
    ours = "; ".join(f"{v}: hunchback after training in {s['hunchback_final']} of {s['runs']} networks, flat at "
                     f"step 0 in {s['flat_step0']} of {s['runs']}" for v, s in sorted(by.items()))
    return f"{row.setting}: {ours}", "described (share of networks; no verdict rule was pre-registered)"


FREE, REFUTED, IN_BETWEEN = ("the injective arms are free (the information account is supported)",
                             "they cost as much as relu6 (the information account is refuted)", "in between")
BRANCH_KEY = "probe_final_r2_branch_linear_mean"


def _branch_text(spec, results: Path) -> str:
    """Descriptive: per arm, the trained networks' branch R^2 (``BRANCH_KEY``: the bottleneck pre-activation
    recovered from its activation's output, held-out ridge, mean over blocks; 1 = the branch loses nothing)."""
    runs = done_runs(results / spec.studies[0])
    parts = []
    for label, _, _, params in spec.arms:
        s = describe(list(per_seed(runs, BRANCH_KEY, params).values()))
        if s["n"]:
            ci = "" if s["n"] < 2 or np.isnan(s["ci_low"]) else f" [{s['ci_low']:.2f}, {s['ci_high']:.2f}]"
            parts.append(f"{label} {s['mean']:.2f}{ci} (n = {s['n']})")
    return (f"branch-level loss, descriptive (probe of the trained networks: held-out ridge R^2 of each bottleneck's "
            f"pre-activation from its output, mean over blocks; 1 = nothing lost): {'; '.join(parts)}") if parts else ""


def injective_bottleneck(spec, tests: list, results: Path) -> tuple[str, str]:
    """The rule pre-registered in ``experiments/injective_bottleneck_cifar10.yaml`` (its comment block), on the
    row's evaluated tests: ``tests[0]`` the relu6 penalty ``P_s = acc(identity)_s - acc(relu6)_s``, ``tests[1:]``
    ``d_s = acc(a)_s - acc(relu6)_s`` per injective arm ``a``, so that arm's penalty is ``Q_s = P_s - d_s``;
    P, Q their means. *Free* (``FREE``): every arm's d supported (Holm-adjusted p < 0.05, mean > 0) and Q < P / 4;
    *refuted* (``REFUTED``): no arm's adjusted p below 0.05 and every Q >= 3 P / 4; *in between* otherwise;
    *inconclusive at this scale* when P itself is not supported. No verdict until every planned run is done
    (the tests' ``all_planned``). Returns ``(text, verdict)``: each arm's Q with its interval and Q / P, and
    the branch-level loss per arm (``_branch_text``)."""
    branch = _branch_text(spec, results)
    waiting = next((t.verdict for t in tests if t.verdict.startswith("not enough")), None)
    if waiting:
        return branch, waiting
    penalty, arms = tests[0], tests[1:]
    if penalty.verdict != SUPPORTED:
        return branch, f"{INCONCLUSIVE} (the relu6 penalty itself is not significant: nothing to explain)"
    p = penalty.summary["mean"]
    q = [(t, describe([penalty.d[s] - t.d[s] for s in sorted(set(t.d) & set(penalty.d))])) for t in arms]
    text = "; ".join(f"penalty of {t.spec.label.split(' - ')[0]} = {100 * qt['mean']:+.2f} points "
                     f"[{100 * qt['ci_low']:+.2f}, {100 * qt['ci_high']:+.2f}], {qt['mean'] / p:.2f} of relu6's"
                     for t, qt in q)
    if all(t.verdict == SUPPORTED and qt["mean"] < p / 4 for t, qt in q):
        verdict = FREE
    elif all(not t.p_adj < ALPHA and qt["mean"] >= 3 * p / 4 for t, qt in q):
        verdict = REFUTED
    else:
        verdict = IN_BETWEEN
    return "; ".join(filter(None, (text, branch))), verdict


NOT_CONVERGED = "not converged: no verdict"


def _no_difference(s: dict) -> str:
    return (f"no difference detected ({100 * s['mean']:+.2f} points [{100 * s['ci_low']:+.2f}, "
            f"{100 * s['ci_high']:+.2f}])")


def converged_rule(spec, tests: list, results: Path, *, at_least: float = 0.99) -> tuple[str, str]:
    """The rule pre-registered in ``experiments/figure6a_converged_subset_cifar10.yaml``: every run of every arm
    (``spec.arms``) must end with a clean train accuracy (``clean_train_acc``: eval mode, no augmentation) of at
    least ``at_least``, else *not converged: no verdict* naming the runs below it or without it; converged,
    ``tests[0]`` decides (*supported* / *contradicted* at Holm-adjusted p < 0.05), and otherwise no difference is
    detected, with its 95% interval. No verdict until every planned run is done (the test's ``all_planned``).
    Returns ``(text, verdict)``: the arms' final clean train accuracies side by side."""
    runs = done_runs(results / spec.studies[0])
    parts, below, total = [], [], 0
    for label, _, metric, params in spec.arms:
        clean = per_seed(runs, "clean_train_acc", params)
        seeds = set(per_seed(runs, metric, params)) | set(clean)
        total += len(seeds)
        if clean:
            s = describe(list(clean.values()), (0.0, 1.0))
            parts.append(f"{label} {100 * s['mean']:.2f}% (lowest {100 * min(clean.values()):.2f}%, n = {s['n']})")
        below += [f"{label} seed {seed} {100 * v:.2f}%" if v is not None
                  else f"{label} seed {seed} (clean train accuracy not recorded)"
                  for seed, v in sorted((seed, clean.get(seed)) for seed in seeds)
                  if v is None or v < at_least]
    text = f"final clean train accuracy (convergence rule: every run at least {at_least:.0%}): " + "; ".join(parts) \
        if parts else ""
    test = tests[0]
    if test.verdict.startswith("not enough"):
        return text, test.verdict
    if below:
        return text, f"{NOT_CONVERGED} ({len(below)} of {total} runs below {at_least:.0%}: {', '.join(below)})"
    if test.verdict in (SUPPORTED, CONTRADICTED):
        return text, test.verdict
    return text, _no_difference(test.summary)


#: The convergence rule of the converged studies (``experiments/figure6a_converged_cifar10.yaml``, addendum 1;
#: figure6b and the injective study refer to it): every run's last-epoch clean train accuracy at least ``FLOOR``,
#: every arm's mean at the last epoch within ``PLATEAU`` of its mean over the last ``LAST_EPOCHS`` epochs.
FLOOR, PLATEAU, LAST_EPOCHS = 0.99, 0.01, 10


def arm_convergence(runs: list, params: dict, *, at_least: float = FLOOR, within: float = PLATEAU,
                    last: int = LAST_EPOCHS) -> tuple[dict | None, list[str]]:
    """The convergence rule on one arm (the done ``runs`` whose dotted params equal ``params``): ``(summary,
    misses)``. ``misses`` says by how much each part misses (empty: converged): a run whose last-epoch clean train
    accuracy (``clean_train_acc``, a fraction) is below ``at_least`` or not recorded, a run without a per-epoch
    curve (``curve_clean_train_acc``) of at least ``last`` epochs, and the arm's mean at the last epoch more than
    ``within`` from the arm's mean over the last ``last`` epochs (each run's curve, averaged over the runs). No
    done run is a miss too. ``summary``: the arm's last-epoch mean, lowest run, last-epochs mean and n (None
    without a recorded clean train accuracy)."""
    mine = sorted((r for r in runs if all(r.param(k) == v for k, v in params.items())), key=lambda r: r.seed)
    misses, finals, windows = [], [], []
    for r in mine:
        final, curve = r.metrics.get("clean_train_acc"), r.metrics.get("curve_clean_train_acc")
        if final is None:
            misses.append(f"seed {r.seed} (clean train accuracy not recorded)")
            continue
        finals.append(float(final))
        if final < at_least:
            misses.append(f"seed {r.seed} {100 * final:.2f}%, {100 * (at_least - final):.2f} points below "
                          f"{at_least:.0%}")
        if not isinstance(curve, list) or len(curve) < last:
            misses.append(f"seed {r.seed} (no per-epoch clean train accuracy over the last {last} epochs)")
        else:
            windows.append(float(np.mean(curve[-last:])))
    if not mine:
        misses.append("no done run")
    if not finals:
        return None, misses
    summary = {"n": len(finals), "final": float(np.mean(finals)), "lowest": min(finals),
               "window": float(np.mean(windows)) if len(windows) == len(mine) else None}
    if summary["window"] is not None:
        gap = summary["final"] - summary["window"]
        if abs(gap) > within + 1e-9:  # a gap of exactly 1 point passes, whatever the float rounding
            misses.append(f"last-epoch mean {100 * summary['final']:.2f}% is {100 * abs(gap):.2f} points "
                          f"{'above' if gap > 0 else 'below'} its mean over the last {last} epochs "
                          f"({100 * summary['window']:.2f}%), {100 * (abs(gap) - within):.2f} points beyond the "
                          f"{100 * within:g}-point plateau")
    return summary, misses


def _arm_label(spec, params: dict) -> str:
    """The label ``spec.arms`` gives these params, else the params themselves."""
    return next((label for label, _, _, arm in spec.arms if arm == params),
                ", ".join(f"{k} = {v}" for k, v in params.items()))


#: The converged-scale verdicts of several tests, weakest first (``plateau_rule``).
_CONVERGED_ORDER = (CONTRADICTED, "not enough", NOT_CONVERGED, "no difference", INCONCLUSIVE)


def plateau_rule(spec, tests: list, results: Path, *, decide=None, at_least: float = FLOOR,
                 within: float = PLATEAU, last: int = LAST_EPOCHS) -> tuple[str, str]:
    """The rule pre-registered for the converged studies (``experiments/figure6a_converged_cifar10.yaml`` and
    its addendum 1; ``figure6b_converged_cifar10.yaml`` and ``injective_bottleneck_converged_cifar10.yaml``
    take it over). A test is converged iff each of its arms passes ``arm_convergence`` (every run at least
    ``at_least`` clean train accuracy at the last epoch; the arm's last-epoch mean within ``within`` of its mean
    over the last ``last`` epochs). Each test's verdict becomes: *not enough runs yet* before every planned run
    is done (the tests' ``all_planned``); *not converged: no verdict* naming the arm and by how much it misses;
    else *supported* / *contradicted* at Holm-adjusted p < 0.05 (``judge``), and otherwise *no difference
    detected* with its 95% interval. The row's verdict is the weakest of its ``verdict`` tests'
    (``_CONVERGED_ORDER``), or, with ``decide`` (the study's own decision rule, ``rule(spec, tests, results)``,
    e.g. ``injective_bottleneck``), that rule's verdict once every test is done and converged. Returns ``(text,
    verdict)``: the arms' last-epoch clean train accuracies side by side."""
    runs = done_runs(results / spec.studies[0])
    checked: dict[str, tuple] = {}
    for label, _, _, params in spec.arms:
        checked[label] = arm_convergence(runs, params, at_least=at_least, within=within, last=last)
    for t in tests:
        if t.verdict.startswith("not enough"):
            continue
        arms = [{**t.spec.fixed, **arm} for pair in ((t.spec.a, t.spec.b), *t.spec.pairs) for arm in pair]
        labels = {_arm_label(spec, arm): arm for arm in arms}
        for label, arm in labels.items():
            if label not in checked:
                checked[label] = arm_convergence(runs, arm, at_least=at_least, within=within, last=last)
        failing = [f"{label}: {', '.join(checked[label][1])}" for label in labels if checked[label][1]]
        if failing:
            t.verdict = f"{NOT_CONVERGED} ({'; '.join(failing)})"
        elif t.verdict not in (SUPPORTED, CONTRADICTED):
            t.verdict = _no_difference(t.summary)
    side = "; ".join(f"{label} {100 * s['final']:.2f}% (lowest {100 * s['lowest']:.2f}%"
                     + ("" if s["window"] is None else f", mean over the last {last} epochs {100 * s['window']:.2f}%")
                     + f", n = {s['n']})" for label, (s, _) in checked.items() if s is not None)
    text = (f"last-epoch clean train accuracy (convergence rule: every run at least {at_least:.0%}, every arm's "
            f"mean within {100 * within:g} point of its mean over the last {last} epochs): {side}") if side else ""
    deciding = [t.verdict for t in tests if t.spec.role == "verdict"]
    if decide is None:
        return text, next((got for v in _CONVERGED_ORDER for got in deciding if got.startswith(v)), SUPPORTED)
    blocked = next((got for v in ("not enough", NOT_CONVERGED) for got in deciding if got.startswith(v)), None)
    if blocked:
        return text, blocked
    more, verdict = decide(spec, tests, results)
    return "; ".join(filter(None, (text, more))), verdict


#: Rules of paired claims pre-registered as more than the weakest test (``ClaimSpec.rule``):
#: ``rule(spec, evaluated tests, results) -> (text, verdict)``.
PAIRED_RULES = {"injective": injective_bottleneck, "one_block": stage_rule, "converged": converged_rule,
                "plateau": plateau_rule, "plateau_injective": partial(plateau_rule, decide=injective_bottleneck)}

#: One evaluator per kind of rule: ``evaluator(row, results) -> (ours, verdict)``.
RULES = {"layers_below": layers_below, "z_within_bound": z_within_bound, "collapse_intervals": collapse_intervals,
         "preregistered_correlation": preregistered_correlation, "described_profiles": described_profiles,
         "block_correlation": block_correlation}
