"""The probe's files: per-layer CSV and JSON, and the information-loss profile through depth.

``write_probe(out_dir, results, meta)`` writes into ``out_dir`` (all three rendered in a
temporary folder first, then renamed into place):

- ``probe.csv``: one row per (network, stage, block) with every measure;
- ``probe.json``: ``meta`` (images, class histogram, positions, provenance)
  and, per network and stage, its records and ``probe_summary``;
- ``probe.png``: one column per bottleneck activation (linear, ReLU, ReLU6
  side by side), one row per measure, one line per network and stage (solid:
  trained, dashed: step 0), block index on the x axis.

``results`` is a list of ``{"label", "stage" ("step0" | "trained"), "source", "records"}``.
"""

from __future__ import annotations

from pathlib import Path

from manifold_lab import io
from manifold_lab.probe.network import probe_summary

#: The rows of the figure: record key and axis label.
PROFILE = (
    ("r2_input_linear", "block input from output\n(ridge R^2, held out)"),
    ("r2_pre_linear", "bottleneck pre-activation\nfrom output (ridge R^2)"),
    ("r2_branch_linear", "bottleneck pre-activation\nfrom act3 of it (ridge R^2)"),
    ("lemma2_failure_fraction", "Lemma 2 fails\n(share of positions)"),
    ("zeroed_fraction", "bottleneck channels\nzeroed (share)"),
    ("twonn_mean", "TwoNN ID of the output\n(mean over resamples)"),
    ("rankme", "RankMe effective rank\nof the output"),
)
ACT_TITLES = {"identity": "linear bottleneck", "relu": "ReLU bottleneck", "relu6": "ReLU6 bottleneck"}


def csv_text(results: list[dict]) -> str:
    keys = dict.fromkeys(k for res in results for rec in res["records"] for k in rec)  # first-seen order
    rows = [{"network": res["label"], "stage": res["stage"], "source": res["source"], **rec}
            for res in results for rec in res["records"]]
    return io.csv_text(rows, ["network", "stage", "source", *keys])


def plot_profile(results: list[dict], path: Path) -> Path:
    import numpy as np

    plt = io.pyplot()
    from matplotlib.ticker import MaxNLocator

    acts = [a for a in ACT_TITLES if any(r["records"][0]["bottleneck_act"] == a for r in results)]
    fig, axes = plt.subplots(len(PROFILE), len(acts), figsize=(4.6 * len(acts), 2.1 * len(PROFILE)),
                             squeeze=False, sharex=True)
    labels = sorted({r["label"] for r in results})
    for col, act in enumerate(acts):
        for res in (r for r in results if r["records"][0]["bottleneck_act"] == act):
            colour = f"C{labels.index(res['label']) % 10}"
            style = "--" if res["stage"] == "step0" else "-"
            x = [rec["block"] for rec in res["records"]]
            for row, (key, _) in enumerate(PROFILE):
                y = np.array([np.nan if rec.get(key) is None else rec[key] for rec in res["records"]], dtype=float)
                axes[row, col].plot(x, y, style, color=colour, marker=".", lw=1.2,
                                    label=f"{res['label']} ({res['stage']})")
                if key == "twonn_mean":
                    std = np.array([np.nan if rec.get("twonn_std") is None else rec["twonn_std"]
                                    for rec in res["records"]], dtype=float)
                    axes[row, col].fill_between(x, y - std, y + std, color=colour, alpha=0.15)
        axes[0, col].set_title(ACT_TITLES[act], fontsize=10)
        axes[0, col].legend(fontsize=6)
        axes[-1, col].set_xlabel("block")
        axes[-1, col].xaxis.set_major_locator(MaxNLocator(integer=True))
    for row, (_, label) in enumerate(PROFILE):
        axes[row, 0].set_ylabel(label, fontsize=8)
    fig.suptitle("Information-loss profile through depth (solid: trained, dashed: step 0)", fontsize=10)
    fig.tight_layout()
    io.savefig(fig, path, dpi=110)
    plt.close(fig)
    return path


def write_probe(out_dir: str | Path, results: list[dict], meta: dict) -> dict[str, Path]:
    """Write ``probe.csv``, ``probe.json`` and ``probe.png`` into ``out_dir``; return their paths."""
    import os
    import shutil
    import tempfile

    out_dir = Path(out_dir)
    payload = {"meta": meta, "networks": [
        {**{k: v for k, v in res.items() if k != "records"}, "summary": probe_summary(res["records"]),
         "records": res["records"]} for res in results]}
    out_dir.mkdir(parents=True, exist_ok=True)
    # All three are written into a temporary folder first: a failure leaves none of them half-done.
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=".probe-"))
    try:
        io.write_text(tmp / "probe.csv", csv_text(results))
        io.write_json(tmp / "probe.json", payload)
        plot_profile(results, tmp / "probe.png")
        for key in ("csv", "json", "png"):
            os.replace(tmp / f"probe.{key}", out_dir / f"probe.{key}")
        return {key: out_dir / f"probe.{key}" for key in ("csv", "json", "png")}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
