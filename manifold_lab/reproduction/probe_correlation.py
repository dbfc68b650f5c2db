"""Does the information the bottlenecks lose predict the ReLU6 penalty? (issue 12, beyond the paper).

The analysis pre-registered in ``experiments/probe_penalty_correlation.md``,
written before any data: per *condition* (a grid point of a study without its
bottleneck activation) and per seed that completed both arms,

    penalty = accuracy(linear) - accuracy(ReLU6)
    loss    = LOSS_KEY(linear) - LOSS_KEY(ReLU6)

(``LOSS_KEY``: mean over blocks of the held-out ridge R^2 of the block input
from the block output, trained network), averaged over the condition's paired
seeds (at least ``MIN_SEEDS``). The statistic is Spearman's rho between loss
and penalty over the conditions with a 95% percentile bootstrap interval
(``N_BOOT`` resamples of the conditions by ``scipy.stats.bootstrap``, ``numpy.random.default_rng(0)``);
the verdict rule is ``verdict``. Only classification studies enter
(``test_acc`` for ``mobilenetv2``, ``test_accuracy`` for the toy's ``classify`` task).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import stats as sps

LOSS_KEY = "probe_final_r2_input_linear_mean"
ACCURACY_KEYS = ("test_acc", "test_accuracy")
MIN_SEEDS, MIN_CONDITIONS, N_BOOT = 3, 6, 10_000
PREDICTS, OPPOSITE, NO_PREDICTION = ("the lost information predicts the penalty", "it predicts the opposite",
                                     "does not predict at this scale")


def conditions(folder: str | Path, loss_key: str = LOSS_KEY, *, perf_keys: tuple = ACCURACY_KEYS,
               lower_is_better: bool = False, relu6_only: bool = False) -> list[dict]:
    """The conditions of one results folder: ``{study, condition, seeds, run_ids, penalty, loss}`` each.

    The defaults are the primary analysis (module docstring). ``perf_keys`` with ``lower_is_better`` gives
    the penalty of an error (``("test_nmse",)``: nmse(ReLU6) - nmse(linear)); ``relu6_only`` makes the loss
    the ReLU6 arm's own ``loss_key`` (a measure that is 0 by construction in the linear arm). Conditions
    with fewer than ``MIN_SEEDS`` seeds that completed both arms and carry ``loss_key`` are left out; a toy
    ``regress`` task has no accuracy and enters only with ``test_nmse``.
    """
    from manifold_lab.reporting.cells import natural_key
    from manifold_lab.reproduction.records import done_runs

    folder = Path(folder)
    by: dict[tuple, dict] = {}
    ids: dict[tuple, dict] = {}
    for r in done_runs(folder):
        perf_key = next((k for k in perf_keys if k in r.metrics), None)
        if perf_key is None or loss_key not in r.metrics:
            continue
        act = r.param("model.bottleneck_act")
        rest = tuple(sorted((k, str(v)) for k, v in r.sweep_values.items() if k != "model.bottleneck_act"))
        by.setdefault(rest, {}).setdefault(act, {})[r.seed] = (float(r.metrics[perf_key]), float(r.metrics[loss_key]))
        ids.setdefault((rest, act), {})[r.seed] = r.run_id
    sign = -1.0 if lower_is_better else 1.0
    out = []
    for rest, arms in sorted(by.items(), key=lambda item: [(k, natural_key(v)) for k, v in item[0]]):
        lin, relu6 = arms.get("identity", {}), arms.get("relu6", {})
        seeds = sorted(set(lin) & set(relu6))
        if len(seeds) < MIN_SEEDS:
            continue
        out.append({
            "study": folder.name, "condition": ", ".join(f"{k}={v}" for k, v in rest) or "all", "seeds": len(seeds),
            "run_ids": sorted(ids[rest, act][s] for act in ("identity", "relu6") for s in seeds),
            "penalty": float(np.mean([sign * (lin[s][0] - relu6[s][0]) for s in seeds])),
            "loss": float(np.mean([relu6[s][1] if relu6_only else lin[s][1] - relu6[s][1] for s in seeds])),
        })
    return out


def _spearman(a, b, axis: int = -1):
    """Spearman's rho of ``a`` and ``b`` along ``axis`` (Pearson's r of the ranks; NaN where one is constant)."""
    ra, rb = sps.rankdata(a, axis=axis), sps.rankdata(b, axis=axis)
    ra, rb = ra - ra.mean(axis, keepdims=True), rb - rb.mean(axis, keepdims=True)
    return (ra * rb).sum(axis) / np.sqrt((ra**2).sum(axis) * (rb**2).sum(axis))


def spearman_bootstrap(loss, penalty, *, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Spearman's rho of ``loss`` and ``penalty`` (one value per condition) and its 95% percentile bootstrap
    interval (``manifold_lab.stats.bootstrap_interval`` over the conditions, ``n_boot`` resamples from ``seed``;
    ``boot_used``: the resamples where rho is defined)."""
    from manifold_lab.stats import bootstrap_interval

    loss, penalty = np.asarray(loss, dtype=float), np.asarray(penalty, dtype=float)
    defined = len(loss) >= 3 and np.ptp(loss) > 0 and np.ptp(penalty) > 0  # a constant vector has no rank order
    rho = float(sps.spearmanr(loss, penalty).statistic) if defined else float("nan")
    low, high, used = (bootstrap_interval(_spearman, loss, penalty, n_resamples=n_boot, seed=seed)
                       if len(loss) >= 2 else (float("nan"), float("nan"), 0))
    return {"rho": rho, "ci_low": low, "ci_high": high, "n": len(loss), "boot_used": used}


