"""The same network trained on two devices: how far apart do the results land?

Two runs are *twins* when their configurations are the same network once validated (the kind's
params model, so that every spelling of one network has one run id: ``sweep.run_id`` of the
validated params), their seeds match, and they ran on different devices (``device_label``: the
GPU name recorded in ``provenance.json`` for a run on a CUDA device, else ``"CPU"``).

``twins(results)`` pairs every network trained on a GPU with its CPU training, in any study folder of
``results`` (``results/device_check_*/`` holds GPU runs kept out of the studies so that each study
stays on one device); ``repeats(results)`` lists networks trained more than once on one device
(copies made by ``reuse:`` are one training: same provenance). ``section(results)`` is the part of
``results/README.md`` (written by ``manifold-lab claims``) that reports the paired difference of test
accuracy, in points, GPU training minus CPU training, per network and over all pairs (mean, 95% t
interval, two-sided paired t test: ``scipy.stats.ttest_1samp`` on the differences), and whether the
repeated trainings on one device agree.

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

from manifold_lab import io
from manifold_lab.execution import provenance
from manifold_lab.spec.bounds import safe_load_bounded
from manifold_lab.stats import describe

PREFIX = "device_check"
METRIC = "test_acc"

__all__ = ["PREFIX", "canonical_id", "device_label", "devices_of", "repeats", "section", "trainings", "twins"]


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
    from manifold_lab.spec.sweep import run_id
    from manifold_lab.kinds import get_kind

    try:
        config = _config(Path(run_dir))
        params = get_kind(config["kind"]).params.model_validate(config["params"]).model_dump(mode="json")
        return run_id(config["kind"], params, int(config["seed"]))
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return None


def _done(run_dir: Path) -> dict | None:
    """The run's metrics when its status is done, else None."""
    try:
        if json.loads(io.read_text(run_dir / "status.json")).get("status") != "done":
            return None
        return json.loads(io.read_text(run_dir / "metrics.json"))
    except (OSError, ValueError):
        return None


def _config(run_dir: Path) -> dict:
    return safe_load_bounded(io.read_text(run_dir / "config.yaml"))


def _training(run_dir: Path) -> tuple:
    """What identifies one training of a run: its device and start time (a copy made by ``reuse:`` or by
    hand carries the provenance of the run it copies, so copies are one training)."""
    record = provenance.read(run_dir) or {}
    return device_label(run_dir), record.get("started"), record.get("host")


def trainings(results: str | Path = "results") -> dict[str, dict[tuple, Path]]:
    """``{canonical id: {training: run dir}}`` of every done run of ``results/*/runs/*``.

    A training found in several folders is represented by the copy in its own study's folder
    (``experiment`` of its ``config.yaml``), else by the first folder in sorted order.
    """
    out: dict[str, dict[tuple, Path]] = {}
    for run in sorted(Path(results).glob("*/runs/*")):
        if not run.is_dir() or METRIC not in (_done(run) or {}) or (key := canonical_id(run)) is None:
            continue
        seen = out.setdefault(key, {})
        t = _training(run)
        if t not in seen or _config(run).get("experiment") == run.parent.parent.name:
            seen[t] = run
    return out


def _network(run: Path) -> str:
    config = _config(run)
    values = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in sorted(config["sweep_values"].items()))
    return f"{config['experiment']}: {values}"


def _row(run: Path, twin: Path) -> dict:
    return {"network": _network(twin), "seed": int(_config(twin)["seed"]),
            "run": f"{run.parent.parent.name}/{run.name}", "device": device_label(run),
            "twin": f"{twin.parent.parent.name}/{twin.name}", "twin_device": device_label(twin),
            "acc": float(_done(run)[METRIC]), "twin_acc": float(_done(twin)[METRIC]),
            "torch": (provenance.read(run) or {}).get("packages", {}).get("torch"),
            "twin_torch": (provenance.read(twin) or {}).get("packages", {}).get("torch")}


def _by_device(found: dict[tuple, Path]) -> dict[str, list[Path]]:
    """``{device: run dirs}`` of one network's trainings (``trainings``), earliest training first."""
    out: dict[str, list[Path]] = {}
    for t in sorted(found, key=lambda t: (t[1] or "", t[2] or "")):
        out.setdefault(t[0], []).append(found[t])
    return out


