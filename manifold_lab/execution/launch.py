"""Launch a sweep's pending runs through submitit: a Slurm job array, or local processes.

``manifold-lab run X.yaml --launcher slurm`` plans the sweep, writes the plan
(``spec.yaml``, ``plan.json``) under the results folder's lock, and submits the
runs that are not done as **one Slurm job array** (submitit's
``SlurmExecutor``, the engine behind Hydra's Slurm launcher): array task ``i``
executes one planned run through the runner's single-run path
(``manifold_lab.execution.runner.execute_run``: the run's lock, its files, its
resume from ``checkpoint.pt``). It prints the job id and the log folder and
returns; ``--wait`` waits for the array and writes the report. Rerunning the
command submits only what is still not done; ``manifold-lab report DIR``
aggregates whatever has finished.

``--launcher local`` takes the same path through submitit's ``LocalExecutor``:
each run is a real subprocess started from the same pickled task, with the same
log folder and result collection, at most ``--jobs`` at a time; it always waits
and writes the report.

Preemption and time limits: every task is a ``RunTask`` (``manifold_lab.execution.run_task``),
requeued by submitit on Slurm's warning signal (at most ``max_requeues`` times after a
timeout); the requeued task resumes the run from its last epoch's checkpoint.

Several GPUs per run (``gpus_per_run: G > 1``): the job gets ``G`` tasks on one
node, one per GPU; submitit's ``TorchDistributedEnvironment`` exports
``RANK``/``LOCAL_RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT`` as
``torchrun`` would, and the trainer joins the process group
(``manifold_lab.train.distributed``). Rank 0 owns the run's files.

The ``launcher:`` section of a spec configures the jobs (``manifold_lab.spec.launcher``).

Files: ``<results>/submitit/`` holds submitit's submission script
(``<job id>_submission.sh``), pickled tasks and results, the logs
(``<job id>_<task>_log.out`` / ``.err``) and ``submissions.jsonl`` (one line per
submission: job id, time, runs, parameters).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import submitit

from manifold_lab.execution.run_task import RunTask
from manifold_lab.execution.runner import ReportWriter
from manifold_lab.spec.launcher import LauncherConfig

__all__ = ["LAUNCHERS", "LaunchSummary", "LauncherConfig", "RunTask", "launch"]

LAUNCHERS = ("slurm", "local")
#: Kinds whose ``run`` joins a torch.distributed process group (``gpus_per_run > 1``).
DISTRIBUTED_KINDS = ("mobilenetv2",)
LOG_FOLDER = "submitit"
#: ``--launcher local`` without ``launcher.timeout_min``: 30 days.
LOCAL_TIMEOUT_MIN = 30 * 24 * 60


@dataclass
class LaunchSummary:
    """What one launch did."""

    planned: int = 0
    submitted: int = 0
    skipped: int = 0
    reused: int = 0
    job_id: str | None = None
    folder: Path | None = None
    waited: bool = False
    done: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    report_error: str | None = None

    def line(self, name: str) -> str:
        text = f"{name}: {self.planned} runs: {self.submitted} submitted, {self.skipped} already done"
        if self.reused:
            text += f", {self.reused} reused"
        if self.waited and self.submitted:
            text += f"; {self.done} done, {len(self.failed)} failed"
        return text


# --------------------------------------------------------------------------- the executor


def slurm_available() -> bool:
    """Whether Slurm's ``srun`` and ``sbatch`` are on PATH (submitit needs both)."""
    import shutil

    return shutil.which("srun") is not None and shutil.which("sbatch") is not None


def _no_slurm() -> str:
    return ("--launcher slurm: no Slurm on this machine (srun and sbatch not found on PATH); "
            "submit from the cluster's login node, or use --launcher local")