def verdict(result: dict) -> str:
    """The pre-registered rule on ``spearman_bootstrap``'s output."""
    if result["n"] < MIN_CONDITIONS:
        return f"not enough conditions ({result['n']} of {MIN_CONDITIONS})"
    if result["ci_low"] > 0:
        return PREDICTS
    if result["ci_high"] < 0:
        return OPPOSITE
    return NO_PREDICTION


#: The studies whose runs enter (``results/<name>/``), as pre-registered; a missing folder adds nothing.
#: The later CIFAR-10 studies of issue 11 enter by the second dated addendum of the pre-registration.
STUDIES = ("figure6a_linear_bottleneck_cifar10", "width_sweep_cifar10", "figure6b_shortcuts_cifar10",
           "budget_ladder_cifar10", "bottleneck_width_cifar10", "toy_linear_bottleneck", "toy_bottleneck_at_scale")
#: The CIFAR-10 studies; the pre-registered data include them, so no verdict is drawn without them
#: (the dated addendum of experiments/probe_penalty_correlation.md).
CIFAR_STUDIES = STUDIES[:5]


def distinct(points: list[dict]) -> list[dict]:
    """``points`` with every network counted once: of conditions that share a network (a run id, i.e. the
    same validated configuration and seed: a study that reuses another's runs, or trains the same networks
    again, e.g. the width sweep's width 0.5 = Figure 6a = the budget ladder's 20 epochs), the one with the
    most paired seeds is kept, the first in ``points`` at equal seeds (third addendum of the
    pre-registration); the kept ones stay in their order."""
    order = sorted(range(len(points)), key=lambda i: (-points[i]["seeds"], i))
    taken, kept = set(), set()
    for i in order:
        ids = set(points[i]["run_ids"])
        if not ids & taken:
            kept.add(i)
            taken |= ids
    return [c for i, c in enumerate(points) if i in kept]


#: The secondary analyses of the pre-registration, reported without a verdict: (name, loss key, options of
#: ``conditions``, which studies: "cifar" = ``CIFAR_STUDIES``, "toy" = the other ``STUDIES``, "all" = ``STUDIES``).
SECONDARY = (
    ("CIFAR-10 conditions only", LOSS_KEY, {}, "cifar"),
    ("toy conditions only", LOSS_KEY, {}, "toy"),
    ("toy regress task: penalty = nmse(ReLU6) - nmse(linear)", LOSS_KEY,
     {"perf_keys": ("test_nmse",), "lower_is_better": True}, "toy"),
    ("ReLU6 arm's probe_final_below_id_mean against the penalty", "probe_final_below_id_mean",
     {"relu6_only": True}, "all"),
    ("ReLU6 arm's probe_final_zeroed_mean against the penalty", "probe_final_zeroed_mean",
     {"relu6_only": True}, "all"),
    ("step 0 (untrained): the primary loss, probe_step0_r2_input_linear_mean", "probe_step0_r2_input_linear_mean",
     {}, "all"),
    ("step 0: ReLU6 arm's probe_step0_below_id_mean", "probe_step0_below_id_mean", {"relu6_only": True}, "all"),
    ("step 0: ReLU6 arm's probe_step0_zeroed_mean", "probe_step0_zeroed_mean", {"relu6_only": True}, "all"),
)


