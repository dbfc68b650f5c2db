"""Launch a sweep's pending runs through submitit: a Slurm job array, or local processes.

``manifold-lab run X.yaml --launcher slurm`` plans the sweep under the results
folder's lock, submits the runs that are not done as **one Slurm job array**
(submitit's ``SlurmExecutor``, the engine behind Hydra's Slurm launcher), then
writes the plan (``spec.yaml``, ``plan.json``). Array task ``i`` is a ``RunTask``
(``manifold_lab.execution.run_task``): one planned run, resumed from its last epoch's
checkpoint, requeued by submitit on Slurm's warning signal (at most ``max_requeues``
times after a timeout). It prints the job id and the log folder and returns; ``--wait``
waits for the array and writes the report. Rerunning the command submits only what is
still not done and not still queued or running in an earlier array of this experiment
(``squeue``; when it cannot answer, none of the runs an earlier array was given, unless
``--force``); ``manifold-lab report DIR`` aggregates whatever has finished.

``--launcher local`` takes the same path through submitit's ``LocalExecutor``:
each run is a real subprocess started from the same pickled task, with the same
log folder, at most ``--jobs`` at a time; it always waits and writes the report,
holding the results folder's lock from the plan to the report (no ``report`` or
``run`` takes the folder between two tasks). Ctrl-C stops the tasks and prints one
line; the runs resume on the next invocation.

What a run did is read from its run folder (``status.json`` and the digest of
``metrics.json``: ``ResultsStore.record``), never from submitit's result pickles:
the launcher unpickles nothing. Every submission gets a new folder of its own
(``<results>/submitit/<time>-<random>/``, created empty), so submitit's files that a
copied or cloned results folder brings along are never read by a job either.
``--wait`` asks ``squeue`` whether the job is still queued or running; once it is
not (or ``squeue`` cannot say: accounting off, a purged job), it goes on reading the
run folders for ``launcher.wait_grace_s`` seconds without news, then stops and
counts the runs that have not finished as failed.

Errors of a launcher setting (``sbatch`` refusing the submission, a missing
Slurm) come before ``spec.yaml`` and ``plan.json`` are written; folders the refused
launch created are removed.

Several GPUs per run (``gpus_per_run: G > 1``): the job gets ``G`` tasks on one
node, one per GPU; submitit's ``TorchDistributedEnvironment`` exports
``RANK``/``LOCAL_RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT`` as
``torchrun`` would, and the trainer joins the process group
(``manifold_lab.train.distributed``). Rank 0 owns the run's files.

The ``launcher:`` section of a spec configures the jobs (``manifold_lab.spec.launcher``).

Files: ``<results>/submitit/`` (``launcher.folder``) holds ``submissions.jsonl`` (one
line per submission: job id, folder, time, runs, launcher settings with credentials
redacted: ``provenance.redact``) and one folder per submission with submitit's
submission script (``<job id>_submission.sh``), pickled tasks and results, and the
logs (``<job id>_<task>_log.out`` / ``.err``; ``controllers.log``: the output of
``--launcher local``'s job controllers).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import submitit

from manifold_lab import io
from manifold_lab.errors import UsageError
from manifold_lab.execution import provenance
from manifold_lab.execution.ownership import check_owner
from manifold_lab.execution.run_task import RunTask
from manifold_lab.execution.runner import (ReportWriter, RunSummary, check_plan, chosen, command_line, pending_runs,
                                           results_folders)
from manifold_lab.execution.workers import terminate_on_signals
from manifold_lab.spec.launcher import LauncherConfig
from manifold_lab.spec.sources import display_path
from manifold_lab.spec.sweep import plan

__all__ = ["LAUNCHERS", "LaunchSummary", "LauncherConfig", "RunTask", "launch"]

LAUNCHERS = ("slurm", "local")
#: Kinds whose ``run`` joins a torch.distributed process group (``gpus_per_run > 1``).
DISTRIBUTED_KINDS = ("mobilenetv2",)
LOG_FOLDER = "submitit"
#: ``--launcher local`` without ``launcher.timeout_min``: 30 days.
LOCAL_TIMEOUT_MIN = 30 * 24 * 60


@dataclass
class LaunchSummary(RunSummary):
    """What one launch did: the runner's counts (``done`` and ``failed`` once waited for), and the submission."""

    submitted: int = 0
    queued: int = 0
    queued_known: bool = True  # squeue answered (else the queued runs are those that may still be queued)
    job_id: str | None = None
    folder: Path | None = None
    waited: bool = False

    def line(self, name: str) -> str:
        text = f"{name}: {self.planned} runs: {self.submitted} submitted, {self.skipped} already done"
        if self.reused:
            text += f", {self.reused} reused"
        if self.queued:
            text += (f", {self.queued} still queued or running in an earlier job" if self.queued_known else
                     f", {self.queued} possibly still queued in an earlier job (squeue did not answer)")
        if self.deferred:
            text += f", {self.deferred} left for later"
        if self.waited and self.submitted:
            text += f"; {self.done} done, {len(self.failed)} failed"
        return text


