"""Progress of ``manifold-lab run``: runs done of total, elapsed time, an estimate of the time left.

On a terminal (stderr is a tty) a tqdm bar counts the runs (done of total,
elapsed, time left) and names the current run; the run's own bar (training
epochs) is drawn below it by the kind. Elsewhere (logs, CI, a pipe) one plain
line per finished run goes to stderr::

    toy: 5/18 runs (run 4 (0f3a9c2e71b4) done in 2.1 s), elapsed 0:00:12, about 0:00:31 left

The estimate is ``elapsed / executed * remaining`` over the runs executed by
this invocation (skipped and reused runs cost nothing and are left out), so it
holds for ``--jobs N`` too.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import TextIO

__all__ = ["RunProgress", "clock"]


def clock(seconds: float) -> str:
    """``3725.4`` -> ``"1:02:05"`` (whole seconds)."""
    return str(timedelta(seconds=int(round(max(seconds, 0.0)))))


class RunProgress:
    """Counts the runs of one invocation; a bar on a terminal, plain lines otherwise.

    Parameters
    ----------
    name : str
        The experiment name, at the start of every line.
    total : int
        Runs of this invocation (the plan, or one with ``--run-index``).
    already : int
        Runs already complete (skipped or reused) before any is executed.
    stream : file, optional
        Where to write (default ``sys.stderr``); a bar only when it is a terminal.
    """

    def __init__(self, name: str, total: int, already: int, stream: TextIO | None = None) -> None:
        self.name, self.total, self.finished = name, total, already
        self.executed = 0
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.monotonic()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar = None
        todo = total - already
        if self.tty:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=already, desc=name, unit="run", file=self.stream,
                            dynamic_ncols=True)
        elif todo:
            print(f"{name}: {todo} of {total} runs to do ({already} already complete)",
                  file=self.stream, flush=True)

    def estimate_left(self) -> float | None:
        """Seconds left, from the mean time per executed run; None before the first."""
        if not self.executed:
            return None
        return (time.monotonic() - self.start) / self.executed * (self.total - self.finished)

    def current(self, text: str) -> None:
        """Name the run that is executing now (on the bar)."""
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=True)

    def done(self, label: str, status: str, seconds: float | None, error: str | None = None) -> None:
        """One run finished: ``label`` names it (``"run 4 (ab12...)"``), ``status`` done / failed / diverged."""
        self.finished += 1
        self.executed += 1
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