def secondary(results: str | Path = "results") -> list[dict]:
    """The pre-registered secondary analyses (``SECONDARY``): Spearman rho and its bootstrap interval each,
    no verdict. Each counts a network once (``distinct``), as the primary analysis does."""
    results = Path(results)
    out = []
    for name, key, options, which in SECONDARY:
        studies = {"cifar": CIFAR_STUDIES, "toy": tuple(s for s in STUDIES if s not in CIFAR_STUDIES)}.get(which, STUDIES)
        points = distinct([c for study in studies for c in conditions(results / study, key, **options)])
        res = spearman_bootstrap([c["loss"] for c in points], [c["penalty"] for c in points]) if len(points) >= 3 \
            else {**spearman_bootstrap([], []), "n": len(points)}  # no bootstrap below 3 conditions
        out.append({"analysis": name, "loss_key": key, **res})
    return out


WAITING = "no verdict yet: no CIFAR-10 condition carries the probe (the pre-registered data include them)"


def pending_studies(results: Path, points: list[dict]) -> list[str]:
    """The CIFAR-10 studies of ``STUDIES`` that will add conditions but have none yet: not run, or run without a
    probe; a study whose plan does not sweep the bottleneck activation over both arms (Figure 6b) never adds one."""
    import yaml

    from manifold_lab.data.base import repo_root
    from manifold_lab.reproduction.records import swept_values

    have = {c["study"] for c in points}
    out = []
    for name in [s for s in CIFAR_STUDIES if s not in have]:
        if (results / name / "plan.json").exists():
            acts = swept_values(results / name, "model.bottleneck_act")
        else:  # not run: what its experiment file sweeps
            spec = repo_root() / "experiments" / f"{name}.yaml"
            sweep = (yaml.safe_load(spec.read_text()) or {}).get("sweep", {}) if spec.is_file() else {}
            acts = sweep.get("model.bottleneck_act", [])
        if {"identity", "relu6"} <= set(acts):
            out.append(name)
    return out


def analyse(results: str | Path = "results", *, with_secondary: bool = True) -> dict:
    """The pre-registered analysis over ``STUDIES`` in ``results``: rho, interval, verdict (``WAITING``
    while no CIFAR-10 condition is there), the rule's constants and the distinct conditions; with
    ``with_secondary``, the secondary analyses too (``secondary``: eight more bootstraps; the claim
    table, which shows the primary analysis only, leaves them out)."""
    results = Path(results)
    points = distinct([c for name in STUDIES for c in conditions(results / name)])
    res = spearman_bootstrap([c["loss"] for c in points], [c["penalty"] for c in points])
    cifar = any(c["study"] in CIFAR_STUDIES for c in points)
    pending = pending_studies(results, points)
    rule = verdict(res) if cifar else WAITING
    if cifar and pending:  # the rule's verdict on the data so far, labelled as such (never changed)
        rule += f" (provisional: {', '.join(pending)} not in yet)"
    return {**res, "verdict": rule, "pending": pending, "cifar_conditions": cifar, "loss_key": LOSS_KEY,
            "min_seeds": MIN_SEEDS, "min_conditions": MIN_CONDITIONS, "n_boot": N_BOOT, "studies": list(STUDIES),
            "preregistration": "experiments/probe_penalty_correlation.md",
            "conditions": [{k: v for k, v in c.items() if k != "run_ids"} for c in points],
            **({"secondary": secondary(results)} if with_secondary else {})}


def write_study(results: str | Path = "results", out: str | Path | None = None) -> dict:
    """Run the pre-registered analysis (``analyse``) over ``STUDIES`` in ``results``; write into ``out``
    ``conditions.csv`` (one row per condition), ``correlation.json`` (the payload, which is returned), with
    at least one condition ``scatter.png`` (x = loss, y = penalty, one point per condition, colour = study),
    the geometry check (``id_profile.write_check``) and ``report.md``."""
    from manifold_lab import io

    results = Path(results)
    out = Path(out) if out is not None else Path("runs") / "probe_penalty_correlation"
    payload = analyse(results)
    points = payload["conditions"]
    io.write_text(out / "conditions.csv", io.csv_text(points, ["study", "condition", "seeds", "loss", "penalty"]))
    io.write_json(out / "correlation.json", payload, allow_nan=True)
    if points:
        plt = io.pyplot()

        fig, ax = plt.subplots(figsize=(5.6, 4.2))
        for i, name in enumerate(sorted({c["study"] for c in points})):
            sub = [c for c in points if c["study"] == name]
            ax.scatter([c["loss"] for c in sub], [100 * c["penalty"] for c in sub], color=f"C{i}", label=name, s=22)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.axvline(0, color="0.6", lw=0.8)
        ax.set_xlabel("information lost: R^2(linear) - R^2(ReLU6), block input from output")
        ax.set_ylabel("ReLU6 penalty (accuracy points)")
        ax.set_title(f"Spearman rho = {payload['rho']:.2f} [{payload['ci_low']:.2f}, {payload['ci_high']:.2f}]: "
                     f"{payload['verdict']}", fontsize=8)
        ax.legend(fontsize=7)
        fig.tight_layout()
        io.savefig(fig, out / "scatter.png", dpi=120)
        plt.close(fig)
    from manifold_lab.reproduction.id_profile import write_check

    geometry = write_check(results, out)
    io.write_text(out / "report.md", report_text(payload, geometry, out))
    return payload


