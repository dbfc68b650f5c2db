"""The runner: execute the planned runs of a spec, resumably, in one or N processes.

``run_experiment(spec, ...)`` refuses a results folder holding a symbolic
link, takes its lock, removes the temporaries of writes cut short by a kill,
writes the plan (``spec.yaml``, ``plan.json``), skips the complete runs and
executes the others, each in a worker process (``jobs`` at a time,
``manifold_lab.execution.workers``) that ends with the runner. Each outcome is
recorded as ``manifold_lab.execution.one_run`` says; a run whose worker dies (a
native abort) is ``failed`` too. The sweep always goes on. SIGTERM and SIGHUP end
the runner like Ctrl-C: its workers are terminated, their runs are done again
by the next invocation. See ``manifold_lab.execution.store`` for the files.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from manifold_lab.errors import UsageError
from manifold_lab.execution import provenance
from manifold_lab.execution.batch import execute_batch, group_runs
from manifold_lab.execution.one_run import STALE_LOCK_WAIT, check_metrics, execute_run, to_jsonable
from manifold_lab.execution.ownership import check_owner
from manifold_lab.execution.progress import RunProgress
from manifold_lab.execution.store import ResultsStore
from manifold_lab.execution.workers import DIED, run_in_workers, terminate_on_signals
from manifold_lab.spec.load import Spec
from manifold_lab.spec.sources import display_path
from manifold_lab.spec.sweep import PlannedRun, format_values, plan, run_indices

__all__ = ["ReportWriter", "RunSummary", "check_metrics", "check_plan", "execute_run", "pending_runs", "run_experiment",
           "to_jsonable"]

#: Writes a results folder's report after its runs, under the folder's lock:
#: ``report(root, kind=kind) -> (path, error of the kind's report hook or None)``
#: (``manifold_lab.reporting.report.write_report``; passed in by the caller, so that
#: execution never imports the reporting).
ReportWriter = Callable[..., "tuple[Path, str | None]"]

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: The most runs one seed-batched task trains together (``--batch-runs``).
MAX_BATCH_RUNS = 64


@dataclass
class RunSummary:
    """What one invocation did."""

    planned: int = 0
    done: int = 0
    skipped: int = 0
    reused: int = 0  # copied from another experiment's results (spec key ``reuse``)
    deferred: int = 0  # pending runs the caller's ``select`` left for later (a suite's gate)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run_id, error)
    report_error: str | None = None  # the kind's report hook failed

    def line(self, name: str) -> str:
        return (f"{name}: {self.planned} runs: {self.done} done, {self.skipped} skipped, "
                + (f"{self.reused} reused, " if self.reused else "") + f"{len(self.failed)} failed"
                + (f", {self.deferred} left for later" if self.deferred else ""))


# --------------------------------------------------------------------------- the sweep


def check_plan(runs: list[PlannedRun]) -> None:
    """Two grid points resolving to the same parameters would share a run folder."""
    seen: dict[str, PlannedRun] = {}
    for run in runs:
        if (other := seen.setdefault(run.run_id, run)) is not run:
            raise UsageError(f"sweep points {other.sweep_values} and {run.sweep_values} resolve to the same "
                             "parameters; remove the repeated value")


def command_line(spec: Spec, out: str | os.PathLike | None, reference: bool = False, batch_runs: int = 1) -> str:
    """The command that regenerates these results (as a user would type it, quoted): with ``--out`` the
    folder written (``spec.output`` when ``out`` is None), unless ``reference``."""
    words = ["manifold-lab", "run", display_path(spec.source) if spec.source else "SPEC", *spec.overrides]
    if reference:
        words += ["--reference"]
    if spec.no_reuse:
        words += ["--no-reuse"]
    if spec.runs:
        words += ["--runs", spec.runs]
    if batch_runs > 1:
        words += ["--batch-runs", str(batch_runs)]
    if not reference:
        words += ["--out", display_path(Path(out if out is not None else spec.output))]
    return shlex.join(words)


def pending_runs(store: ResultsStore, selected: list[PlannedRun], force: bool, summary,
                 others: list[ResultsStore] = ()) -> list[PlannedRun]:
    """The runs of ``selected`` still to execute: not complete (all with ``force``), not in ``others``.

    Copies the runs that a results folder of ``others`` (``spec.reuse``) completed; sets
    ``summary.skipped`` and ``summary.reused``. Call it holding the results folder's lock.
    """
    todo = [r for r in selected if force or not store.is_complete(r.run_id)]
    summary.skipped = len(selected) - len(todo)
    if others:
        reused = {r.run_id for r in todo if any(store.copy_run_from(o, r.run_id) for o in others)}
        summary.reused = len(reused)
        todo = [r for r in todo if r.run_id not in reused]
    return todo


def chosen(spec: Spec, store: ResultsStore, pending: list[PlannedRun], summary, select=None) -> list[PlannedRun]:
    """The runs of ``pending`` this invocation starts: those of ``spec.runs`` (``run --runs``: all without it),
    then what the caller's ``select`` keeps (a suite's gate, a campaign's group). Of the others,
    ``summary.deferred`` counts those not complete (left for later), ``summary.skipped`` the complete ones
    (``--force`` puts them in ``pending``)."""
    todo = pending
    if spec.runs:
        indices = run_indices(spec.runs, len(spec.points) * len(spec.seeds))
        todo = [r for r in todo if r.index in indices]
    todo = todo if select is None else select(todo)
    ids = {r.run_id for r in todo}
    left = [r for r in pending if r.run_id not in ids]
    summary.deferred = sum(not store.is_complete(r.run_id) for r in left)
    summary.skipped += len(left) - summary.deferred
    return todo


def results_folders(spec: Spec, out: str | os.PathLike | None, reference: bool,
                    force: bool) -> tuple[ResultsStore, list[ResultsStore]]:
    """The results folder (``spec.reference`` with ``reference``, else ``out`` or ``spec.output``) and the folders
    ``reuse:`` copies from (none with ``force``); a link in any of them is refused before anything is written."""
    out = spec.reference if reference else out
    store = ResultsStore(out if out is not None else spec.output)
    others = reuse_sources(spec, store.root) if not force else []
    for folder in (store, *others):
        folder.check_links()
    return store, others


def reuse_sources(spec: Spec, root: Path) -> list[ResultsStore]:
    """Where ``reuse:`` looks: each listed folder, then the folder of the same name next to ``root``.

    ``reuse: [results/figure6a]`` thus copies from the committed reference results
    and, for a user's run into ``runs/figure6b``, from the user's own ``runs/figure6a``.
    """
    folders = []
    for folder in spec.reuse:
        for candidate in (Path(folder), root.parent / Path(folder).name):
            if candidate.resolve() != root.resolve() and candidate not in folders:
                folders.append(candidate)
    return [ResultsStore(folder) for folder in folders]


def run_experiment(
    spec: Spec,
    *,
    out: str | os.PathLike | None = None,
    jobs: int = 1,
    run_index: int | None = None,
    force: bool = False,
    report: ReportWriter | None = None,
    replace: bool = False,
    reference: bool = False,
    batch_runs: int = 1,
    select: Callable[[list[PlannedRun]], list[PlannedRun]] | None = None,
) -> RunSummary:
    """Run (or resume) the experiment; then write the report with ``report`` unless ``run_index`` is given.

    Parameters
    ----------
    spec : Spec
        A validated spec (``load_spec``).
    out : path, optional
        Results folder instead of ``spec.output``.
    jobs : int
        Runs executed at a time (separate processes when > 1).
    run_index : int, optional
        Execute only this run of the plan (for cluster array jobs).
    force : bool
        Redo completed runs too.
    report : ReportWriter, optional
        Writes the report after the runs (``summary.csv``, ``comparisons.csv``, ``report.md``); None: no report.
    replace : bool
        Write into a folder that holds another experiment (``manifold_lab.execution.ownership``).
    reference : bool
        Write the committed reference results (``spec.reference``) instead of ``out``.
    batch_runs : int
        Train up to this many compatible runs together as one seed-batched network
        (``manifold_lab.execution.batch``; 1, the default: every run alone).
    select : callable, optional
        Picks the runs to execute now from the pending ones, in plan order (a campaign's time budget,
        ``manifold_lab.execution.campaign``); None: all of them.
    """
    if jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {jobs}")
    if not 1 <= batch_runs <= MAX_BATCH_RUNS:
        raise UsageError(f"--batch-runs must be in 1..{MAX_BATCH_RUNS}, got {batch_runs}")
    runs = plan(spec)
    check_plan(runs)
    if run_index is not None and not 0 <= run_index < len(runs):
        raise UsageError(f"--run-index {run_index} is out of range: the plan has runs 0..{len(runs) - 1}")
    store, others = results_folders(spec, out, reference, force)
    summary = RunSummary(planned=len(runs))
    selected = runs if run_index is None else [runs[run_index]]

    with store.lock(shared=run_index is not None), terminate_on_signals():
        store.check_links()
        check_owner(store.root, spec.name, spec.kind.name, spec.source, replace=replace)
        if run_index is None:  # alone in the folder: every temporary there is a leftover
            store.remove_temporaries()
        store.write_plan(spec.resolved(), command_line(spec, None if reference else out, reference, batch_runs),
                         [asdict(r) for r in runs])
        pending = pending_runs(store, selected, force, summary, others)
        todo = chosen(spec, store, pending, summary, select)
        # the runs ``select`` leaves for later are not this invocation's: neither to do nor complete
        total = len(selected) - (len(pending) - len(todo))
        _execute_all(spec, todo, store, jobs, summary, total=total, fresh=force, batch_runs=batch_runs)
        if report is not None and run_index is None:
            _, summary.report_error = report(store.root, kind=spec.kind)
    return summary


def _execute_all(spec: Spec, todo: list[PlannedRun], store: ResultsStore, jobs: int, summary: RunSummary, total: int,
                 fresh: bool = False, batch_runs: int = 1) -> None:
    """Execute ``todo``, ``jobs`` tasks at a time; a task is one run, or up to ``batch_runs`` runs trained
    together (``manifold_lab.execution.batch``)."""
    progress = RunProgress(spec.name, total, total - len(todo))
    groups = group_runs(spec.kind, todo, batch_runs)
    started: dict[int, float] = {}

    def start(index: int) -> None:
        group = groups[index]
        started[index] = time.monotonic()
        what = " + ".join(f"run {r.index}: seed={r.seed} {format_values(r.sweep_values)}" for r in group)
        progress.current(index, what + (f" ({len(group)} seed-batched)" if len(group) > 1 else ""))

    def note(index: int, payload: Any) -> None:  # an epoch of the task's run(s) (train.steps.Steps)
        progress.note(index, "run " + "+".join(str(r.index) for r in groups[index]), payload)

    def record_one(run: PlannedRun, ok: bool, value: Any, seconds: float | None, index: int) -> None:
        # not ok: the worker died in it, or could not start it (its lock is held, a link: its files are not touched)
        status, error = value if ok else ("failed", value)
        if not ok and value.startswith(DIED):  # a native abort: only this task's runs are lost
            try:
                with store.lock_run(run.run_id, wait_stale=STALE_LOCK_WAIT):
                    store.finish(run.run_id, status, {}, error, 0.0)
            except UsageError as exc:  # still held (by a child of the dead worker): leave its files
                error = f"{value}; {exc}"
        if status == "done":
            summary.done += 1
        else:
            summary.failed.append((run.run_id, error or status))
        progress.done(f"run {run.index} ({run.run_id})", status, seconds, error, key=index)

    def record(index: int, ok: bool, value: Any) -> None:
        seconds = time.monotonic() - started[index] if index in started else None
        for i, run in enumerate(groups[index]):
            record_one(run, ok, value[i] if ok else value, seconds, index)

    # N runs share the cores: keep each from starting one BLAS / torch thread per core.
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    env = {var: os.environ.get(var, threads) for var in _THREAD_VARS} if jobs > 1 else {}
    env[provenance.COMMAND_ENV] = provenance.command()  # each run's provenance names the parent's command
    jobs = min(jobs, max(len(groups), 1))
    inner = jobs == 1 and progress.tty  # the run's own bar, below the runner's: one run at a time only
    tasks = [(spec.kind, group, str(store.root), spec.name, inner, fresh) for group in groups]
    try:
        run_in_workers(execute_batch, tasks, jobs, record, env=env, on_start=start, on_note=note)
    finally:
        progress.close()
