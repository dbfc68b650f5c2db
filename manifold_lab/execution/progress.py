"""Progress of ``manifold-lab run``: runs done of total, each active run's epoch, an estimate of the time left.

On a terminal (stderr is a tty) a tqdm bar counts the runs (done of total,
elapsed, time left) and names the active runs with their epoch and time left
(``run 3: epoch 4/20, 0:05:12 left | run 4: epoch 2/20, ...``); with one run at
a time the run's own bar (training batches) is drawn below it. Elsewhere
(logs, CI, a pipe) plain lines go to stderr: one per finished run, and one per
epoch of each active run, at most one every ``train.steps.LINE_EVERY`` seconds per run::

    toy: 5/18 runs (run 4 (0f3a9c2e71b4) done in 2.1 s), elapsed 0:00:12, about 0:00:31 left
    fig6a: run 3 (0f3a9c2e71b4): epoch 4/20, about 0:11:15 left

The run's epochs reach the runner through ``manifold_lab.train.steps.Steps``: a
trainer calls it after every epoch; inside a worker process its note goes to the
runner (``manifold_lab.execution.workers.notify``, installed as the note sink),
elsewhere (``manifold-lab train``) it prints the same line itself when stderr is
not a terminal.

The estimate of the runs is ``elapsed / executed * remaining`` over the runs
executed by this invocation (skipped and reused runs cost nothing and are left
out), so it holds for ``--jobs N`` too; a run's is ``elapsed / epochs done here *
epochs left``.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from manifold_lab.train.steps import Lines, clock, describe, is_tty

__all__ = ["RunProgress"]


class RunProgress:
    """Counts the ``total`` runs of one invocation (the plan, or one with ``--run-index``), ``already`` of them
    complete (skipped or reused) before any is executed; a bar when ``stream`` (default ``sys.stderr``) is a
    terminal, plain lines starting with the experiment's ``name`` otherwise."""

    def __init__(self, name: str, total: int, already: int, stream: TextIO | None = None) -> None:
        self.name, self.total, self.finished = name, total, already
        self.executed = 0
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.monotonic()
        self.tty = is_tty(self.stream)
        self.bar = None
        self.active: dict[str, str] = {}  # the runs executing now, as the bar names them
        self.lines = Lines()
        if self.tty:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=already, desc=name, unit="run", file=self.stream, dynamic_ncols=True)
        elif total > already:
            print(f"{name}: {total - already} of {total} runs to do ({already} already complete)",
                  file=self.stream, flush=True)

    def estimate_left(self) -> float | None:
        """Seconds left, from the mean time per executed run; None before the first."""
        if not self.executed:
            return None
        return (time.monotonic() - self.start) / self.executed * (self.total - self.finished)

    def _show(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(" | ".join(self.active.values()), refresh=True)

    def current(self, key, text: str) -> None:
        """Task ``key`` started: named on the bar by ``text`` until its first note."""
        self.active[key] = text
        self._show()

    def note(self, key, name: str, note: dict) -> None:
        """Progress of task ``key`` (a ``Steps`` note), named ``name`` (``"run 3"``): on the bar, or a plain line."""
        self.active[key] = f"{name}: {describe(note)}"
        self._show()
        if self.bar is None and self.lines.due(name, note):
            print(f"{self.name}: {name}: {describe(note)}", file=self.stream, flush=True)

    def done(self, label: str, status: str, seconds: float | None, error: str | None = None, key=None) -> None:
        """One run finished: ``label`` names it (``"run 4 (ab12...)"``), ``status`` done / failed / diverged;
        ``key``: its task, no longer active."""
        self.finished += 1
        self.executed += 1
        self.active.pop(key, None)
        if status != "done":
            message = f"{label} {status}: {error}"
            (self.bar.write(message, file=self.stream) if self.bar is not None
             else print(f"{self.name}: {message}", file=self.stream, flush=True))
        if self.bar is not None:
            self.bar.update(1)
            return
        took = f" in {seconds:.1f} s" if seconds is not None else ""
        left = self.estimate_left()
        print(f"{self.name}: {self.finished}/{self.total} runs ({label} {status}{took}), "
              f"elapsed {clock(time.monotonic() - self.start)}"
              + (f", about {clock(left)} left" if left is not None and self.finished < self.total else ""),
              file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
