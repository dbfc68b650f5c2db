"""The per-block penalty of a one-block-at-a-time study, for the mobilenetv2 report (issue 22, section 3).

A study that sweeps ``model.bottleneck_act_blocks`` over single blocks (values ``block_N``: ReLU6 after the
projection of ``features.N`` alone) next to the linear network (the value ``none``, stored as
``model.bottleneck_act = identity``) gets, per block ``N``, over the seeds ``s`` that completed both arms (at
equal values of the other swept parameters):

    penalty(N)_s   = 100 * (test_acc(none)_s - test_acc(block_N)_s)          accuracy points
    penalty(N)     = mean over those seeds, with its 95% t interval (``manifold_lab.stats.describe``)
    branch loss(N) = mean over those block_N runs with a probe.json of 1 - r2_branch_linear of the record
                     ``features.N`` in its "final" records (a missing probe.json leaves the run out)
    shortcut(N)    = ``features[N].use_res_connect`` of the network built from the block_N run's model config

``block_points`` returns one dict per block with a paired seed, in block order; ``block_penalty_items`` draws
``figures/block_penalty.png`` (left: the penalty per block with its interval, by shortcut, the paired seeds under
each point; right: the branch loss against the penalty, Spearman's rho over the blocks when at least 3 have
both; descriptive: the claim table holds the pre-registered test) and a table, or returns [] without any block.
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from pathlib import Path

from manifold_lab import io
from manifold_lab.errors import UsageError
from manifold_lab.kinds import ReportItem, RunRecord
from manifold_lab.stats import describe

KEY, ACT = "model.bottleneck_act_blocks", "model.bottleneck_act"
FIGURE = "figures/block_penalty.png"
_BLOCK = re.compile(r"block_(\d+)")


@lru_cache(maxsize=None)
def _shortcuts(model_params: str) -> tuple[bool, ...]:
    """``use_res_connect`` of every module of ``features`` of the network of a model config (JSON), no weights."""
    from manifold_lab.train.config import TrainConfig
    from manifold_lab.train.trainer import build_model

    model = build_model(TrainConfig.model_validate({"model": json.loads(model_params)}), 10, 3)
    return tuple(bool(getattr(b, "use_res_connect", False)) for b in model.features)


def _branch_loss(run: RunRecord, n: int) -> float | None:
    """1 - r2_branch_linear of ``features.N`` in the run's probe.json "final" records (None: no probe.json or
    no such record); a damaged probe.json is one UsageError line naming it."""
    path = Path(run.run_dir) / "probe.json"
    if not path.exists():
        return None
    try:
        records = json.loads(io.read_text(path, what="a run's probe.json"))["final"]["records"]
        found = [rec["r2_branch_linear"] for rec in records if rec.get("name") == f"features.{n}"]
        return 1.0 - float(found[0]) if found else None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"{path} is damaged ({' '.join(str(exc).split())}); rerun that run (--force)") from None


def block_points(runs: list[RunRecord], sweep_keys: list[str]) -> list[dict]:
    """Per block with at least one paired seed, in block order: ``{block, shortcut, seeds, penalty (describe of
    the per-seed penalties in points), branch_loss (mean, or None)}``; [] unless ``KEY`` is swept."""
    if KEY not in sweep_keys:
        return []
    others = [k for k in sweep_keys if k not in (KEY, ACT)]

    def pair_key(r: RunRecord) -> tuple:
        return (r.seed, *(json.dumps(r.sweep_values.get(k), sort_keys=True) for k in others))

    runs = [r for r in runs if r.ok and "test_acc" in r.metrics]
    linear = {pair_key(r): r for r in runs if (r.params.get("model") or {}).get("bottleneck_act") == "identity"}
    arms: dict[int, list[RunRecord]] = {}
    for r in runs:
        m = _BLOCK.fullmatch(str((r.params.get("model") or {}).get("bottleneck_act_blocks", "")))
        if m and (r.params.get("model") or {}).get("bottleneck_act") != "identity" and pair_key(r) in linear:
            arms.setdefault(int(m.group(1)), []).append(r)
    points = []
    for n, rs in sorted(arms.items()):
        losses = [x for x in (_branch_loss(r, n) for r in rs) if x is not None]
        cuts = _shortcuts(json.dumps(rs[0].params.get("model") or {}, sort_keys=True))
        points.append({"block": n, "shortcut": n < len(cuts) and cuts[n], "seeds": len(rs),
                       "penalty": describe([100 * (float(linear[pair_key(r)].metrics["test_acc"])
                                                   - float(r.metrics["test_acc"])) for r in rs]),
                       "branch_loss": sum(losses) / len(losses) if losses else None})
    return points


def _table(points: list[dict]) -> str:
    lines = ["| block | shortcut | paired seeds | penalty, points [95% interval] | branch loss |",
             "|---|---|---|---|---|"]
    for p in points:
        d, loss = p["penalty"], p["branch_loss"]
        interval = f" [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}]" if math.isfinite(d["ci_low"]) else " [n = 1]"
        lines.append(f"| block_{p['block']} | {'yes' if p['shortcut'] else 'no'} | {p['seeds']} | "
                     f"{d['mean']:+.2f}{interval} | {'-' if loss is None else f'{loss:.3f}'} |")
    return "\n".join(lines)


def block_penalty_items(runs: list[RunRecord], sweep_keys: list[str], out_dir: Path) -> list[ReportItem]:
    """The figure ``FIGURE`` and its table (module docstring); [] when no block has a paired seed."""
    points = block_points(runs, sweep_keys)
    if not points:
        return []
    import numpy as np
    from scipy.stats import spearmanr

    plt = io.pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    x = np.arange(len(points))
    style = {True: ("C0", "o", "shortcut"), False: ("C3", "s", "no shortcut")}
    for i, p in enumerate(points):
        d = p["penalty"]
        colour, marker, label = style[p["shortcut"]]
        err = [[d["mean"] - d["ci_low"]], [d["ci_high"] - d["mean"]]] if math.isfinite(d["ci_low"]) else None
        left.errorbar(i, d["mean"], yerr=err, color=colour, marker=marker, capsize=4, ls="none",
                      label=label if label not in left.get_legend_handles_labels()[1] else None)
    left.axhline(0, color="k", lw=0.8)
    left.set_xticks(x, [f"{p['block']}\nn={p['seeds']}" for p in points])
    left.set_xlim(-0.6, len(points) - 0.4)
    left.set_xlabel("block N (features.N, the only ReLU6 bottleneck); n = paired seeds")
    left.set_ylabel("penalty: acc(none) - acc(block_N), points")
    left.set_title("mean over paired seeds, 95% t interval", fontsize=9)
    left.legend(fontsize=7)
    both = [p for p in points if p["branch_loss"] is not None]
    for p in both:
        colour, marker, _ = style[p["shortcut"]]
        right.scatter(p["branch_loss"], p["penalty"]["mean"], color=colour, marker=marker)
        right.annotate(str(p["block"]), (p["branch_loss"], p["penalty"]["mean"]), xytext=(4, 3),
                       textcoords="offset points", fontsize=8)
    right.axhline(0, color="k", lw=0.8)
    rho = spearmanr([p["branch_loss"] for p in both], [p["penalty"]["mean"] for p in both]).statistic \
        if len(both) >= 3 else None
    rho_text = f"Spearman rho = {rho:+.2f} over {len(both)} blocks" if rho is not None and math.isfinite(rho) else \
        f"{len(both)} blocks with a probe" + (": rho undefined (a constant measure)" if rho is not None else
                                               ": no rho below 3 blocks")
    right.set_title(f"{rho_text}\ndescriptive: the claim table holds the pre-registered test", fontsize=9)
    right.set_xlabel("branch loss: 1 - r2_branch_linear of features.N (block_N runs, final)")
    right.set_ylabel("penalty, points")
    fig.tight_layout()
    io.savefig(fig, out_dir / FIGURE, dpi=120)
    plt.close(fig)
    caption = ("penalty(N)_s = acc(none)_s - acc(block_N)_s in test-accuracy points over the seeds that completed "
               "both arms (n under each block number); error bar: 95% t interval of the mean; circles: features.N "
               "has a shortcut, squares: none (the network built from the run's configuration); right: the mean branch "
               "loss of the block_N runs with a probe.json against the penalty, one point per block")
    return [ReportItem("Penalty of ReLU6 in one block at a time", figure=FIGURE, caption=caption),
            ReportItem("Penalty per block (one block at a time)", markdown=_table(points))]
