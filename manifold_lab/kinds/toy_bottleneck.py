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
    noise: float = Field(0.0, ge=0.0, description="Gaussian noise on the 2-D spirals")


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


def run(params: ToyBottleneckParams, seed: int, ctx: RunContext) -> dict:
    """Train one toy net; metrics as documented in ``manifold_lab.toy.run_toy``.

    Keys: ``test_accuracy`` and ``test_error`` (classify) or ``test_nmse``
    (regress); ``final_train_loss``, ``params``; per block ``b``
    ``block{b}_invertible_fraction``, ``block{b}_active_mean``,
    ``block{b}_active_min``, ``block{b}_active_max``; ``invertible_fraction_min``
    and ``active_fraction_mean``.
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


# --------------------------------------------------------------------------- report

_SCORE = {"classify": ("test_accuracy", "test accuracy"), "regress": ("test_nmse", "normalised test error (1 - R^2)")}
_ACT_STYLE = {"identity": ("C0", "linear bottleneck"), "relu": ("C3", "relu bottleneck"), "relu6": ("C1", "relu6 bottleneck")}


def report(ctx: ReportContext) -> list[ReportItem]:
    """Score vs bottleneck width per activation (95% t-intervals over seeds), and Lemma-2 statistics."""
    from manifold_lab.kinds.recoverability import group_mean_ci, panel_label

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from manifold_lab.io import savefig

    runs = ctx.done_runs
    if not runs:
        return []
    # Panels: every swept setting other than width and activation (task first).
    fixed = [k for k in ctx.sweep_keys if k not in ("model.width", "model.bottleneck_act")]
    panel_keys = ["data.task"] + [k for k in fixed if k != "data.task"]
    panels = sorted({tuple(r.param(k) for k in panel_keys) for r in runs}, key=str)
    items: list[ReportItem] = []
    table = ["| setting | width | activation | score mean | 95% interval | n |", "|---|---|---|---|---|---|"]

    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 6.4), squeeze=False)
    for col, panel in enumerate(panels):
        sub = [r for r in runs if tuple(r.param(k) for k in panel_keys) == panel]
        task = panel[0]
        key, ylabel = _SCORE[task]
        label = panel_label(panel_keys, panel)
        for act in ("identity", "relu", "relu6"):
            act_runs = [r for r in sub if r.param("model.bottleneck_act") == act]
            if not act_runs:
                continue
            colour, name = _ACT_STYLE[act]
            for row, (metric, ylab) in enumerate(((key, ylabel), ("invertible_fraction_min", "Lemma-2 invertible fraction\n(min over expansion layers)"))):
                xs, mean, lo, hi, n = group_mean_ci(act_runs, "model.width", metric)
                ax = axes[row, col]
                ax.plot(xs, mean, "o-", color=colour, label=name)
                ax.fill_between(xs, lo, hi, color=colour, alpha=0.2)
                ax.set_xscale("log", base=2)
                ax.set_xticks(xs, [f"{x:g}" for x in xs])
                ax.minorticks_off()
                ax.set_xlabel("bottleneck width k")
                ax.set_ylabel(ylab)
                if row == 0:
                    ax.set_title(label, fontsize=9)
                    for x, m_, l_, h_, c in zip(xs, mean, lo, hi, n):
                        table.append(f"| {label} | {x:g} | {act} | {m_:.4f} | [{l_:.4f}, {h_:.4f}] | {c} |")
        axes[0, col].legend(fontsize=8)
        # Intervals from few seeds can leave [0, 1]; show the meaningful range.
        axes[0, col].set_ylim((0.45, 1.02) if task == "classify" else (-0.02, 1.1))
        axes[1, col].set_ylim(-0.05, 1.05)
    fig.tight_layout()
    savefig(fig, ctx.out_dir / "figures" / "score_vs_width.png", dpi=120)
    plt.close(fig)
    items.append(ReportItem(
        "Test score vs bottleneck width", figure="figures/score_vs_width.png",
        caption="Top: test accuracy (classify; higher is better) or normalised error 1 - R^2 "
        "(regress; lower is better) against the bottleneck width, mean over seeds with 95% t-interval. "
        "Bottom: share of test points at which every expansion layer has at least k units in its linear "
        "piece (the Lemma-2 invertibility threshold), minimum over layers.",
    ))
    items.append(ReportItem("Score per width and activation (mean over seeds, 95% t-interval)", markdown="\n".join(table)))
    return items


KIND = Kind(
    name="toy_bottleneck",
    description="trained inverted-residual MLPs on embedded two spirals: linear vs relu/relu6 bottleneck across widths",
    params=ToyBottleneckParams,
    run=run,
    report=report,
)
