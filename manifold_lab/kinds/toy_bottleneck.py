"""Experiment kind ``toy_bottleneck``: trained toy nets, linear vs relu / relu6 bottlenecks.

Section 3.2 / Figure 6a of the paper in miniature (``manifold_lab.toy``): a
small network of inverted-residual blocks on vectors learns a task on two
interleaved spirals embedded in ``R^n``. Sweep ``model.bottleneck_act`` and
``model.width`` over seeds; the report plots test accuracy (classification) or
normalised error (regression) against the bottleneck width, one line per
activation with 95% intervals over seeds, and the Lemma-2 statistics of every
expansion layer.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from manifold_lab.kinds import Kind, ReportContext, ReportItem, RunContext


class ToyModel(BaseModel):
    """The network: ``R^n -> k``, ``depth`` blocks ``k -> t*k -> k``, head."""

    model_config = ConfigDict(extra="forbid")
    width: int = Field(2, ge=1, le=4096, description="bottleneck width k")
    depth: int = Field(2, ge=1, le=64, description="number of inverted-residual blocks")
    expand_ratio: int = Field(6, ge=1, le=64, description="expansion t (hidden layer has t*k units)")
    bottleneck_act: Literal["identity", "relu", "relu6"] = Field(
        "identity", description="activation after the projection; identity = linear bottleneck"
    )
    shortcut: bool = Field(True, description="residual connection between bottlenecks")


class ToyData(BaseModel):
    """Two interleaved spirals embedded in R^n by a random matrix."""

    model_config = ConfigDict(extra="forbid")
    task: Literal["classify", "regress"] = Field(
        "classify", description="classify the arm, or regress the coordinate along it"
    )
    n_dims: int = Field(10, ge=2, le=10000, description="ambient dimension n")
    n_train: int = Field(500, ge=2, le=1_000_000)
    n_test: int = Field(1000, ge=2, le=1_000_000)
    noise: float = Field(0.0, ge=0.0, le=1e3, description="Gaussian noise on the 2-D spirals (finite)")


class ToyTrain(BaseModel):
    """Adam, full batch unless ``batch_size`` is set."""

    model_config = ConfigDict(extra="forbid")
    steps: int = Field(400, ge=1, le=1_000_000)
    lr: float = Field(1e-2, gt=0.0, le=10.0)
    weight_decay: float = Field(0.0, ge=0.0)
    batch_size: int | None = Field(None, ge=1, description="None = full batch")


class ToyBottleneckParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: ToyModel = ToyModel()
    data: ToyData = ToyData()
    train: ToyTrain = ToyTrain()


def estimate_seconds(params: ToyBottleneckParams) -> float:
    """CPU seconds of one run, roughly: ``steps * (1e-3 + 6 B F / 1e9)``.

    ``F = n k + depth * 2 t k^2`` multiply-adds per sample (embedding and
    blocks of width ``k``, expansion ``t``), ``B`` the batch (``n_train`` when
    full batch), ``6 B F`` the forward and backward operations at a nominal
    1 GFLOP/s, and 1 ms of overhead per step, rounded up from the development
    machine.
    """
    m, d, t = params.model, params.data, params.train
    batch = min(t.batch_size or d.n_train, d.n_train)
    flops = d.n_dims * m.width + m.depth * 2 * m.expand_ratio * m.width**2
    return t.steps * (1e-3 + 6 * batch * flops / 1e9) + 6 * (d.n_train + d.n_test) * flops / 1e9


def run(params: ToyBottleneckParams, seed: int, ctx: RunContext) -> dict:
    """Train one toy net; metrics as documented in ``manifold_lab.toy.run_toy``.

    Keys: ``test_accuracy`` and ``test_error`` (classify) or ``test_nmse``
    (regress); ``final_train_loss``, ``params``; per block ``b``
    ``block{b}_invertible_fraction``, ``block{b}_active_mean``,
    ``block{b}_active_min``, ``block{b}_active_max``; ``invertible_fraction_min``
    and ``active_fraction_mean``; the information-loss probe at the bottlenecks
    before and after training, ``probe_step0_<key>`` and ``probe_final_<key>``
    (``manifold_lab.toy.probe_toy``; keys ``manifold_lab.probe.SUMMARY_KEYS``).
    """
    import torch

    from manifold_lab.toy import run_toy

    torch.set_num_threads(1)  # runs are tiny; parallelism comes from --jobs
    m, d, t = params.model, params.data, params.train
    metrics = run_toy(
        task=d.task, width=m.width, depth=m.depth, expand_ratio=m.expand_ratio,
        bottleneck_act=m.bottleneck_act, shortcut=m.shortcut,
        n_dims=d.n_dims, n_train=d.n_train, n_test=d.n_test, noise=d.noise,
        steps=t.steps, lr=t.lr, weight_decay=t.weight_decay, batch_size=t.batch_size, seed=seed,
    )
    ctx.log.info("toy %s width=%d act=%s: %s", d.task, m.width, m.bottleneck_act,
                 {k: v for k, v in metrics.items() if k.startswith("test_")})
    return metrics


def chance(params: ToyBottleneckParams) -> dict[str, float]:
    """``test_accuracy`` of a network that learned nothing: 1/2 (two spiral arms) for ``classify``."""
    return {"test_accuracy": 0.5} if params.data.task == "classify" else {}


# --------------------------------------------------------------------------- report

_SCORE = {"classify": ("test_accuracy", "test accuracy (%)"), "regress": ("test_nmse", "normalised test error (1 - R^2)")}
_ACT_STYLE = {"identity": ("C0", "linear bottleneck"), "relu": ("C3", "relu bottleneck"), "relu6": ("C1", "relu6 bottleneck")}


def linear_advantage(runs, task: str, act: str) -> list[tuple[float, dict]]:
    """Per width: paired comparison over shared seeds of the linear bottleneck with ``act``.

    The advantage is ``accuracy(linear) - accuracy(act)`` in percentage points for
    ``classify`` and ``nmse(act) - nmse(linear)`` for ``regress``: positive when the
    linear bottleneck is better, as the paper predicts (the orientation and unit of the
    report's contrast and of the claim table). Returns ``[(width, paired stats)]``
    (``manifold_lab.stats.paired``; ``mean_diff`` is the advantage).
    """
    from manifold_lab.stats import paired

    key = _SCORE[task][0]
    by = {(r.param("model.width"), r.param("model.bottleneck_act"), r.seed): r.metrics[key] for r in runs}
    out = []
    for width in sorted({w for w, _, _ in by}):
        seeds = sorted(s for w, a, s in by if w == width and a == "identity" and (width, act, s) in by)
        if not seeds:
            continue
        lin = [by[(width, "identity", s)] for s in seeds]
        other = [by[(width, act, s)] for s in seeds]
        if task == "classify":  # fractions: the difference's interval stays inside [-1, 1], shown in points
            c = paired(other, lin, (0.0, 1.0))
            c.update({k: 100 * c[k] for k in ("mean_a", "mean_b", "mean_diff", "diff_ci_low", "diff_ci_high")})
        else:
            c = paired(lin, other)
        out.append((float(width), c))
    return out


def report(ctx: ReportContext) -> list[ReportItem]:
    """Score and linear-bottleneck advantage vs width per activation (95% intervals), Lemma-2 statistics."""
    from manifold_lab.io import md_cell, pyplot, savefig
    from manifold_lab.kinds.recoverability import group_mean_ci, panel_label

    plt = pyplot()

    runs = [r for r in ctx.done_runs if any(k in r.metrics for k, _ in _SCORE.values())]
    if not runs:
        return []
    # Panels: every swept setting other than width and activation (task first).
    fixed = [k for k in ctx.sweep_keys if k not in ("model.width", "model.bottleneck_act")]
    panel_keys = ["data.task"] + [k for k in fixed if k != "data.task"]
    panels = sorted({tuple(r.param(k) for k in panel_keys) for r in runs}, key=str)
    table = ["| setting | width | activation | score mean (accuracy: %) | 95% interval | n |", "|---|---|---|---|---|---|"]
    gaps = ["| setting | width | vs | linear advantage (accuracy: points) | 95% interval | paired t p | Wilcoxon p | "
            "seeds |",
            "|---|---|---|---|---|---|---|---|"]
    rows = (
        ("score", None),
        ("advantage", "linear-bottleneck advantage\n(accuracy: points; paired over seeds)"),
        ("invertible_fraction_min", "Lemma-2 invertible fraction\n(min over expansion layers)"),
    )
    fig, axes = plt.subplots(3, len(panels), figsize=(4.4 * len(panels), 9.6), squeeze=False)
    for col, panel in enumerate(panels):
        sub = [r for r in runs if tuple(r.param(k) for k in panel_keys) == panel]
        task = panel[0]
        key, score_label = _SCORE[task]
        label = panel_label(panel_keys, panel)
        for act in ("identity", "relu", "relu6"):
            act_runs = [r for r in sub if r.param("model.bottleneck_act") == act]
            if not act_runs:
                continue
            colour, name = _ACT_STYLE[act]
            for row, (what, ylabel) in enumerate(rows):
                ax = axes[row, col]
                if what == "advantage":
                    if act == "identity":
                        continue
                    comp = linear_advantage(sub, task, act)
                    xs = [w for w, _ in comp]
                    mean, lo, hi = ([c[k] for _, c in comp] for k in ("mean_diff", "diff_ci_low", "diff_ci_high"))
                    ax.axhline(0, color="0.5", lw=0.8)
                    for w, c in comp:
                        gaps.append(
                            f"| {md_cell(label)} | {w:g} | {act} | {c['mean_diff']:+.4g} | [{c['diff_ci_low']:+.4g}, "
                            f"{c['diff_ci_high']:+.4g}] | {c['t_pvalue']:.3g} | "
                            + (f"{c['wilcoxon_pvalue']:.3g}" if c["wilcoxon_pvalue"] == c["wilcoxon_pvalue"]
                               else "–") + f" | {c['n']} |"
                        )
                else:
                    metric = key if what == "score" else what
                    bounded = (0.0, 1.0) if metric in ("test_accuracy", "invertible_fraction_min") else None
                    xs, mean, lo, hi, n = group_mean_ci(act_runs, "model.width", metric, bounded)
                    if what == "score" and task == "classify":  # accuracy in percent
                        mean, lo, hi = ([100 * v for v in vs] for vs in (mean, lo, hi))
                    if what == "score":
                        for x, m_, l_, h_, c in zip(xs, mean, lo, hi, n):
                            table.append(f"| {md_cell(label)} | {x:g} | {act} | {m_:.4g} | [{l_:.4g}, {h_:.4g}] | {c} |")
                if not xs:
                    continue
                ax.plot(xs, mean, "o-", color=colour, label=name)
                ax.fill_between(xs, lo, hi, color=colour, alpha=0.2)
                ax.set_xscale("log", base=2)
                ax.set_xticks(xs, [f"{x:g}" for x in xs])
                ax.minorticks_off()
                ax.set_xlabel("bottleneck width k")
                ax.set_ylabel(ylabel or score_label)
        axes[0, col].set_title(label, fontsize=9)
        axes[0, col].legend(fontsize=8)
        # Intervals from few seeds can leave the metric's range; show the range that has meaning.
        axes[0, col].set_ylim((45, 102) if task == "classify" else (-0.02, 1.1))
        axes[2, col].set_ylim(-0.05, 1.05)
    fig.tight_layout()
    savefig(fig, ctx.out_dir / "figures" / "score_vs_width.png", dpi=120)
    plt.close(fig)
    return [
        ReportItem(
            "Test score and linear-bottleneck advantage vs bottleneck width", figure="figures/score_vs_width.png",
            caption="Top: test accuracy in percent (classify; higher is better) or normalised error 1 - R^2 "
            "(regress; lower is better), mean over seeds with a 95% interval (accuracy: t truncated to "
            "[0, 100]; error: t). Middle: advantage of the linear "
            "bottleneck over relu / relu6 on the same seeds (accuracy difference in points, linear - relu6 as in "
            "the report's answer, or error difference), with "
            "the 95% interval of the paired differences (accuracy: t truncated to [-100, 100]; error: t); above 0 "
            "means the linear bottleneck is better. "
            "Bottom: share of test points at which every expansion layer has at least k units in its linear "
            "piece (the Lemma-2 invertibility threshold), minimum over layers.",
        ),
        ReportItem("Score per width and activation (mean over seeds, 95% interval)", markdown="\n".join(table)),
        ReportItem("Linear-bottleneck advantage per width (paired over seeds)", markdown="\n".join(gaps)),
    ]


KIND = Kind(
    name="toy_bottleneck",
    description="trained inverted-residual MLPs on embedded two spirals: linear vs relu/relu6 bottleneck across widths",
    params=ToyBottleneckParams,
    run=run,
    estimate_seconds=estimate_seconds,
    report=report,
    bookkeeping=("params", "test_error"),  # test_error = 1 - test_accuracy
    chance=chance,
)
