"""Tidy tables of a study: ``curves.csv`` (every curve, long form) and ``finals.csv`` (one row per run).

Written into the results folder with the report (``write_tables(root)``, called by
``manifold_lab.reporting.report.write_report``), from the files alone, so that a
pandas or R user reads two CSV files instead of walking JSON::

    import pandas as pd
    curves = pd.read_csv("results/<name>/curves.csv")       # one row per run x epoch x metric
    finals = pd.read_csv("results/<name>/finals.csv")       # one row per planned run

``curves.csv`` (long form)
    ``study, run_id, <factor>..., seed, epoch, metric, value``: one row per
    finished run (done, failed or diverged), epoch and numeric metric. The
    source is the run's per-epoch log ``metrics.jsonl`` (the trainer's: train/test
    loss and accuracy, lr, images/s, seconds); a run without one contributes its
    list-valued metrics named ``curve_<metric>`` (entry ``i`` is epoch ``i + 1``).
    Runs in plan order, epochs ascending, metrics in the order they first appear.
``finals.csv`` (wide form)
    ``study, run_id, <factor>..., seed, status, <metric>..., error``: one row per
    planned run, in plan order; ``status`` is ``done``, ``failed``, ``diverged``
    or ``not run``; one column per numeric scalar final metric (``metrics.json``;
    a failed run's partial metrics from ``status.json``), the union over runs in
    first-seen order, empty where a run has no value.

``<factor>`` columns are the swept parameters (dotted paths, spec order); a value
that is a list or mapping is written as compact JSON. Floats are written with
full precision (``repr``), as in the report's CSV files. Both files are written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from manifold_lab import io
from manifold_lab.execution.store import ResultsStore
from manifold_lab.reporting.cells import to_csv

__all__ = ["CURVES_FILE", "FINALS_FILE", "curve_rows", "final_rows", "write_tables"]

CURVES_FILE = "curves.csv"
FINALS_FILE = "finals.csv"
CURVE_PREFIX = "curve_"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _epoch_log(run_dir: Path) -> list[dict]:
    """The lines of ``metrics.jsonl`` that are mappings with an integer ``epoch`` (others are skipped)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in io.read_text(path, what="a run's metrics.jsonl").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        if isinstance(row, dict) and isinstance(row.get("epoch"), int) and not isinstance(row["epoch"], bool):
            rows.append(row)
    return rows


def curve_rows(record) -> list[tuple[int, str, float]]:
    """``(epoch, metric, value)`` of one finished run (``RunRecord``); see the module docstring."""
    log = _epoch_log(record.run_dir)
    if log:
        return [(row["epoch"], k, v) for row in log for k, v in row.items() if k != "epoch" and _is_number(v)]
    out = [(i + 1, key[len(CURVE_PREFIX):], v) for key, values in record.metrics.items()
           if key.startswith(CURVE_PREFIX) and isinstance(values, list) for i, v in enumerate(values) if _is_number(v)]
    return sorted(out, key=lambda row: row[0])  # stable: metrics keep their order within an epoch


def _run_cells(study: str, run: dict, factors: list[str]) -> dict:
    return {"study": study, "run_id": run["run_id"], "seed": run["seed"],
            **{f: run["sweep_values"].get(f) for f in factors}}


def final_rows(study: str, plan: list[dict], records: list, factors: list[str]) -> tuple[list[dict], list[str]]:
    """The rows of ``finals.csv`` and its metric columns."""
    metrics = dict.fromkeys(k for r in records if r is not None for k, v in r.metrics.items() if _is_number(v))
    rows = []
    for run, record in zip(plan, records):
        row = {**_run_cells(study, run, factors), "status": record.status if record is not None else "not run"}
        if record is not None:
            row.update({k: v for k, v in record.metrics.items() if _is_number(v)}, error=record.error)
        rows.append(row)
    return rows, list(metrics)


def write_tables(root: str | Path, out: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``curves.csv`` and ``finals.csv`` of the results folder ``root`` into ``out`` (default ``root``);
    return their paths."""
    store = ResultsStore(root)
    out = store.root if out is None else Path(out)
    spec = store.read_spec()
    study, plan = spec["name"], spec["runs"]
    factors = [k for k in (spec.get("sweep") or {}) if k != "seeds"]
    records = [store.record(run) for run in plan]

    curve_columns = ["study", "run_id", *factors, "seed", "epoch", "metric", "value"]
    curves = [{**_run_cells(study, run, factors), "epoch": epoch, "metric": metric, "value": value}
              for run, record in zip(plan, records) if record is not None
              for epoch, metric, value in curve_rows(record)]
    curves_path = io.write_text(out / CURVES_FILE, to_csv(curves, curve_columns))
    rows, metrics = final_rows(study, plan, records, factors)
    final_columns = ["study", "run_id", *factors, "seed", "status", *metrics, "error"]
    finals_path = io.write_text(out / FINALS_FILE, to_csv(rows, final_columns))
    return curves_path, finals_path