def twins(results: str | Path = "results") -> list[dict]:
    """One row per network (validated configuration and seed) and non-CPU device that trained it, paired
    with the network's CPU training: the earliest training on each side (sorted by network, seed)."""
    rows = []
    for by_device in map(_by_device, trainings(results).values()):
        if "CPU" in by_device:
            rows += [_row(runs[0], by_device["CPU"][0]) for device, runs in sorted(by_device.items())
                     if device not in ("CPU", "unknown")]
    return sorted(rows, key=lambda r: (r["network"], r["seed"], r["device"]))


def repeats(results: str | Path = "results") -> list[dict]:
    """Networks trained more than once on one device, by separate runs: ``{network, seed, device, runs, accs}``."""
    rows = [{"network": _network(runs[0]), "seed": int(_config(runs[0])["seed"]), "device": device,
             "runs": [f"{r.parent.parent.name}/{r.name}" for r in runs],
             "accs": [float(_done(r)[METRIC]) for r in runs]}
            for found in trainings(results).values() for device, runs in sorted(_by_device(found).items())
            if len(runs) > 1 and device != "unknown"]
    return sorted(rows, key=lambda r: (r["network"], r["seed"], r["device"]))


def _line(d: list[float]) -> str:
    from scipy import stats as sps

    s = describe(d)
    p = f", paired t p = {sps.ttest_1samp(d, 0.0).pvalue:.2g}" if len(d) >= 2 and np.ptp(d) > 0 else ""
    return (f"{s['mean'] * 100:+.2f} points [{s['ci_low'] * 100:+.2f}, {s['ci_high'] * 100:+.2f}], "
            f"n = {s['n']}{p}")


def section(results: str | Path = "results") -> list[str]:
    """Markdown lines for ``results/README.md`` ([] when no network was trained on two devices, or twice on one)."""
    rows, again = twins(results), repeats(results)
    if not rows and not again:
        return []
    d = [r["acc"] - r["twin_acc"] for r in rows]
    devices = sorted({(r["device"], r["twin_device"]) for r in rows})
    pair = "; ".join(f"{a} minus {b}" for a, b in devices)
    lines = ["## Same network, two devices", "",
             f"Test accuracy of the same network, seed and data trained on two devices ({pair}), over "
             f"{len(rows)} pairs: {_line(d)}. Every network of `results/` (validated configuration and seed, "
             f"in any study folder, `results/{PREFIX}*/` included) trained on the CPU and on another device; "
             "a network trained more than once on a device counts once (its earliest training). Mean [95% t "
             "interval], two-sided paired t test. A comparison of the table above whose runs ran on more than "
             "one device says so in its row.", ""]
    for network in sorted({r["network"] for r in rows}):
        sub = [r["acc"] - r["twin_acc"] for r in rows if r["network"] == network]
        lines.append(f"- {network}: {_line(sub)}")
    lines += ["", "| network | seed | run (device, torch) | twin (device, torch) | accuracy | twin's | difference |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        text = {k: io.md_cell(str(v)) for k, v in r.items()}  # labels read from run records
        lines.append(f"| {text['network']} | {r['seed']} | {text['run']} ({text['device']}, {text['torch']}) | "
                     f"{text['twin']} ({text['twin_device']}, {text['twin_torch']}) | {r['acc']:.4f} | "
                     f"{r['twin_acc']:.4f} | {(r['acc'] - r['twin_acc']) * 100:+.2f} |")
    if again:
        same = sum(len(set(r["accs"])) == 1 for r in again)
        lines += ["", f"The same network trained again on the same device by a separate run (another session or "
                  f"study, same validated configuration and seed): test accuracy identical in {same} of "
                  f"{len(again)} networks.", "",
                  "| network | seed | device | runs | test accuracy |", "|---|---|---|---|---|"]
        lines += [f"| {io.md_cell(r['network'])} | {r['seed']} | {io.md_cell(r['device'])} | "
                  f"{io.md_cell(', '.join(r['runs']))} | {', '.join(f'{a:.4f}' for a in r['accs'])} |" for r in again]
    return lines + [""]