# --------------------------------------------------------------------------- the executor


def slurm_available() -> bool:
    """Whether Slurm's ``srun`` and ``sbatch`` are on PATH (submitit needs both)."""
    return shutil.which("srun") is not None and shutil.which("sbatch") is not None


def build_executor(launcher: str, folder: Path, cfg: LauncherConfig, name: str, n_runs: int):
    """A configured submitit executor for ``launcher`` (``slurm``: ``launch`` checked that it is here, or ``local``)."""
    tasks = max(1, cfg.gpus_per_run)
    params: dict[str, Any] = dict(name=f"ml-{name}", timeout_min=cfg.timeout_min, tasks_per_node=tasks, nodes=1)
    if cfg.gpus_per_run:
        params["gpus_per_node"] = cfg.gpus_per_run
    if cfg.setup:
        params[f"{launcher}_setup"] = list(cfg.setup)
    if launcher == "local":
        if "timeout_min" not in cfg.model_fields_set:  # no scheduler limit here: a CPU run may take days
            params["timeout_min"] = LOCAL_TIMEOUT_MIN
    else:
        params.update(slurm_signal_delay_s=cfg.signal_delay_s,
                      slurm_array_parallelism=min(cfg.array_parallelism or n_runs, n_runs))
        if cfg.cpus_per_run:
            params["cpus_per_task"] = max(1, cfg.cpus_per_run // tasks)
        if cfg.mem_gb:
            params["mem_gb"] = cfg.mem_gb
        if cfg.partition:
            params["slurm_partition"] = cfg.partition
        if cfg.sbatch:
            params["slurm_additional_parameters"] = {k.replace("_", "-"): v for k, v in cfg.sbatch.items()}
    executor = submitit.AutoExecutor(folder, cluster=launcher, **{f"{launcher}_max_num_timeout": cfg.max_requeues})
    executor.update_parameters(**params)
    return executor


# --------------------------------------------------------------------------- the scheduler and the run folders

#: squeue states of a job that is over (shown for a few minutes after its end); any other is queued or running.
FINISHED_STATES = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
                   "PREEMPTED", "REVOKED", "SPECIAL_EXIT", "TIMEOUT"}


def squeue(job_ids: list[str]) -> dict[tuple[str, int | None], str] | None:
    """This user's queued or running tasks of ``job_ids``, ``{(job id, array index or None): job name}``.

    From ``squeue`` (the controller's view: no accounting needed). None when squeue cannot say
    (not installed, an error, no answer in 60 s); ``{}`` when it lists none of them.
    """
    command = ["squeue", "--noheader", "--array", f"--user={getpass.getuser()}", f"--jobs={','.join(job_ids)}",
               "--format=%i|%j|%T"]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:  # every id unknown to the controller is an error, not an empty list
        return {} if "invalid job id" in out.stderr.lower() else None
    listed: dict[tuple[str, int | None], str] = {}
    for line in out.stdout.splitlines():
        ident, name, state = (line.strip().split("|") + ["", ""])[:3]
        job, _, task = ident.partition("_")  # --array: one line per array task, pending ones too
        if state.strip() and state.split()[0] not in FINISHED_STATES:
            listed[job, int(task) if task.isdigit() else None] = name
    return listed


