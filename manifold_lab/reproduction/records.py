"""The completed runs of a committed study, and its results files, read for a claim.

A study's folder (``results/<study>/``) holds ``spec.yaml``, ``plan.json`` and
``runs/<id>/{metrics.json, relu_stats.json, status.json}`` as written by
``manifold_lab.execution.runner``; ``theorem1/theorem1.csv`` and a report's
``summary.csv`` are read as CSV. A damaged file is one ``UsageError`` line naming it
and the command that regenerates it (``damaged``).
"""

from __future__ import annotations

import csv
import io as _stdio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from manifold_lab import io
from manifold_lab.errors import UsageError
from manifold_lab.kinds import RunRecord
from manifold_lab.reporting.aggregate import aggregate

__all__ = ["MAX_CSV_BYTES", "csv_rows", "damaged", "difference", "done_runs", "old_sample",
           "per_seed", "probe_records", "relu_stats", "run_counts", "swept_values"]


def done_runs(folder: Path) -> list[RunRecord]:
    """The done runs of a results folder ([] when the folder or its plan is missing)."""
    if not (folder / "plan.json").exists():
        return []
    return [r for r in aggregate(folder).records if r is not None and r.ok]


def run_counts(folder: Path, arms: tuple | None = None) -> tuple[int, int, int]:
    """``(planned, done, failed)`` runs of a results folder; with ``arms`` (param filters), of the planned runs
    whose params match one of them."""
    if not (folder / "plan.json").exists():
        return 0, 0, 0
    agg = aggregate(folder)
    records = agg.records
    if arms is not None:
        keep = [any(all(RunRecord("", run["params"], run["seed"], "", {}, folder).param(k) == v
                        for k, v in arm.items()) for arm in arms) for run in agg.plan]
        records = [r for r, k in zip(records, keep) if k]
    return (len(records), sum(r is not None and r.ok for r in records),
            sum(r is not None and not r.ok for r in records))


def swept_values(folder: Path, key: str) -> list:
    """The planned values of the swept parameter ``key`` (sorted), done or not: a partial sweep
    must not stand in for the whole one."""
    return sorted(aggregate(folder).sweep.get(key, [])) if (folder / "plan.json").exists() else []


def per_seed(runs: list[RunRecord], metric: str, fixed: dict | None = None, **kw) -> dict[int, float]:
    """``{seed: metric}`` of the runs whose dotted params equal ``fixed`` (or ``model__width_mult=..`` keywords)."""
    want = {**(fixed or {}), **{k.replace("__", "."): v for k, v in kw.items()}}
    return {r.seed: float(r.metrics[metric]) for r in runs
            if metric in r.metrics and all(r.param(k) == v for k, v in want.items())}


def difference(better: dict[int, float], worse: dict[int, float]) -> dict[int, float]:
    """Per seed ``better - worse`` over the seeds both have."""
    return {s: better[s] - worse[s] for s in sorted(set(better) & set(worse))}


#: Largest CSV a claim reads (the committed ones are a few kilobytes).
MAX_CSV_BYTES = 16 << 20


def csv_rows(path: Path) -> list[dict]:
    """The rows of a results CSV (``csv.DictReader``), at most ``MAX_CSV_BYTES`` read (``io.read_bytes``)."""
    text = io.read_text(path, limit=MAX_CSV_BYTES, what="a results CSV")
    return list(csv.DictReader(_stdio.StringIO(text, newline="")))


@contextmanager
def damaged(path: Path, command: str) -> Iterator[None]:
    """Turn any error reading a results file (CSV, JSON) into one UsageError line naming the file and the fix."""
    try:
        yield
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError, csv.Error) as exc:
        what = f"missing column {exc}" if isinstance(exc, KeyError) else " ".join(str(exc).split())
        raise UsageError(f"{path} is damaged or empty ({what}); regenerate it with {command}") from None


def relu_stats(run: RunRecord) -> dict | None:
    """The run's ``relu_stats.json`` (None when absent); a damaged one is one UsageError line naming it."""
    path = run.run_dir / "relu_stats.json"
    if not path.exists():
        return None
    with damaged(path, "manifold-lab run with the study's spec (--force for this run)"):
        data = json.loads(io.read_text(path, what="a run's relu_stats.json"))
        if not isinstance(data, dict):
            raise ValueError(f"expected a mapping, got {type(data).__name__}")
        for when in ("step0", "final"):  # each a list of layers {"name": str, "mean": number, ...}
            layers = data.get(when, [])
            if not isinstance(layers, list) or not all(
                    isinstance(layer, dict) and isinstance(layer.get("name"), str)
                    and isinstance(layer.get("mean"), (int, float)) for layer in layers):
                raise ValueError(f"'{when}' is not a list of layers with a name and a mean")
    return data


def probe_records(run: RunRecord) -> dict | None:
    """The run's ``probe.json`` as ``{"step0" | "final": {block name: record}}`` (None when absent; the
    records as ``manifold_lab.probe`` writes them); a damaged one is one UsageError line naming it."""
    path = run.run_dir / "probe.json"
    if not path.exists():
        return None
    with damaged(path, "manifold-lab run with the study's spec (--force for this run)"):
        data = json.loads(io.read_text(path, what="a run's probe.json"))
        return {when: {rec["name"]: rec for rec in data[when]["records"]} for when in ("step0", "final")}


def old_sample(run: RunRecord) -> bool:
    """True when a run's Figure 7 statistics predate issue 11 (no class-balanced ``sample`` recorded)."""
    data = relu_stats(run)
    return data is not None and "sample" not in data
