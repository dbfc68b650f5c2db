"""Trained against untrained geometry (Ansuini et al. 2019): the shape of the intrinsic-dimension profile.

Ansuini et al. (NeurIPS 2019) report that the intrinsic dimension (ID) of a
trained network's representations rises and then falls through depth (a
"hunchback"), while an untrained network's profile is flat. The check was
pre-registered in ``experiments/probe_penalty_correlation.md`` before any
trained CIFAR-10 network carried the probe. Its data are the per-block records
of every CIFAR-10 run's ``probe.json`` (``manifold_lab.train.trainer``): the
TwoNN ID of each block's output, ``twonn_mean``, and its spread over the probe's
random resamples, ``twonn_std`` (``manifold_lab.probe.measures``; 100
class-balanced test images, 3 random halves of the points, each fitted on 90% of its
ratios), at ``step0`` and
after training (``final``).

For one profile ``ID_1 .. ID_B`` (blocks in forward order) with spreads
``s_1 .. s_B``, let ``j = argmax ID`` and the margin
``m = 2 max(s_1, s_B, s_j)`` (twice the largest resample spread of the first,
the last and the highest block):

- *hunchback*: ``ID_j - ID_1 > m`` and ``ID_j - ID_B > m`` (judged on the trained profile);
- *flat*: ``max ID - min ID < m`` (judged on the step-0 profile, with its own margin).

Blocks whose TwoNN is undefined (``None``) are left out. The result is
reported per variant (``model.bottleneck_act``) as the share of runs showing
each shape; a run that appears in several studies (``reuse:``) counts once.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

#: The CIFAR-10 studies whose runs enter (``results/<name>/``); a missing folder adds nothing. They are the
#: correlation's studies, as pre-registered ("from the same CIFAR-10 runs", per variant linear and ReLU6):
#: the penalty-location study is not among them (its networks with ReLU6 in some blocks only are neither
#: variant, and its other two arms are Figure 6a's runs).
STUDIES = ("figure6a_linear_bottleneck_cifar10", "figure6b_shortcuts_cifar10", "width_sweep_cifar10",
           "budget_ladder_cifar10", "bottleneck_width_cifar10")
PREREGISTRATION = "experiments/probe_penalty_correlation.md"


def profile(records: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(block, id, spread)`` arrays of one probe stage's records, blocks with an undefined TwoNN left out."""
    kept = [r for r in records if r.get("twonn_mean") is not None]
    return (np.array([r["block"] for r in kept], dtype=int), np.array([r["twonn_mean"] for r in kept], dtype=float),
            np.array([r.get("twonn_std") or 0.0 for r in kept], dtype=float))


def margin(ids: np.ndarray, spreads: np.ndarray) -> float:
    """``2 max(s_first, s_last, s_argmax)``: the resolution below which two blocks' IDs are not told apart."""
    j = int(np.argmax(ids))
    return 2.0 * float(max(spreads[0], spreads[-1], spreads[j]))


def is_hunchback(ids: np.ndarray, spreads: np.ndarray) -> bool:
    """The highest block is above both the first and the last by more than ``margin``."""
    if len(ids) < 3:
        return False
    m, top = margin(ids, spreads), float(np.max(ids))
    return bool(top - ids[0] > m and top - ids[-1] > m)


def is_flat(ids: np.ndarray, spreads: np.ndarray) -> bool:
    """The profile's range over blocks is below ``margin``."""
    if len(ids) < 2:
        return True
    return bool(float(np.ptp(ids)) < margin(ids, spreads))