def _submissions(folder: Path) -> list[dict]:
    """The Slurm submissions recorded in ``folder/submissions.jsonl`` (job id, runs); damaged lines skipped."""
    try:
        lines = io.read_bytes(folder / "submissions.jsonl", what="a submission log").decode("utf-8", "replace")
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for line in lines.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("launcher") == "slurm" \
                    and str(record.get("job_id", "")).isdigit() and isinstance(record.get("runs", []), list) \
                    and all(isinstance(r, list) and len(r) == 2 for r in record.get("runs", [])):
                out.append(record)
    return out


def queued_runs(folder: Path, name: str, force: bool = False,
                ended: Callable[[str], bool] = lambda run_id: False) -> tuple[dict[str, str], bool]:
    """``({run id: job id}, known)``: the runs that an earlier Slurm submission of experiment ``name`` recorded in
    ``folder`` still has queued or running (``squeue``; ``known`` True). When squeue cannot say (``known``
    False), every run an earlier submission of this experiment recorded whose folder shows no end (``ended``:
    failed, diverged), with a warning: submitting them again could run them twice (with ``force``: none, the
    user asked for every run)."""
    subs = [r for r in _submissions(folder) if r.get("experiment", name) == name]
    records = {r["job_id"]: r["runs"] for r in subs}
    listed = squeue(sorted(records)) if records else {}
    if listed is None:
        jobs = ", ".join(sorted(records, key=int))
        if force:
            print(f"warning: squeue cannot say whether job(s) {jobs} of this experiment are still queued; "
                  "--force submits their unfinished runs again", file=sys.stderr)
            return {}, False
        print(f"warning: squeue cannot say whether job(s) {jobs} of this experiment are still queued; their "
              "unfinished runs are not submitted again (rerun once squeue answers; --force submits them too, but "
              "also redoes every completed run)", file=sys.stderr)
        return {str(run[1]): job for job, runs in records.items() for run in runs if not ended(str(run[1]))}, False
    out = {}
    for (job, task), job_name in listed.items():
        runs = records.get(job, [])
        if job_name == f"ml-{name}" and (task or 0) < len(runs):
            out[str(runs[task or 0][1])] = job
    return out, True


def _ended(store, run_id: str) -> bool:
    """Whether run ``run_id``'s folder records an end that is not done (failed, diverged): no job runs it now."""
    with contextlib.suppress(OSError, ValueError):
        status = json.loads(io.read_bytes(store.run_dir(run_id) / "status.json", what="a run's status"))
        return isinstance(status, dict) and status.get("status") in ("failed", "diverged")
    return False


def _outcome(store, run) -> tuple[str, str | None] | None:
    """``(status, error)`` of a finished run as its folder records it (done, failed, diverged, damaged), or None."""
    try:
        record = store.record(asdict(run))
    except UsageError as exc:  # a link planted in the run folder
        return "damaged", str(exc)
    return (record.status, record.error) if record is not None else None


def _count(store, run, summary: LaunchSummary, job: str) -> None:
    """Count ``run`` as done or failed from its run folder once its job ``job`` has ended."""
    status, error = _outcome(store, run) or ("failed", f"{job} ended without finishing the run; see its log in "
                                                       f"{summary.folder}")
    if status == "done":
        summary.done += 1
    else:
        summary.failed.append((run.run_id, error or status))


def _wait_slurm(store, job_id: str, runs: list, grace_s: float, summary: LaunchSummary) -> None:
    """Wait until every run of ``runs`` has finished in its folder, or until ``squeue`` has not listed job
    ``job_id`` and no run has finished for ``grace_s`` seconds (accounting off, a purged job); then count them."""
    pause, news, finished = 0.5, time.monotonic(), 0
    while True:
        now = sum(_outcome(store, run) is not None for run in runs)
        if now == len(runs):
            break
        if now != finished or squeue([job_id]):
            news, finished = time.monotonic(), now
        elif time.monotonic() - news >= grace_s:
            print(f"Slurm does not list job {job_id} as queued or running (or squeue cannot say) and no run "
                  f"finished in {grace_s:g} s: {len(runs) - now} run(s) not finished, counted as failed; "
                  f"`manifold-lab report {store.root}` counts them once they finish", file=sys.stderr)
            break
        time.sleep(pause)
        pause = min(2 * pause, 30.0)
    for run in runs:
        _count(store, run, summary, f"job {job_id}")


