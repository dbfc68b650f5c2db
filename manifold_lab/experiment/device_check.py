"""The same network trained on two devices: how far apart do the results land?

Two runs are *twins* when their configurations are the same network once validated (the kind's
params model, so that every spelling of one network has one run id: ``sweep.run_id`` of the
validated params), their seeds match, and they ran on different devices (``device_label``: the
GPU name recorded in ``provenance.json`` for a run on a CUDA device, else ``"CPU"``).

``twins(results)`` pairs every run under ``results/device_check_*/runs/`` with its twin in the
other study folders of ``results``; ``section(results)`` is the part of ``results/README.md``
(written by ``manifold-lab claims``) that reports the paired difference of test accuracy, in
points, device-check run minus its twin, per network and over all pairs: mean, 95% t interval and
a two-sided paired t test (``scipy.stats.ttest_1samp`` on the differences).

Why it matters: the arms of a comparison must differ in the factor under test only. An offset
between devices as large as the effects under test makes a comparison unsound when its arms ran
on different devices; ``manifold-lab claims`` says which of its tests have runs on more than one
device (``devices_of``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import yaml

from manifold_lab.experiment import provenance
from manifold_lab.experiment.stats import describe

PREFIX = "device_check"
METRIC = "test_acc"

__all__ = ["PREFIX", "canonical_id", "device_label", "devices_of", "section", "twins"]


def device_label(run_dir: Path) -> str:
    """``"CPU"`` or the CUDA device's name, from the run's ``provenance.json`` (``"unknown"`` without one)."""
    record = provenance.read(run_dir)
    if record is None:
        return "unknown"
    if str(record.get("device", "cpu")).startswith("cpu") or not record.get("gpu"):
        return "CPU"
    return str(record["gpu"])


def devices_of(run_dirs: Iterable[Path]) -> Counter:
    """``Counter({device label: runs})`` of some runs."""
    return Counter(device_label(Path(d)) for d in run_dirs)


def canonical_id(run_dir: Path) -> str | None:
    """The run id of the run's network and seed after validation by its kind (None if unreadable)."""
    from manifold_lab.experiment.sweep import run_id
    from manifold_lab.kinds import get_kind

    try:
        config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8"))
        params = get_kind(config["kind"]).params.model_validate(config["params"]).model_dump(mode="json")
        return run_id(config["kind"], params, int(config["seed"]))
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return None


def _done(run_dir: Path) -> dict | None:
    """The run's metrics when its status is done, else None."""
    try:
        if json.loads((run_dir / "status.json").read_text(encoding="utf-8")).get("status") != "done":
            return None
        return json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _config(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))


def twins(results: str | Path = "results") -> list[dict]:
    """One row per device-check run with a done twin on another device (sorted by network, seed)."""
    results = Path(results)
    checks = sorted(p for p in results.glob(f"{PREFIX}*/runs/*") if p.is_dir())
    if not checks:
        return []
    others: dict[str, Path] = {}  # a run reused by several studies: the copy in its own study's folder
    for run in sorted(results.glob("*/runs/*")):
        if run.is_dir() and not run.parent.parent.name.startswith(PREFIX) and _done(run) is not None:
            key = canonical_id(run) or ""
            if key not in others or _config(run).get("experiment") == run.parent.parent.name:
                others[key] = run
    rows = []
    for run in checks:
        metrics, key = _done(run), canonical_id(run)
        twin = others.get(key or "")
        if metrics is None or twin is None or METRIC not in metrics:
            continue
        if device_label(run) == device_label(twin):
            continue
        config, twin_config = _config(run), _config(twin)
        network = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in sorted(twin_config["sweep_values"].items()))
        rows.append({
            "network": f"{twin_config['experiment']}: {network}", "seed": int(config["seed"]),
            "run": run.name, "device": device_label(run), "twin": f"{twin.parent.parent.name}/{twin.name}",
            "twin_device": device_label(twin), "acc": float(metrics[METRIC]),
            "twin_acc": float(_done(twin)[METRIC]),
            "torch": (provenance.read(run) or {}).get("packages", {}).get("torch"),
            "twin_torch": (provenance.read(twin) or {}).get("packages", {}).get("torch"),
        })
    return sorted(rows, key=lambda r: (r["network"], r["seed"]))


def _line(d: list[float]) -> str:
    from scipy import stats as sps

    s = describe(d)
    p = f", paired t p = {sps.ttest_1samp(d, 0.0).pvalue:.2g}" if len(d) >= 2 and np.ptp(d) > 0 else ""
    return (f"{s['mean'] * 100:+.2f} points [{s['ci_low'] * 100:+.2f}, {s['ci_high'] * 100:+.2f}], "
            f"n = {s['n']}{p}")


def section(results: str | Path = "results") -> list[str]:
    """Markdown lines for ``results/README.md`` ([] when there is no device-check run with a twin)."""
    rows = twins(results)
    if not rows:
        return []
    d = [r["acc"] - r["twin_acc"] for r in rows]
    devices = sorted({(r["device"], r["twin_device"]) for r in rows})
    pair = "; ".join(f"{a} minus {b}" for a, b in devices)
    lines = ["## Same network, two devices", "",
             f"Test accuracy of the same network, seed and data trained on two devices ({pair}), over "
             f"{len(rows)} pairs: {_line(d)}. Runs from `results/{PREFIX}*/` against their twins "
             "(same validated configuration and seed) elsewhere in `results/`; mean [95% t interval], "
             "two-sided paired t test. A comparison of the table above whose runs ran on more than one "
             "device says so in its row.", ""]
    for network in sorted({r["network"] for r in rows}):
        sub = [r["acc"] - r["twin_acc"] for r in rows if r["network"] == network]
        lines.append(f"- {network}: {_line(sub)}")
    lines += ["", "| network | seed | run (device, torch) | twin (device, torch) | accuracy | twin's | difference |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['network']} | {r['seed']} | {r['run']} ({r['device']}, {r['torch']}) | {r['twin']} "
                     f"({r['twin_device']}, {r['twin_torch']}) | {r['acc']:.4f} | {r['twin_acc']:.4f} | "
                     f"{(r['acc'] - r['twin_acc']) * 100:+.2f} |")
    return lines + [""]