def run_profiles(results: str | Path = "results") -> list[dict]:
    """One entry per distinct run of ``STUDIES`` with a ``probe.json``: its study, variant, condition,
    seed, both profiles and their shapes."""
    from manifold_lab import io
    from manifold_lab.reproduction.records import done_runs

    out, seen = [], set()
    for study in STUDIES:
        for r in done_runs(Path(results) / study):
            path = r.run_dir / "probe.json"
            if r.run_id in seen or not path.is_file():
                continue
            seen.add(r.run_id)
            probe = json.loads(io.read_text(path, what="a run's probe.json"))
            entry = {"study": study, "run_id": r.run_id, "seed": r.seed, "variant": r.param("model.bottleneck_act"),
                     "condition": ", ".join(f"{k}={v}" for k, v in sorted(r.sweep_values.items())
                                            if k != "model.bottleneck_act") or "all"}
            for stage in ("step0", "final"):
                blocks, ids, spreads = profile((probe.get(stage) or {}).get("records", []))
                entry[stage] = {"block": blocks.tolist(), "id": ids.tolist(), "spread": spreads.tolist()}
                entry[f"hunchback_{stage}"], entry[f"flat_{stage}"] = is_hunchback(ids, spreads), is_flat(ids, spreads)
            out.append(entry)
    return out


def shares(runs: list[dict]) -> dict[str, dict]:
    """Per variant: runs, and how many show a trained hunchback, a flat step-0 profile, and both."""
    out: dict[str, dict] = {}
    for r in runs:
        v = out.setdefault(r["variant"], {"runs": 0, "hunchback_final": 0, "flat_step0": 0, "both": 0})
        v["runs"] += 1
        v["hunchback_final"] += r["hunchback_final"]
        v["flat_step0"] += r["flat_step0"]
        v["both"] += r["hunchback_final"] and r["flat_step0"]
    return out


def _plot(runs: list[dict], path: Path) -> None:
    from manifold_lab import io

    plt = io.pyplot()

    variants = sorted({r["variant"] for r in runs})
    fig, axes = plt.subplots(1, len(variants), figsize=(4.6 * len(variants), 3.6), sharey=True, squeeze=False)
    for ax, variant in zip(axes[0], variants):
        for stage, style in (("step0", "--"), ("final", "-")):
            for r in (r for r in runs if r["variant"] == variant and r["condition"] == "all"):
                ax.plot(r[stage]["block"], r[stage]["id"], style, color="C0" if stage == "final" else "0.5",
                        lw=0.9, alpha=0.8)
        ax.plot([], [], "-", color="C0", label="trained")
        ax.plot([], [], "--", color="0.5", label="step 0")
        ax.set_title(f"bottleneck {variant}: one line per seed", fontsize=9)
        ax.set_xlabel("block (forward order)")
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel("TwoNN intrinsic dimension\nof the block output")
    fig.suptitle("Intrinsic dimension through depth, Figure 6a networks (CIFAR-10, width 0.5)", fontsize=10)
    fig.tight_layout()
    io.savefig(fig, path, dpi=120)
    plt.close(fig)


def write_check(results: str | Path = "results", out: str | Path = "runs/probe_penalty_correlation") -> dict:
    """Evaluate the check over ``results`` and write ``id_profile.json``, ``id_profile.csv`` and
    (with the Figure 6a runs present) ``id_profile.png`` into ``out``. Returns the JSON payload."""
    from manifold_lab import io

    out = Path(out)
    runs = run_profiles(results)
    payload = {"preregistration": PREREGISTRATION, "studies": list(STUDIES), "runs": len(runs),
               "by_variant": shares(runs), "profiles": runs}
    fields = ["study", "run_id", "seed", "variant", "condition", "hunchback_final", "flat_step0",
              "hunchback_step0", "flat_final", "peak_block_final", "id_first_final", "id_peak_final", "id_last_final"]
    rows = []
    for r in runs:
        rows.append({k: r[k] for k in fields[:9]})
        if ids := r["final"]["id"]:  # else the four cells stay empty
            j = int(np.argmax(ids))
            rows[-1].update({"peak_block_final": r["final"]["block"][j], "id_first_final": f"{ids[0]:.3f}",
                             "id_peak_final": f"{ids[j]:.3f}", "id_last_final": f"{ids[-1]:.3f}"})
    io.write_text(out / "id_profile.csv", io.csv_text(rows, fields))
    io.write_json(out / "id_profile.json", payload)
    if any(r["condition"] == "all" for r in runs):
        _plot(runs, out / "id_profile.png")
    return payload