# --------------------------------------------------------------------------- launch


def _first_missing(path: Path) -> Path | None:
    """The topmost folder of ``path`` (itself included) that does not exist yet, or None."""
    missing = None
    for parent in (path, *path.parents):
        if parent.exists():
            return missing
        missing = parent
    return missing


def _remove_new(sub: Path | None, root: Path, top: Path | None) -> None:
    """Undo a refused launch: its submission folder ``sub`` and, when it made ``root``, that folder and the
    empty ones above it up to ``top``, the topmost folder it made."""
    for path in filter(None, (sub, top and root)):
        shutil.rmtree(path, ignore_errors=True)
    while top is not None and root != top.parent:
        with contextlib.suppress(OSError):
            root.rmdir()
        root = root.parent


def _new_submission_folder(folder: Path) -> Path:
    """A new, empty folder for one submission's submitit files, ``folder/<time>-<random>/``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=folder))
    except OSError as exc:
        raise UsageError(f"launcher.folder: cannot make a submission folder in {folder} "
                         f"({exc.strerror or exc}); choose another folder") from None


def _record_submission(folder: Path, sub: Path, job_id: str, launcher: str, runs: list, cfg: LauncherConfig,
                       name: str) -> None:
    """Append one line to ``folder/submissions.jsonl`` (launcher settings redacted: ``provenance.redact``)."""
    line = json.dumps({"job_id": job_id, "experiment": name, "launcher": launcher, "folder": sub.name,
                       "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "runs": [[r.index, r.run_id] for r in runs],
                       "launcher_config": provenance.redact(cfg.model_dump())})
    fd = io.open_nofollow(folder / "submissions.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(line + "\n")


@contextlib.contextmanager
def _output_to(path: Path):
    """Send this process's stdout and stderr (file descriptors 1 and 2: what a child inherits) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
    try:
        os.dup2(log, 1)
        os.dup2(log, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, target in zip(saved, (1, 2)):
            os.dup2(fd, target)
            os.close(fd)
        os.close(log)


def _wait_local(executor, tasks: list, runs: list, jobs: int, store, summary: LaunchSummary) -> str:
    """Submit the tasks to the local executor, at most ``jobs`` running; wait for all, count each from its folder.

    The job controllers write to ``controllers.log`` of the submission folder, not to the terminal (on Ctrl-C
    they print submitit's traceback).
    """
    pending = list(zip(tasks, runs))
    running: list = []
    first_id = None
    with terminate_on_signals():
        try:
            while pending or running:
                while pending and len(running) < jobs:
                    task, run = pending.pop(0)
                    with _output_to(Path(executor.folder) / "controllers.log"):
                        job = executor.submit(task)
                    first_id = first_id or job.job_id
                    print(f"run {run.index} ({run.run_id}): local job {job.job_id}", flush=True)
                    running.append((job, run))
                for job, run in [j for j in running if j[0].done()]:  # the controller process has ended
                    running.remove((job, run))
                    _count(store, run, summary, f"local job {job.job_id}")
                time.sleep(0.2)
        finally:  # a stopped launcher takes its jobs with it (a killed one: RunTask.watch_pid)
            for job, _ in running:
                job.cancel(check=False)
    return first_id or ""


def _submit_array(executor, tasks: list) -> list:
    """Submit ``tasks`` as one job array; a refusal of ``sbatch`` becomes one UsageError line."""
    try:
        with contextlib.redirect_stderr(StringIO()):  # submitit prints sbatch's stderr too
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


def _print_submitted(summary: LaunchSummary, sub: Path, n: int, cfg: LauncherConfig) -> None:
    shown = display_path(sub)
    if n == 1:  # submitit submits a single task as a plain job, not an array
        print(f"submitted 1 run as Slurm job {summary.job_id}", flush=True)
        print(f"logs: {shown}/{summary.job_id}_0_log.out (and .err)", flush=True)
    else:
        print(f"submitted {n} runs as Slurm job array {summary.job_id} "
              f"(at most {min(cfg.array_parallelism or n, n)} at a time)", flush=True)
        print(f"logs: {shown}/{summary.job_id}_<array index>_0_log.out (and .err)", flush=True)


def launch(spec, launcher: str, *, out: str | os.PathLike | None = None, wait: bool = False, jobs: int = 1,
           force: bool = False, reference: bool = False, replace: bool = False,
           report: ReportWriter | None = None, select=None) -> LaunchSummary:
    """Submit the pending runs of ``spec`` (validated; its ``launcher`` section configures the jobs) through
    submitit, ``launcher`` ``slurm`` or ``local`` (see the module docstring).

    ``wait``: wait for the jobs, then write the report with ``report`` (always for ``local``); ``jobs``: runs at
    a time (``local``); ``force``: submit completed runs too (they start from scratch); ``out``, ``reference``,
    ``replace``, ``report`` and ``select`` (which pending runs go now: a suite's gates) as for ``run_experiment``.
    """
    if launcher not in LAUNCHERS:
        raise UsageError(f"--launcher {launcher!r}: expected one of {', '.join(LAUNCHERS)}")
    if jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {jobs}")
    cfg: LauncherConfig = spec.launcher if spec.launcher is not None else LauncherConfig()
    if launcher == "slurm" and not slurm_available():  # before anything is written
        raise UsageError("--launcher slurm: no Slurm on this machine (srun and sbatch not found on PATH); "
                         "submit from the cluster's login node, or use --launcher local")
    if cfg.gpus_per_run > 1 and spec.kind.name not in DISTRIBUTED_KINDS:
        raise UsageError(f"launcher.gpus_per_run={cfg.gpus_per_run}: only kinds {', '.join(DISTRIBUTED_KINDS)} "
                         f"use several GPUs per run; kind {spec.kind.name!r} needs gpus_per_run 0 or 1")
    runs = plan(spec)
    check_plan(runs)
    store, others = results_folders(spec, out, reference, force)
    root = store.root.resolve()
    folder = Path(cfg.folder) if cfg.folder else root / LOG_FOLDER
    summary = LaunchSummary(planned=len(runs), folder=folder)
    top = _first_missing(root)  # made by this launch: removed again if it is refused
    local = launcher == "local"
    with store.lock():  # alone in the folder: the whole sweep for local, until submitted for slurm
        store.check_links()
        check_owner(store.root, spec.name, spec.kind.name, spec.source, replace=replace)
        store.remove_temporaries()
        todo = pending_runs(store, runs, force, summary, others)
        todo = chosen(spec, store, todo, summary, select)
        queued, summary.queued_known = queued_runs(folder, spec.name, force, lambda i: _ended(store, i)) \
            if todo and not local else ({}, True)
        summary.queued = sum(r.run_id in queued for r in todo)
        todo = [r for r in todo if r.run_id not in queued]
        sub, executor = None, None
        try:  # every error of a launcher setting comes before spec.yaml and plan.json are written
            if todo:
                summary.folder = sub = _new_submission_folder(folder)
                executor = build_executor(launcher, sub, cfg, spec.name, len(todo))
            tasks = [RunTask(spec.kind.name, asdict(r), str(root), spec.name, os.getcwd(), max(1, cfg.gpus_per_run),
                             fresh=force, watch_pid=os.getpid() if local else None, command=provenance.command(),
                             folder_held=local) for r in todo]
            submitted = _submit_array(executor, tasks) if todo and not local else []
        except UsageError:
            _remove_new(sub, root, top)
            raise
        store.write_plan(spec.resolved(), command_line(spec, None if reference else out, reference),
                         [asdict(r) for r in runs])
        summary.submitted = len(todo)
        summary.waited = local or wait or not todo
        if todo:
            summary.job_id = submitted[0].job_id.split("_")[0] if submitted else \
                _wait_local(executor, tasks, todo, jobs, store, summary)
            _record_submission(folder, sub, summary.job_id, launcher, todo, cfg, spec.name)
        if submitted:
            _print_submitted(summary, sub, len(todo), cfg)
        if local and report is not None:
            _, summary.report_error = report(store.root, kind=spec.kind)
    if summary.waited and not local:
        if submitted:
            _wait_slurm(store, summary.job_id, todo, cfg.wait_grace_s, summary)
        if report is not None:
            with store.lock():
                _, summary.report_error = report(store.root, kind=spec.kind)
    return summary
