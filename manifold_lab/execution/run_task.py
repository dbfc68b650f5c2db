"""One task of a launch: a planned run executed inside a submitit job, requeued on preemption.

``RunTask`` is picklable plain data (the kind by name, the run as a dict), sent to
the job by submitit. It runs the planned run through the runner's single-run path
(``manifold_lab.execution.runner.execute_run``: the run's lock, its files, its
resume from ``checkpoint.pt``). On the preemption signal (Slurm's ``USR2``, sent
``signal_delay_s`` before the time limit, unless ``SUBMITIT_PREEMPT_SIGNAL`` names
another) it leaves the run "running" and lets submitit requeue the same task
(``checkpoint()``), which resumes the run from the checkpoint the trainer writes
after every epoch: finished epochs are not recomputed. With
``watch_pid`` (``--launcher local``) the task ends within half a second of the
launcher's death; with ``folder_held`` (also ``--launcher local``) the launcher holds the
results folder's lock for the whole sweep, so the task takes only its run's lock.
The launcher's command line (``command``) is what the run's ``provenance.json`` records.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import submitit

__all__ = ["PREEMPT_SIGNAL_ENV", "Preempted", "RunTask"]

#: submitit's variable naming the preemption signal (default USR2).
PREEMPT_SIGNAL_ENV = "SUBMITIT_PREEMPT_SIGNAL"


class RunTask(submitit.helpers.Checkpointable):
    """One array task: execute planned run ``run`` of experiment ``name`` into ``root`` (module docstring).

    Returns ``{"run_id", "status", "error"}``; ``status`` is the run's
    (``done``, ``failed``, ``diverged``), ``skipped`` when the run was already
    complete (a duplicate submission), ``rank`` on a rank other than 0.
    """

    folder_held = False  # tasks pickled before this attribute existed

    def __init__(self, kind: str, run: dict, root: str, name: str, cwd: str, tasks: int = 1,
                 fresh: bool = False, watch_pid: int | None = None, command: str | None = None,
                 folder_held: bool = False) -> None:
        self.kind, self.run, self.root, self.name, self.cwd, self.tasks = kind, run, root, name, cwd, tasks
        self.command, self.watch_pid, self.folder_held = command, watch_pid, folder_held
        self.fresh = fresh  # --force: start the run from an empty folder (not once requeued)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """The same task, requeued: it resumes what this one started (``fresh`` no more)."""
        self.fresh = False
        return super().checkpoint(*args, **kwargs)

    def __call__(self) -> dict:
        from manifold_lab.execution import provenance

        if self.watch_pid is not None:
            _end_with(self.watch_pid)
        provenance.use_command(self.command)
        sig = getattr(signal, "SIG" + os.environ.get(PREEMPT_SIGNAL_ENV, "USR2"))
        requeue = signal.getsignal(sig)  # submitit's: checkpoint(), requeue, exit
        if not callable(requeue):  # not inside a submitit job (a direct call)
            return self._run()
        # The runner records any exception of a run, SystemExit included, as its failure; the
        # preemption signal must instead leave the run "running" (interrupted, as a kill would)
        # and reach submitit: it becomes an exception the runner lets through.
        signal.signal(sig, _preempted)
        try:
            return self._run()
        except Preempted as exc:
            requeue(exc.signum, None)
            raise
        finally:
            signal.signal(sig, requeue)

    def _run(self) -> dict:
        from manifold_lab.execution.runner import execute_run
        from manifold_lab.execution.store import ResultsStore
        from manifold_lab.spec.sweep import PlannedRun
        from manifold_lab.kinds import RunContext, get_kind

        os.chdir(self.cwd)  # relative paths of the spec (data roots) as at submission
        kind = get_kind(self.kind)
        run = PlannedRun(**self.run)
        rank = 0
        if self.tasks > 1:  # one task per GPU: the torchrun variables from Slurm's
            rank = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False).rank
        store = ResultsStore(self.root)
        if rank != 0:  # the other ranks compute; rank 0 owns the run's files and locks
            if store.is_complete(run.run_id) and not self.fresh:  # rank 0 skips it too
                return {"run_id": run.run_id, "status": "skipped", "error": None}
            ctx = RunContext(run_dir=Path(self.root) / "runs" / run.run_id, seed=run.seed,
                             log=logging.getLogger(f"manifold_lab.run.{run.run_id}.rank{rank}"))
            kind.run(kind.params.model_validate(run.params), run.seed, ctx)
            return {"run_id": run.run_id, "status": "rank", "error": None}
        with contextlib.nullcontext() if self.folder_held else store.lock(shared=True):
            if store.is_complete(run.run_id) and not self.fresh:
                return {"run_id": run.run_id, "status": "skipped", "error": None}
            status, error = execute_run(kind, run, store.root, self.name, fresh=self.fresh)
        return {"run_id": run.run_id, "status": status, "error": error}


class Preempted(BaseException):
    """The preemption / time-limit signal arrived during a run (not an ``Exception``: the runner lets it through)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def _preempted(signum, frame) -> None:
    raise Preempted(signum)


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie not yet reaped by its parent counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    try:  # Linux: state Z (zombie) or X (dead)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("Z", "X")


def _end_with(pid: int) -> None:
    """Kill this process (SIGKILL) within half a second once process ``pid`` has ended (a watchdog thread)."""
    import threading

    def watch() -> None:
        while not _gone(pid):
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="end-with-launcher", daemon=True).start()
