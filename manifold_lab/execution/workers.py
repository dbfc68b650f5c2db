"""Worker processes for the runner: each run in a child process that ends with its parent.

``run_in_workers(fn, tasks, jobs, on_result)`` calls ``fn(*task)`` for every
task in at most ``jobs`` spawned worker processes, each doing one task at a
time, and hands every outcome to ``on_result(index, ok, value)`` in the
calling process, in completion order.

Guarantees:

- *A task cannot take the others down.* A worker that dies inside a task (a
  native abort, a segfault, the out-of-memory killer) costs only that task:
  it is reported as ``ok=False`` with the signal or exit status, a new worker
  takes its place, and the remaining tasks go on.
- *Workers end with their parent.* Each worker asks the kernel to SIGKILL it
  when its parent dies (``prctl(PR_SET_PDEATHSIG)`` on Linux) and runs a
  watchdog thread that kills it within half a second once its parent pid
  changes (every platform), so ``kill -9`` of the runner leaves no worker.
  On any exception in the parent (``KeyboardInterrupt``, a SIGTERM turned
  into one by ``terminate_on_signals``), the workers are terminated before
  it propagates.
- Workers ignore SIGINT from their first instruction (they are started with
  it ignored): Ctrl-C reaches the whole process group, and the parent decides
  (it terminates them), so an interrupt prints no worker traceback.
- *Notes on the way.* Inside a task, ``notify(payload)`` sends a picklable
  payload to the parent, handed to ``on_note(index, payload)`` while the task
  runs (the runner's per-epoch progress, ``manifold_lab.execution.progress``).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing import resource_tracker
from multiprocessing.connection import wait
from typing import Any

from manifold_lab.train.steps import set_note_sink

__all__ = ["DIED", "die_with_parent", "notify", "run_in_workers", "terminate_on_signals"]

#: How the error line of a task whose worker died begins.
DIED = "worker process died"

_PR_SET_PDEATHSIG = 1
WATCH_SECONDS = 0.5
#: The first item of a note sent by ``notify`` (a task's result starts with True or False).
_NOTE = "note"
#: The connection to the parent, inside a worker process.
_channel = None


def notify(payload: Any) -> bool:
    """Send ``payload`` to the parent's ``on_note`` while a task runs; False (nothing sent) outside a worker."""
    if _channel is None:
        return False
    try:
        _channel.send((_NOTE, payload))
    except OSError:  # the parent is gone: this worker ends with it
        return False
    return True


@contextmanager
def _sigint_held(ignore: bool = False) -> Iterator[None]:
    """A Ctrl-C inside is held back and reaches this process on exit (cleanup is not cut short). With ``ignore``,
    processes started inside begin with SIGINT ignored (an ignored signal stays ignored through exec), so a
    Ctrl-C while one imports cannot print its traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if ignore:  # started first: its start unblocks SIGINT, which would drop a pending Ctrl-C while ignored here
        sys.warnoptions.append("ignore::UserWarning")  # of the tracker only: "leaked semaphores" of terminated
        try:                                            # workers (torch's), printed after a Ctrl-C; it frees them
            resource_tracker.ensure_running()
        finally:
            sys.warnoptions.pop()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # pending, not lost, while ignored here
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if ignore else None
    try:
        yield
    finally:
        if ignore:
            signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(WATCH_SECONDS)
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)


def die_with_parent(parent_pid: int) -> None:
    """End this process when ``parent_pid`` (its parent) dies, by any signal, SIGKILL included."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # no prctl: the watchdog below still works
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="parent-watchdog").start()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _worker_main(conn, parent_pid: int, env: dict[str, str]) -> None:
    global _channel
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.update(env)
    _channel = conn
    set_note_sink(notify)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        fn, args = task
        try:
            reply = (True, fn(*args))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent as one line
            reply = (False, _one_line(exc))
        try:
            conn.send(reply)
        except OSError:  # the parent is gone (interrupted): nothing to tell, no traceback
            return
        except Exception as exc:  # a result that cannot be pickled
            conn.send((False, f"the result could not be sent back: {_one_line(exc)}"))


class _Worker:
    def __init__(self, ctx, env: dict[str, str]) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, os.getpid(), env),
                                   name="manifold-lab-worker")
        with _sigint_held(ignore=True):
            self.process.start()  # from the calling thread: PDEATHSIG follows this thread's life
        child.close()

    def death(self) -> str:
        self.process.join(timeout=5)
        code = self.process.exitcode
        if code is not None and code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exit status {code}"
        return f"{DIED} ({how})"

    def stop(self, now: bool) -> None:
        if not now and self.process.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def run_in_workers(
    fn: Callable[..., Any],
    tasks: Sequence[tuple],
    jobs: int,
    on_result: Callable[[int, bool, Any], None],
    env: dict[str, str] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_note: Callable[[int, Any], None] | None = None,
) -> None:
    """Call ``fn(*tasks[i])`` in worker processes; ``on_result(i, ok, value_or_error_line)`` for each.

    ``fn`` and the tasks must be picklable (module-level functions, plain
    data); ``env`` is added to each worker's environment before any task runs;
    ``on_start(i)`` is called when task ``i`` is handed to a worker, ``on_note(i, payload)``
    for each ``notify(payload)`` of task ``i`` (dropped without ``on_note``).
    """
    ctx = multiprocessing.get_context("spawn")
    pending = deque(range(len(tasks)))
    idle: list[_Worker] = []
    busy: dict[_Worker, int] = {}
    failed = False
    try:
        while pending or busy:
            while pending and len(busy) < jobs:
                reused = bool(idle)
                worker = idle.pop() if idle else _Worker(ctx, env or {})
                index = pending.popleft()
                try:
                    worker.conn.send((fn, tasks[index]))
                except OSError as exc:  # the worker is gone: an idle one killed from outside is replaced
                    worker.stop(now=True)
                    if reused:
                        pending.appendleft(index)
                    else:
                        on_result(index, False, f"could not start a worker process: {_one_line(exc)}")
                    continue
                except Exception as exc:  # noqa: BLE001 - e.g. a kind that cannot be pickled
                    idle.append(worker)
                    on_result(index, False, f"could not run in a worker process: {_one_line(exc)}")
                    continue
                busy[worker] = index
                if on_start is not None:
                    on_start(index)
            if not busy:
                continue
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for worker in [w for w in busy if w.conn in ready or w.process.sentinel in ready]:
                index = busy[worker]
                ok = value = None
                try:
                    while ok is None and worker.conn.poll():
                        message = worker.conn.recv()
                        if message[0] != _NOTE:
                            ok, value = message
                        elif on_note is not None:
                            on_note(index, message[1])
                except (EOFError, OSError):
                    pass
                if ok is None and worker.process.sentinel not in ready and worker.process.is_alive():
                    continue  # only notes: the task goes on
                del busy[worker]
                if ok is None:  # died inside the task: only this task is lost
                    message = worker.death()
                    worker.stop(now=True)
                    on_result(index, False, message)
                else:
                    idle.append(worker)
                    on_result(index, ok, value)
    except BaseException:
        failed = True
        raise
    finally:
        with _sigint_held():  # a second Ctrl-C does not leave workers behind
            for worker in [*busy, *idle]:
                worker.stop(now=failed)


@contextmanager
def terminate_on_signals(signals: Sequence[int] = (signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """Turn these signals into ``KeyboardInterrupt`` in the main thread (so cleanup runs).

    Signals that are ignored (``SIG_IGN``, SIGHUP under nohup) when it is entered are left ignored.
    """

    def handler(signum, frame):
        raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in signals if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
