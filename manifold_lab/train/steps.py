"""How far one run is, as its trainer sees it: ``Steps`` after every epoch, and the plain progress lines.

A trainer (a library module) calls ``Steps(total)(done)`` after each epoch. The note goes to
whatever ``set_note_sink`` installed (inside ``manifold-lab run``'s worker processes, the runner's
pipe: ``manifold_lab.execution.workers``); with no sink, or when the sink declines, a plain line
``label: epoch 4/20, about 0:11:15 left`` goes to stderr when it is not a terminal (where the
trainer draws its bar instead). ``manifold_lab.execution.progress`` draws the runner's side.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import Any, Callable, TextIO

__all__ = ["LINE_EVERY", "Lines", "Steps", "clock", "describe", "is_tty", "set_note_sink"]

#: Where ``Steps`` sends its notes: ``sink(note) -> True`` when it took the note.
_sink: Callable[[Any], bool] | None = None


def set_note_sink(sink: Callable[[Any], bool] | None) -> None:
    """Send every ``Steps`` note to ``sink`` (a worker's pipe to the runner); None: plain lines."""
    global _sink
    _sink = sink


#: Seconds between two plain progress lines of one run (the first and the last epoch always print).
LINE_EVERY = 10.0


def clock(seconds: float) -> str:
    """``3725.4`` -> ``"1:02:05"`` (whole seconds)."""
    return str(timedelta(seconds=int(round(max(seconds, 0.0)))))


def is_tty(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal (a bar), not a log or a pipe (plain lines)."""
    return bool(getattr(stream, "isatty", lambda: False)())


def describe(note: dict) -> str:
    """``{"unit": "epoch", "done": 4, "total": 20, "left": 675.0}`` -> ``"epoch 4/20, about 0:11:15 left"``."""
    left = note.get("left")
    return f"{note['unit']} {note['done']}/{note['total']}" + (f", about {clock(left)} left" if left else "")


class Lines:
    """Plain lines of the runs' progress, at most one every ``LINE_EVERY`` seconds per run, the last always."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}

    def due(self, key: str, note: dict) -> bool:
        now = time.monotonic()
        if note["done"] < note["total"] and now - self.last.get(key, -LINE_EVERY) < LINE_EVERY:
            return False
        self.last[key] = now
        return True


class Steps:
    """How far one run is: ``steps(done)`` after each of ``total`` units (epochs), ``done`` counted from 1.

    ``start`` units were done before (a resumed run); the time left is
    ``elapsed / (done - start) * (total - done)``. Where the note goes: the module docstring;
    the plain line goes to ``stream`` (stderr), unless ``quiet``.
    """

    def __init__(self, total: int, start: int = 0, unit: str = "epoch", label: str = "train",
                 stream: TextIO | None = None, quiet: bool = False) -> None:
        self.total, self.start_done, self.unit, self.label, self.quiet = total, start, unit, label, quiet
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.monotonic()
        self.lines = Lines()

    def __call__(self, done: int) -> None:
        ran = done - self.start_done
        left = (time.monotonic() - self.start) / ran * (self.total - done) if ran > 0 else None
        note = {"unit": self.unit, "done": done, "total": self.total, "left": left}
        sent = _sink is not None and _sink(note)
        if not sent and not self.quiet and not is_tty(self.stream) and self.lines.due(self.label, note):
            print(f"{self.label}: {describe(note)}", file=self.stream, flush=True)
