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
- Workers ignore SIGINT: Ctrl-C reaches the whole process group, and the
  parent decides (it terminates them).
"""

from __future__ import annotations

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
from multiprocessing.connection import wait
from typing import Any

__all__ = ["DIED", "die_with_parent", "run_in_workers", "terminate_on_signals"]

#: How the error line of a task whose worker died begins.
DIED = "worker process died"

_PR_SET_PDEATHSIG = 1
WATCH_SECONDS = 0.5


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(WATCH_SECONDS)
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)


def die_with_parent(parent_pid: int) -> None:
    """End this process when ``parent_pid`` (its parent) dies, by any signal, SIGKILL included."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watchdog below still works
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="parent-watchdog").start()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _worker_main(conn, parent_pid: int, env: dict[str, str]) -> None:
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.update(env)
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
        except Exception as exc:  # a result that cannot be pickled
            conn.send((False, f"the result could not be sent back: {_one_line(exc)}"))


class _Worker:
    def __init__(self, ctx, env: dict[str, str]) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, os.getpid(), env),
                                   name="manifold-lab-worker")
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
            try:
                self.conn.send(None)
            except OSError:
                pass
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
) -> None:
    """Call ``fn(*tasks[i])`` in worker processes; ``on_result(i, ok, value_or_error_line)`` for each.

    ``fn`` and the tasks must be picklable (module-level functions, plain
    data); ``env`` is added to each worker's environment before any task runs;
    ``on_start(i)`` is called when task ``i`` is handed to a worker.
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
                index = busy.pop(worker)
                try:
                    ok, value = worker.conn.recv() if worker.conn.poll() else (None, None)
                except (EOFError, OSError):
                    ok = None
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
        for worker in [*busy, *idle]:
            worker.stop(now=failed)


@contextmanager
def terminate_on_signals(signals: Sequence[int] = (signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """Turn these signals into ``KeyboardInterrupt`` in the main thread (so cleanup runs).

    Signals that are ignored (``SIG_IGN``) when it is entered are left ignored.
    """

    def handler(signum, frame):
        raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # A signal ignored on purpose (SIGHUP under nohup) stays ignored.
    previous = {s: signal.signal(s, handler) for s in signals if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