def report_text(payload: dict, geometry: dict, out: Path) -> str:
    """``report.md``: the answer first (the correlation's verdict, then the geometry check), then the conditions."""
    from manifold_lab.io import md_cell
    from manifold_lab.spec import display_path

    n = payload["n"]
    rho = (f"Spearman rho = {payload['rho']:+.2f}, 95% bootstrap interval [{payload['ci_low']:+.2f}, "
           f"{payload['ci_high']:+.2f}] over {n} conditions" if n >= 3 else f"{n} conditions")
    lines = [
        "# Does the information the bottlenecks lose predict the ReLU6 penalty? (beyond the paper)", "",
        f"Written by `manifold-lab probe-correlation --out {display_path(out)}` from the committed results; the measure, the "
        f"statistic and the rules were pre-registered in `{payload['preregistration']}` before any data (its dated "
        "addenda say what was made concrete or corrected later, and when).", "",
        "## The answer", "",
        f"**{payload['verdict']}** ({rho}).", "",
        f"Loss = `{payload['loss_key']}`(linear) - same (ReLU6), the drop in the held-out ridge R^2 of each block's "
        "input from its output, mean over blocks; penalty = test accuracy (linear) - (ReLU6); both are means over a "
        f"condition's paired seeds (at least {payload['min_seeds']}). Rule: predicts if the interval lies above 0, "
        f"the opposite if below, no prediction at this scale if it contains 0; at least {payload['min_conditions']} "
        "conditions, and no verdict until a CIFAR-10 condition is in.", "",
        "![loss against penalty](scatter.png)" if n else "", "",
        "| study | condition | paired seeds | loss (R^2) | penalty (points) |", "|---|---|---:|---:|---:|",
        *[f"| {md_cell(c['study'])} | {md_cell(c['condition'])} | {c['seeds']} "
          f"| {c['loss']:+.3f} | {100 * c['penalty']:+.2f} |"
          for c in payload["conditions"]], "",
    ]
    if payload.get("secondary"):
        lines += ["## Secondary analyses (pre-registered, no verdict)", "",
                  "Spearman rho of each measure against the penalty over the conditions, 95% percentile bootstrap "
                  "interval, each network counted once; \"ReLU6 arm's\" measures are 0 by construction in the linear "
                  "arm, so the ReLU6 arm's own mean stands for the loss.", "",
                  "| analysis | conditions | rho [95% interval] |", "|---|---:|---|",
                  *[f"| {r['analysis']} | {r['n']} | " + (f"{r['rho']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
                                                          if r["n"] >= 3 and r["boot_used"] else "too few conditions")
                    + " |" for r in payload["secondary"]], ""]
    lines += ["## Trained against untrained geometry (Ansuini et al. 2019)", ""]
    by = geometry["by_variant"]
    if not by:
        lines += ["No CIFAR-10 run with a `probe.json` yet.", ""]
    else:
        lines += ["Share of runs whose TwoNN profile through depth is a hunchback after training, and flat at step 0 "
                  "(rules in `manifold_lab/reproduction/id_profile.py`, pre-registered; every run in "
                  "`id_profile.csv`):", "",
                  "| bottleneck | runs | hunchback after training | flat at step 0 | both |", "|---|---:|---:|---:|---:|",
                  *[f"| {v} | {s['runs']} | {s['hunchback_final']} of {s['runs']} | {s['flat_step0']} of {s['runs']} | "
                    f"{s['both']} of {s['runs']} |" for v, s in sorted(by.items())], ""]
        if any(p["condition"] == "all" for p in geometry["profiles"]):
            lines += ["![ID through depth](id_profile.png)", ""]
    return "\n".join(lines)