def build_executor(launcher: str, folder: Path, cfg: LauncherConfig, name: str, n_runs: int):
    """A configured submitit executor for ``launcher`` (``slurm`` or ``local``)."""
    from manifold_lab.errors import UsageError

    tasks = max(1, cfg.gpus_per_run)
    common: dict[str, Any] = dict(name=f"ml-{name}", timeout_min=cfg.timeout_min, tasks_per_node=tasks, nodes=1)
    if cfg.gpus_per_run:
        common["gpus_per_node"] = cfg.gpus_per_run
    if launcher == "local":
        if "timeout_min" not in cfg.model_fields_set:  # no scheduler limit here: a CPU run may take days
            common["timeout_min"] = LOCAL_TIMEOUT_MIN
        executor = submitit.AutoExecutor(folder, cluster="local", local_max_num_timeout=cfg.max_requeues)
        executor.update_parameters(**common)
        if cfg.setup:
            executor.update_parameters(local_setup=list(cfg.setup))
        return executor
    if not slurm_available():
        raise UsageError(_no_slurm())
    executor = submitit.AutoExecutor(folder, cluster="slurm", slurm_max_num_timeout=cfg.max_requeues)
    slurm: dict[str, Any] = {
        "slurm_signal_delay_s": cfg.signal_delay_s,
        "slurm_array_parallelism": min(cfg.array_parallelism or n_runs, n_runs),
    }
    if cfg.cpus_per_run:
        common["cpus_per_task"] = max(1, cfg.cpus_per_run // tasks)
    if cfg.mem_gb:
        common["mem_gb"] = cfg.mem_gb
    if cfg.partition:
        slurm["slurm_partition"] = cfg.partition
    if cfg.sbatch:
        slurm["slurm_additional_parameters"] = {k.replace("_", "-"): v for k, v in cfg.sbatch.items()}
    if cfg.setup:
        slurm["slurm_setup"] = list(cfg.setup)
    executor.update_parameters(**common, **slurm)
    return executor


# --------------------------------------------------------------------------- launch


def _record_submission(folder: Path, job_id: str, launcher: str, runs: list, cfg: LauncherConfig) -> None:
    from manifold_lab import io

    path = folder / "submissions.jsonl"
    old = path.read_text(encoding="utf-8") if path.is_file() and not path.is_symlink() else ""
    line = json.dumps({"job_id": job_id, "launcher": launcher, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                       "runs": [[r.index, r.run_id] for r in runs], "launcher_config": cfg.model_dump()})
    io.write_text(path, old + line + "\n")


def _collect(job, run, summary: LaunchSummary) -> None:
    """Count the outcome of a finished job; a job that died (killed, out of requeues) counts as failed."""
    try:
        out = job.results()[0]  # rank 0's (a run with several GPUs is one task per GPU)
        status, error = out["status"], out["error"]
    except Exception as exc:  # noqa: BLE001 - submitit's FailedJobError, UncompletedJobError...
        status, error = "failed", " ".join(f"job {job.job_id} did not finish: {exc}".split())[:300]
    if status in ("done", "skipped"):
        summary.done += 1
    else:
        summary.failed.append((run.run_id, error or status))


def _wait_local(executor, tasks: list, runs: list, jobs: int, summary: LaunchSummary) -> str:
    """Submit the tasks to the local executor, at most ``jobs`` running; wait for all."""
    from manifold_lab.execution.workers import terminate_on_signals

    pending = list(zip(tasks, runs))
    running: list = []
    first_id = None
    with terminate_on_signals():
        try:
            while pending or running:
                while pending and len(running) < jobs:
                    task, run = pending.pop(0)
                    job = executor.submit(task)
                    first_id = first_id or job.job_id
                    print(f"run {run.index} ({run.run_id}): local job {job.job_id}", flush=True)
                    running.append((job, run))
                for job, run in [j for j in running if j[0].done()]:
                    running.remove((job, run))
                    _collect(job, run, summary)
                time.sleep(0.2)
        finally:  # a stopped launcher takes its jobs with it (a killed one: RunTask.watch_pid)
            for job, _ in running:
                job.cancel(check=False)
    return first_id or ""


def _submit_array(executor, tasks: list) -> list:
    """Submit ``tasks`` as one job array; a refusal of ``sbatch`` becomes one UsageError line."""
    import contextlib
    import io as _stdio

    from manifold_lab.errors import UsageError

    try:
        with contextlib.redirect_stderr(_stdio.StringIO()):  # submitit prints sbatch's stderr too
            with executor.batch():
                jobs = [executor.submit(t) for t in tasks]
    except (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise UsageError(f"sbatch refused the submission: {lines[0] if lines else type(exc).__name__}; "
                         "check the launcher: settings (partition, account, time limit...)") from None
    # submitit leaves a link from the submission script's temporary name to its final one; a
    # results folder holds no link (manifold_lab.io.check_tree), and nothing reads that name.
    for link in Path(executor.folder).glob(".submission_file_*.sh"):
        if link.is_symlink():
            link.unlink()
    return jobs


def launch(spec, launcher: str, *, out: str | os.PathLike | None = None, wait: bool = False, jobs: int = 1,
           force: bool = False, reference: bool = False, replace: bool = False,
           report: ReportWriter | None = None) -> LaunchSummary:
    """Submit the pending runs of ``spec`` through submitit (see the module docstring).

    Parameters
    ----------
    spec : Spec
        A validated spec; its ``launcher`` section configures the jobs.
    launcher : {"slurm", "local"}
    out : path, optional
        Results folder instead of ``spec.output``.
    wait : bool
        Wait for the jobs, then write the report with ``report`` (always for ``local``).
    jobs : int
        ``local``: runs at a time.
    force : bool
        Submit completed runs too (they start from scratch).
    reference : bool
        Write the committed reference results (``spec.reference``) instead of ``out``.
    replace : bool
        Take over a results folder that holds another experiment (``check_owner``).
    report : ReportWriter, optional
        Writes the report once the jobs are waited for (``manifold_lab.execution.runner.ReportWriter``).
    """
    from manifold_lab.errors import UsageError
    from manifold_lab.execution import provenance
    from manifold_lab.execution.ownership import check_owner
    from manifold_lab.execution.runner import check_plan, command_line, pending_runs, reuse_sources
    from manifold_lab.spec.sources import display_path
    from manifold_lab.execution.store import ResultsStore
    from manifold_lab.spec.sweep import plan

    if launcher not in LAUNCHERS:
        raise UsageError(f"--launcher {launcher!r}: expected one of {', '.join(LAUNCHERS)}")
    if jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {jobs}")
    cfg: LauncherConfig = spec.launcher if spec.launcher is not None else LauncherConfig()
    if launcher == "slurm" and not slurm_available():  # before anything is written
        raise UsageError(_no_slurm())
    if cfg.gpus_per_run > 1 and spec.kind.name not in DISTRIBUTED_KINDS:
        raise UsageError(f"launcher.gpus_per_run={cfg.gpus_per_run}: only kinds {', '.join(DISTRIBUTED_KINDS)} "
                         f"use several GPUs per run; kind {spec.kind.name!r} needs gpus_per_run 0 or 1")
    runs = plan(spec)
    check_plan(runs)
    if reference:
        out = spec.reference
    store = ResultsStore(out if out is not None else spec.output)
    root = store.root.resolve()
    folder = Path(cfg.folder) if cfg.folder else root / LOG_FOLDER
    summary = LaunchSummary(planned=len(runs), folder=folder)
    others = reuse_sources(spec, store.root) if not force else []
    for results in (store, *others):  # before anything is written
        results.check_links()
    with store.lock():  # alone in the folder while planning, as a whole-experiment runner
        store.check_links()
        check_owner(store.root, spec.name, spec.kind.name, spec.source, replace=replace)
        store.remove_temporaries()
        store.write_plan(spec.resolved(), command_line(spec, None if reference else out, reference),
                         [asdict(r) for r in runs])
        todo = pending_runs(store, runs, force, summary, others)
    if todo:
        executor = build_executor(launcher, folder, cfg, spec.name, len(todo))
        watch = os.getpid() if launcher == "local" else None
        tasks = [RunTask(spec.kind.name, asdict(r), str(root), spec.name, os.getcwd(), max(1, cfg.gpus_per_run),
                         fresh=force, watch_pid=watch, command=provenance.command()) for r in todo]
        summary.submitted = len(todo)
        if launcher == "local":
            summary.waited = True
            summary.job_id = _wait_local(executor, tasks, todo, jobs, summary)
        else:
            submitted = _submit_array(executor, tasks)
            summary.job_id = submitted[0].job_id.split("_")[0]
            shown = display_path(folder)
            if len(todo) == 1:  # submitit submits a single task as a plain job, not an array
                print(f"submitted 1 run as Slurm job {summary.job_id}", flush=True)
                print(f"logs: {shown}/{summary.job_id}_0_log.out (and .err)", flush=True)
            else:
                print(f"submitted {len(todo)} runs as Slurm job array {summary.job_id} "
                      f"(at most {min(cfg.array_parallelism or len(todo), len(todo))} at a time)", flush=True)
                print(f"logs: {shown}/{summary.job_id}_<array index>_0_log.out (and .err)", flush=True)
            if wait:
                summary.waited = True
                for job, run in zip(submitted, todo):
                    job.wait()
                    _collect(job, run, summary)
        _record_submission(folder, summary.job_id or "", launcher, todo, cfg)
    else:
        summary.waited = True
    if summary.waited and report is not None:
        with store.lock():
            _, summary.report_error = report(store.root, kind=spec.kind)
    return summary
