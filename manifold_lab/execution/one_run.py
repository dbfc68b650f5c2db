"""One run of a sweep: its lock, its folder's files, its log and provenance, its outcome.

``execute_run(kind, run, root, name)`` takes the run's lock, marks it started
(``config.yaml``, ``status.json``), reads its provenance *as it starts* (so the commit
recorded is the code that ran), calls the kind, and records the outcome: ``done``,
``diverged`` (the kind said so) or ``failed`` (it raised, returned a non-dict or a
non-finite metric), with a one-line error (the traceback goes to ``run.log``).
``manifold_lab.execution.batch`` executes several runs as one group with the same pieces.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from manifold_lab import io
from manifold_lab.errors import UsageError
from manifold_lab.execution import provenance
from manifold_lab.execution.store import ResultsStore
from manifold_lab.execution.workers import _one_line
from manifold_lab.kinds import Kind, RunContext
from manifold_lab.spec.bounds import first_non_finite
from manifold_lab.spec.sources import dotted
from manifold_lab.spec.sweep import PlannedRun

#: Seconds a run lock held by a dead or orphaned worker (of a killed runner) is waited for.
STALE_LOCK_WAIT = 15.0

def to_jsonable(value: Any) -> Any:
    """Metrics as plain JSON types (numpy scalars and arrays, tuples, paths converted)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return to_jsonable(value.tolist())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"metric of type {type(value).__name__} is not JSON-serializable")


def check_metrics(raw: Any) -> tuple[str, dict, str | None]:
    """``(status, metrics, error)`` from what a kind's ``run`` returned."""
    if not isinstance(raw, dict):
        return "failed", {}, f"run() returned {type(raw).__name__}, expected a dict of metrics"
    metrics = to_jsonable(raw)
    status = metrics.pop("status", "done")
    if status == "diverged":
        return "diverged", metrics, str(metrics.get("error") or "diverged")
    if status != "done":
        return "failed", metrics, f"run() returned status {status!r}; allowed: 'done', 'diverged'"
    bad = first_non_finite(metrics, ("metric",))
    if bad:
        return "failed", metrics, f"{dotted(bad[0])} is {bad[1]} (a non-finite metric marks the run failed)"
    return "done", metrics, None


def _run_logger(run_dir: Path, run_id: str) -> tuple[logging.Logger, logging.Handler]:
    log = logging.getLogger(f"manifold_lab.run.{run_id}")
    log.setLevel(logging.INFO)
    log.propagate = False
    fd = io.open_nofollow(run_dir / "run.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    handler = logging.StreamHandler(open(fd, "w", encoding="utf-8"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    return log, handler


def close_logger(log: logging.Logger, handler: logging.Handler) -> None:
    log.removeHandler(handler)
    handler.close()
    with contextlib.suppress(OSError):  # the last lines not flushed (a full disk): the outcome is still recorded
        handler.stream.close()


def run_config(kind: Kind, run: PlannedRun, name: str) -> dict:
    """A run folder's ``config.yaml``: the experiment, kind, run id, seed, sweep values and parameters."""
    return {"experiment": name, "kind": kind.name, "run_id": run.run_id, "seed": run.seed,
            "sweep_values": run.sweep_values, "params": run.params}


def start_provenance(run: PlannedRun, **extra) -> dict:
    """The run's provenance read when it starts (versions, the commit and dirty flag of the code that
    runs, host, device, threads, command), with ``extra`` entries; ``write_provenance`` adds the end."""
    return {**provenance.collect(run.params), **extra, "started": provenance.now(), "_start": time.perf_counter()}


def write_provenance(run_dir: Path, record: dict) -> None:
    record = {k: v for k, v in record.items() if k != "_start"}
    io.write_json(run_dir / provenance.FILE, {**record, "finished": provenance.now()})


def failure_line(exc: BaseException, run_dir: Path) -> str:
    """The one-line error of a run that raised ``exc``: a full disk says so and names the folder."""
    return io.disk_full(exc, run_dir) or _one_line(exc)


def finish_run(store: ResultsStore, run_id: str, run_dir: Path, record: dict, status: str, metrics: dict,
               error: str | None, log: logging.Logger, handler: logging.Handler,
               note: str = "") -> tuple[str, str | None]:
    """Log the outcome and its seconds (``note`` after them) and close the run's log; write the run's
    ``provenance.json`` and its outcome (``store.finish``); return ``(status, error)``.

    When that bookkeeping raises (a metric that cannot be written, a full disk), the run is
    recorded ``failed`` with the reason, never left ``running``. If even that write fails, the
    ``UsageError`` says why; the run's ``status.json`` then names a writer that is gone, so the
    run counts as not run and the next ``run`` does it again.
    """
    seconds = time.perf_counter() - record.pop("_start")
    log.info("%s in %.2f s%s%s", status, seconds, note, f": {error}" if error else "")
    close_logger(log, handler)
    try:
        write_provenance(run_dir, record)
        store.finish(run_id, status, metrics, error, seconds)
        return status, error
    except Exception as exc:  # noqa: BLE001 - any failure of the bookkeeping fails the run
        error = f"recording the outcome failed: {failure_line(exc, run_dir)}"
    try:
        store.finish(run_id, "failed", {}, error, seconds)
    except OSError as again:
        raise UsageError(io.disk_full(again, run_dir) or f"{error}; then {_one_line(again)}") from None
    return "failed", error


def execute_run(kind: Kind, run: PlannedRun, root: str | os.PathLike, name: str, show_progress: bool = False,
                fresh: bool = False) -> tuple[str, str | None]:
    """Execute one run into its folder; return ``(status, error)``. Never raises for run errors.

    ``fresh`` (``--force``) starts from an empty run folder: no checkpoint is resumed.
    Raises ``UsageError`` when the run is locked by a live process or a link is found.
    """
    store = ResultsStore(root)
    with store.lock_run(run.run_id, wait_stale=STALE_LOCK_WAIT):
        run_dir = store.begin(run.run_id, run_config(kind, run, name), fresh=fresh)
        log, handler = _run_logger(run_dir, run.run_id)
        record = start_provenance(run)
        try:
            log.info("run %s: kind %s, seed %d, %s", run.run_id, kind.name, run.seed, run.sweep_values)
            ctx = RunContext(run_dir=run_dir, seed=run.seed, log=log, show_progress=show_progress)
            params = kind.params.model_validate(run.params)
            status, metrics, error = check_metrics(kind.run(params, run.seed, ctx))
        except (Exception, SystemExit) as exc:  # any error of a run is recorded, the sweep goes on
            log.exception("run failed")
            status, metrics, error = "failed", {}, failure_line(exc, run_dir)
        return finish_run(store, run.run_id, run_dir, record, status, metrics, error, log, handler)


