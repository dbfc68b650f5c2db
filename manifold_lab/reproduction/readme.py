"""``results/README.md``: the claim table rendered with its rule, the paired-test family, the scale and the studies.

``render(claims(results), results)`` is the whole file; ``manifold-lab claims`` writes it.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from manifold_lab import io
from manifold_lab.io import md_cell
from manifold_lab.reproduction.claims import CAMPAIGN, PROBE_COMMAND
from manifold_lab.reproduction.device_check import devices_of, section
from manifold_lab.reproduction.records import done_runs, run_counts
from manifold_lab.reproduction.rules import FLOOR, LAST_EPOCHS, PLATEAU
from manifold_lab.reproduction.verdict import ALPHA, MIN_SEEDS, POWER, Claim, devices_text, planned_runs

STUDIES = (
    ("figure1_spiral", "Figure 1 over ten seeds"),
    ("theorem1_collapse", "Theorem 1 over an (m, n) grid"),
    ("recoverability_depth", "recoverability through stacks of random blocks"),
    ("cover_count", "external check: activation patterns of ReLU(Bx) counted exactly against Cover's C(m, n)"),
    ("relu_injectivity", "external check: global injectivity of a Gaussian ReLU layer against Puthawala et al.'s "
                         "window [3.4, 10.5]"),
    ("toy_linear_bottleneck", "toy ablation, 5 seeds, widths 1-8"),
    ("toy_bottleneck_at_scale", "toy ablation at scale, 20 seeds, widths 1-16"),
    ("figure6a_linear_bottleneck_cifar10", "Figure 6a on CIFAR-10 (JPEG copy)"),
    ("figure6a_converged_subset_cifar10", "Figure 6a trained to convergence on the 10,000-image subset, the full "
                                          "test split (200 epochs, CPU)"),
    ("figure6b_shortcuts_cifar10", "Figure 6b on CIFAR-10 (JPEG copy)"),
    ("width_sweep_cifar10", "width multiplier study: width 0.25 / 0.5 / 1.0 x linear / relu6 (every layer "
                            "scaled, the expansion ratio unchanged: tests the whole network's width)"),
    ("bottleneck_width_cifar10", "bottleneck width study: bottleneck multiplier 1 / 0.5 / 0.25 x linear / relu6, "
                                 "expanded layers fixed (tests the bottleneck's dimension, section 3.2)"),
    ("budget_ladder_cifar10", "budget ladder: 20 / 40 / 80 epochs x linear / relu6"),
    ("penalty_location_cifar10", "penalty location: ReLU6 in all / shape-changing / shortcut blocks only"),
    ("one_block_penalty_cifar10", "one block at a time: ReLU6 in the first or the second block of a stage, the "
                                  "full test split"),
    ("injective_bottleneck_cifar10", "injective bottlenecks: identity / relu6 / leaky ReLU 0.1, 0.3 / ELU / "
                                     "softplus, the full test split"),
)

#: The converged studies (the GPU campaign's, pre-registered): their folders are results/<campaign>/<study>/ and
#: their planned runs are read from their experiment files until they have a plan.
CONVERGED_STUDIES = tuple((f"{Path(CAMPAIGN).stem}/{name}", what) for name, what in (
    ("figure6a_converged_cifar10", "Figure 6a at the converged scale (full CIFAR-10, 200 epochs, GPU campaign)"),
    ("figure6b_converged_cifar10", "Figure 6b at the converged scale, with MobileNeXt's sandglass block as a fourth "
                                   "arm (full CIFAR-10, 200 epochs, GPU campaign)"),
    ("injective_bottleneck_converged_cifar10", "injective bottlenecks at the converged scale (full CIFAR-10, 200 "
                                               "epochs, GPU campaign)"),
))

BUDGET_SPEC = "experiments/figure6a_linear_bottleneck_cifar10.yaml"


def budget_numbers(results: str | Path = "results", spec: str = BUDGET_SPEC) -> dict:
    """The CIFAR budget as numbers read from its configuration (and run times from the run records).

    ``train_images = subset x classes``, ``steps = epochs x (train_images // batch_size)`` (the
    training loader drops the last incomplete batch), ``test_images = eval_subset x classes``;
    ``minutes``: the median wall time of the study's done runs (``status.json``), or None.
    """
    from manifold_lab.data.base import repo_root
    from manifold_lab.spec import load_spec

    spec_obj = load_spec(Path(spec) if Path(spec).exists() else repo_root() / spec)
    cfg = spec_obj.params
    classes = 100 if cfg.data.name == "cifar100" else 10
    train_images = cfg.data.subset * classes
    seconds = [float(json.loads(io.read_text(status)).get("seconds") or 0)
               for r in done_runs(Path(results) / Path(spec).stem) if (status := r.run_dir / "status.json").exists()]
    return {"per_class": cfg.data.subset, "train_images": train_images, "test_per_class": cfg.data.eval_subset,
            "test_images": cfg.data.eval_subset * classes, "epochs": cfg.train.epochs,
            "batch_size": cfg.data.batch_size, "steps": cfg.train.epochs * (train_images // cfg.data.batch_size),
            "width": cfg.model.width_mult, "preset": cfg.model.preset, "jobs": spec_obj.jobs,
            "threads": cfg.train.threads, "minutes": statistics.median(seconds) / 60 if seconds else None}


def trained_where(results: str | Path = "results") -> str:
    """Where the CIFAR-10 studies of ``STUDIES`` trained, from their runs' ``provenance.json``
    (``device_check.device_label``; the CPU with its core count), e.g. ``"CPU, 2 cores: a, b; NVIDIA H200: c"``."""
    from manifold_lab.execution import provenance

    where: dict[str, list[str]] = {}
    for name, _ in STUDIES:
        dirs = [r.run_dir for r in done_runs(Path(results) / name)]
        devices = devices_of(dirs)
        if "cifar10" in name and devices:
            cores = sorted({(provenance.read(d) or {}).get("cpu_count") for d in dirs} - {None})
            label = devices_text(devices, " runs")
            label += f", {'/'.join(map(str, cores))} cores" if label == "CPU" and cores else ""
            where.setdefault(label, []).append(name)
    return "; ".join(f"{label}: {', '.join(names)}" for label, names in where.items()) or "none has run yet"


def _scale(results) -> str:
    b = budget_numbers(results)
    at_once = (f", {b['jobs']} runs at a time with {b['threads']} torch thread(s) each" if b["jobs"] > 1 else "")
    minutes = (f" A width-{b['width']:g} run took {b['minutes']:.1f} minutes (median of the Figure 6a runs"
               f"{at_once})." if b["minutes"] else "")
    return f"""\
## How this scale differs from the paper's

The paper trains MobileNetV2 on ImageNet (1.28M images, 224 x 224) for about
7 million steps on 16 GPUs, RMSProp, and reports one run per variant with no
spread. The CIFAR-10 studies here trained where their runs' provenance says ({trained_where(results)}):
CIFAR-10 (JPEG copy),
32 x 32 images, {b['per_class']:,} training images per class ({b['train_images']:,} of the 50,000), \
{b['test_per_class']:,} test images per class ({b['test_images']:,}; all 10,000 where a row says "the full test \
split"), the `{b['preset']}` strides, width \
{b['width']:g} (except the width studies), {b['epochs']} epochs of SGD with a cosine schedule \
({b['steps']:,} steps of batch {b['batch_size']}, the last incomplete batch of each epoch dropped; the \
budget ladder and the converged subset state their own epochs in their rows), \
channels_last; budget and reasoning in `configs/cifar_cpu_budget.yaml` (these numbers are read from \
`{BUDGET_SPEC}`).{minutes} Accuracies are far below the paper's and the networks are
small-data, few-step networks: a verdict of *inconclusive at this scale* means
exactly that, not that the paper is wrong. The toy, Theorem 1 and Figure 1
studies are at full scale (they are cheap).

With GPUs, go further with the paper's own recipe:

    manifold-lab run experiments/imagenet_paper_recipe.yaml params.data.root=/path/to/imagenet
    torchrun --nproc_per_node=8 -m manifold_lab train experiments/imagenet_paper_recipe.yaml ...

or the converged CIFAR-10 studies (all 50,000 training images, 200 epochs, pre-registered; about 585
device-minutes on an H200 by the estimator, 65 to 80 minutes in one piece for each group of runs):
`manifold-lab campaign experiments/converged_campaign.yaml --stop-after 12h --batch-runs 10 --reference`
(README, "The converged campaign on a GPU", which also says why it has not run).
"""


def _all_tests(rows: list[Claim]) -> list:
    """Every paired test of the table, at both scales."""
    return [t for c in rows for t in (*c.tests, *(c.converged_row.tests if c.converged_row else ()))]


def _family_table(rows: list[Claim]) -> list[str]:
    """Every paired test of the table, at both scales (a converged-scale test's claim says so): n, mean
    difference, raw and Holm-adjusted p, verdict."""
    lines = ["## The paired tests (one Holm family)", "",
             "Raw p: paired t test on the per-seed differences (one-sided where pre-registered); adjusted p: "
             f"Holm's step-down adjustment over the {sum(not math.isnan(t.p) for t in _all_tests(rows))} "
             f"tests below that have a p-value; verdicts at adjusted p < {ALPHA:g}.", "",
             f"Detectable: the smallest mean difference the test detects with {POWER:.0%} power at its n and "
             f"observed spread (the paired t test at {ALPHA:g}, two- or one-sided as the test is; "
             "`manifold_lab.power`), "
             "before Holm's adjustment, which raises it.", "",
             "| claim | test | n | mean difference (points) | detectable (points) | raw p | adjusted p | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for c in rows:
        for claim, t in [(c.claim, t) for t in c.tests] + \
                [(c.converged_row.claim, t) for t in (c.converged_row.tests if c.converged_row else [])]:
            mean = "" if not t.summary["n"] else f"{100 * t.summary['mean']:+.2f}"
            p = "" if math.isnan(t.p) else f"{t.p:.2g}{' (one-sided)' if t.spec.alternative == 'greater' else ''}"
            adj = "" if math.isnan(t.p_adj) else f"{t.p_adj:.2g}"
            role = " (descriptive)" if t.spec.role == "descriptive" else ""
            d = t.detectable()
            power = "" if math.isnan(d) else f"{100 * d:.2f}"
            lines.append(_table_row([claim, t.spec.label, str(t.summary["n"]), mean, power, p, adj,
                                     t.verdict + role]))
    return lines + [""]


def _table_row(cells: list[str]) -> str:
    return "| " + " | ".join(map(md_cell, cells)) + " |"


def render(rows: list[Claim], results: str | Path = "results") -> str:
    """``results/README.md``: the rule, the claim table, the scale note and the studies."""
    results = Path(results)
    lines = [
        "# Results: does the paper's claim hold?", "",
        "Generated by `manifold-lab claims` from the results folders below; every number comes from a "
        "committed run record and every verdict from one rule (`manifold_lab/reproduction/claims.py`, where "
        "each paired claim is a declarative spec): for a claim stated as a paired difference over seeds, "
        "oriented so that the paper predicts a positive difference, the paired t test's p-value is adjusted "
        "for multiple testing by Holm's procedure across every paired test of the table (family-wise error "
        f"5%; raw and adjusted p in the table below it); *supported* if the adjusted p is below {ALPHA:g} and "
        "the mean difference positive, *contradicted* if it is below and the mean negative (two-sided tests), "
        f"*inconclusive at this scale* otherwise (\"no evidence either way\" when its mean runs against the "
        f"prediction at {MIN_SEEDS} seeds or fewer), and *not enough runs yet* with fewer than {MIN_SEEDS} seeds. "
        "A row that needs several differences takes the weakest verdict among them. Differences are in "
        "percentage points of test accuracy; intervals are unadjusted 95% t intervals.", "",
        "The converged-scale column shows, beside the row's verdict, the same claim where a converged study is "
        f"pre-registered (full CIFAR-10, 200 epochs, GPU campaign `{CAMPAIGN}`; folders "
        f"`{Path(CAMPAIGN).stem}/<study>/`): its tests are in the same Holm family, and a test has a verdict only "
        f"once all its planned runs are done and converged: every run of each of its arms ends at {FLOOR:.0%} "
        f"clean train accuracy or more, and each arm's mean clean train accuracy at the last epoch is within "
        f"{100 * PLATEAU:g} point of its mean over the last {LAST_EPOCHS} epochs; otherwise *not converged: no "
        "verdict*, naming the arm and by how much it misses. Converged, each test is decided as above, with *no "
        "difference detected* (and its 95% interval) in place of *inconclusive*, and the row by its rule as at the "
        "budget scale.", "",
        "| claim of the paper | the paper's evidence | ours | verdict | converged scale | regenerate |",
        "|---|---|---|---|---|---|",
    ]
    lines += [_table_row([c.claim, c.paper, c.ours, f"**{c.verdict}**", c.converged, f"`{c.command}`"])
              for c in rows]
    lines += [""] + _family_table(rows) + section(results) + [_scale(results), "## The studies", "",
              "| study | what | runs (done / planned, failed) | trained on | report |", "|---|---|---|---|---|"]
    for name, what in STUDIES:
        planned, done, failed = run_counts(results / name)
        report = f"[{name}/report.md]({name}/report.md)" if (results / name / "report.md").exists() else "not run yet"
        devices = devices_of(r.run_dir for r in done_runs(results / name))
        where = devices_text(devices).replace("unknown", "not recorded")  # runs that predate provenance.json
        lines.append(f"| {name} | {what} | {done} / {planned}, {failed} failed | {where} | {report} |")
    for name, what in CONVERGED_STUDIES:
        planned, done, failed = planned_runs(results, name)
        report = f"[{name}/report.md]({name}/report.md)" if (results / name / "report.md").exists() else "not run yet"
        where = devices_text(devices_of(r.run_dir for r in done_runs(results / name))).replace("unknown",
                                                                                               "not recorded")
        lines.append(f"| {name} | {what} | {done} / {planned}, {failed} failed | {where} | {report} |")
    lines += ["", "Figure 1 and Theorem 1 as single commands: [figure1/](figure1/) (`manifold-lab spiral --out "
              "results/figure1`), [theorem1/](theorem1/) (`manifold-lab theorem --out results/theorem1`). Table 3: "
              "[table3/](table3/table3.md) (`manifold-lab models --table3 --out results/table3`). Beyond the paper, "
              "the lost information against the ReLU6 penalty and the ID profiles: "
              "[probe_penalty_correlation/](probe_penalty_correlation/report.md) "
              f"(`{PROBE_COMMAND}`).", ""]
    return "\n".join(lines)
