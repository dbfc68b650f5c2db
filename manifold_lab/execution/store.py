"""The results folder of one experiment: layout, run states and the lock.

Layout (``runs/<name>/`` for a user's runs, ``results/<name>/`` for the committed
reference results)::

    runs/<name>/
        .lock                 fcntl lock: one runner at a time
        spec.yaml             the resolved spec (no includes) and the command
        plan.json             every run: index, id, grid point, sweep values, seed
        summary.csv, comparisons.csv, report.md, figures/   (manifold_lab.reporting.report)
        runs/<id>/
            config.yaml       resolved kind, params, seed, sweep values
            status.json       {"status": "running" | "done" | "failed" | "diverged", "error", ...}
            metrics.json      the kind's metrics; written LAST, only for a done run
            run.log           the run's log
            .lock             held while the run executes

Every file except the log is written atomically (``manifold_lab.io``), so a
run is complete exactly when ``metrics.json`` exists and is a valid done
record (``done_problem``: a non-empty JSON object of finite values, a
``status.json`` saying ``done`` and, for runs recorded since the digest was
added, the sha256 of ``metrics.json`` it names). A run killed at any moment is
seen as interrupted and done again on the next invocation; a damaged one
(an empty or edited ``metrics.json``) is done again and named by ``report``.

Locks: a whole-experiment runner holds ``.lock`` exclusively. ``--run-index``
runners (one per cluster task, possibly at the same time) hold it shared plus
the run's own ``runs/<id>/.lock`` exclusively, so array tasks coexist but
never with a whole-experiment runner, and never two on the same run. A lock
file names its holder (``pid P (parent Q) on HOST``); a run lock whose holder
or whose holder's parent is gone (a worker dying with its runner) is waited for
a few seconds instead of refused. ``manifold-lab report`` holds ``.lock``
exclusively too. No path inside the folder may be a symbolic link
(``manifold_lab.io.check_tree`` / ``check_inside``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from manifold_lab import io
from manifold_lab.errors import UsageError
from manifold_lab.execution.provenance import redact
from manifold_lab.spec.bounds import check_json_depth, first_non_finite, safe_load_bounded
from manifold_lab.spec.sources import dotted
from manifold_lab.kinds import RunRecord

SPEC_FILE = "spec.yaml"
PLAN_FILE = "plan.json"
#: Largest ``plan.json`` read: 100,000 runs (``spec.bounds.MAX_RUNS``) of about 1.3 kB; the committed
#: largest has 960 runs in 0.7 MB. Every other record is bounded by ``io.MAX_RECORD_BYTES``.
MAX_PLAN_BYTES = 128 << 20


_HOLDER = re.compile(r"pid (\d+)(?: \(parent (\d+)\))? on (\S+)")


def _stale(holder: str) -> bool:
    """Whether the lock holder named in a lock file is gone or an orphan (its parent is gone)."""
    match = _HOLDER.search(holder)
    if not match or match[3] != socket.gethostname():
        return False
    return not io.pid_alive(int(match[1])) or (match[2] is not None and not io.pid_alive(int(match[2])))


@contextmanager
def locked(path: Path, *, shared: bool = False, what: str = "results folder",
           wait_stale: float = 0.0,
           hint: str = "wait for it to finish or use --out to write elsewhere") -> Iterator[None]:
    """Hold an ``fcntl.flock`` on ``path`` (created if missing) or raise UsageError at once.

    ``path`` must not be a symbolic link (opened with ``O_NOFOLLOW``). When the
    holder named in the file is dead or an orphan on this machine, wait up to
    ``wait_stale`` seconds for the kernel to release its lock.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(io.open_nofollow(path, os.O_RDWR | os.O_CREAT), "r+") as f:
        deadline = time.monotonic() + wait_stale
        while True:
            try:
                fcntl.flock(f, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                f.seek(0)
                holder = f.read(200).strip() or "another process"
                if time.monotonic() < deadline and _stale(holder):
                    time.sleep(0.1)
                    continue
                raise UsageError(f"{what} {path.parent} is locked by another runner ({holder}); {hint}") from None
        if not shared:
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()} (parent {os.getppid()}) on {socket.gethostname()}\n")
            f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _read_json(path: Path, limit: int = io.MAX_RECORD_BYTES) -> Any:
    """The parsed file, or None when it is missing or not valid JSON; a link, or more than ``limit``
    bytes, is a UsageError."""
    try:
        return json.loads(io.read_bytes(path, limit=limit).decode("utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def done_problem(run_dir: Path) -> tuple[dict | None, str | None]:
    """``(metrics, None)`` for a complete run (module docstring), ``(None, problem)`` for a damaged one,
    ``(None, None)`` if pending."""
    try:
        data = io.read_bytes(run_dir / "metrics.json")
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    except OSError as exc:
        return None, f"metrics.json cannot be read ({exc.strerror or exc})"
    except UsageError as exc:  # a link, a fifo: refused where the run is redone
        return None, str(exc)
    try:
        metrics = json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None, "metrics.json is not valid JSON"
    if not isinstance(metrics, dict):
        return None, f"metrics.json holds a {type(metrics).__name__}, not a JSON object"
    if not metrics:
        return None, "metrics.json is empty ({})"
    bad = first_non_finite(metrics, ("metric",))
    if bad:
        return None, f"metrics.json: {dotted(bad[0])} is not a finite number"
    status = _read_json(run_dir / "status.json")
    if not isinstance(status, dict) or status.get("status") != "done":
        return None, "status.json does not say done"
    digest = status.get("metrics_sha256")
    if digest is not None and digest != _sha256(data):
        return None, "metrics.json differs from what the run wrote (its sha256 is not the one in status.json)"
    return metrics, None


def _layout_problem(spec: dict, runs: Any) -> str | None:
    """What in ``spec.yaml`` / ``plan.json`` differs from what ``write_plan`` writes (None if nothing)."""
    if not isinstance(spec.get("name"), str) or not isinstance(spec.get("kind"), str):
        return "name and kind must be strings"
    sweep = spec.get("sweep") or {}
    if not isinstance(sweep, dict) or not all(isinstance(v, list) and v for v in sweep.values()):
        return "sweep must map each key to a non-empty list"
    if not isinstance(runs, list):
        return "runs must be a list"
    for i, run in enumerate(runs):
        if not (
            isinstance(run, dict) and run.get("index") == i and isinstance(run.get("seed"), int)
            and isinstance(run.get("run_id"), str) and re.fullmatch(r"[A-Za-z0-9_-]+", run["run_id"])
            and isinstance(run.get("params"), dict) and isinstance(run.get("sweep_values"), dict)
            and all(key in run["sweep_values"] for key in sweep if key != "seeds")
        ):
            return f"run {i} needs index {i}, a run_id (a folder name), an integer seed, params and every sweep value"
    return None


class ResultsStore:
    """One experiment's results folder (see the module docstring)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    # ----------------------------------------------------------------- experiment files
    def lock(self, *, shared: bool = False, **kwargs):
        return locked(self.path(".lock"), shared=shared, **kwargs)

    def lock_run(self, run_id: str, wait_stale: float = 0.0):
        return locked(self.path("runs", run_id, ".lock"), what="run folder", wait_stale=wait_stale)

    def path(self, *parts: str) -> Path:
        """``root / parts``, refusing a symbolic link at any level below the root."""
        return io.check_inside(self.root, self.root.joinpath(*parts))

    def check_links(self) -> None:
        """UsageError naming the first symbolic link inside the folder (the root itself may be one)."""
        io.check_tree(self.root)

    def remove_temporaries(self) -> int:
        """Delete the leftover temporaries of atomic writes in the folder, ``figures/`` and ``runs/``.

        Call it holding the exclusive lock: no one else writes there then (a
        ``train`` into a subfolder of its own is left alone).
        """
        removed = io.remove_temporaries(self.root, all_writers=True)
        for sub in ("figures", "runs"):
            removed += io.remove_temporaries(self.path(sub), recursive=True, all_writers=True)
        return removed + io.remove_stale_folders(self.root, ".staged-")  # a report cut short (io.staged_folder)

    def write_plan(self, resolved_spec: dict, command: str, runs: list[dict]) -> None:
        """Write ``spec.yaml`` (the spec and command, credentials redacted: ``provenance.redact``) and ``plan.json``."""
        spec = redact({**resolved_spec, "command": command})
        io.write_text(self.path(SPEC_FILE), yaml.safe_dump(spec, sort_keys=False))
        io.write_json(self.path(PLAN_FILE), {"runs": runs})

    def read_spec(self) -> dict:
        if not self.root.is_dir():
            raise UsageError(f"results folder not found: {self.root}")
        try:
            # No alias bomb, bounded depth (manifold_lab.spec.bounds).
            spec = safe_load_bounded(io.read_text(self.path(SPEC_FILE)))
        except FileNotFoundError:
            raise UsageError(f"{self.root} holds no {SPEC_FILE}; is it a results folder written by "
                             "`manifold-lab run`?") from None
        except UsageError:  # a link, a fifo, more than io.MAX_RECORD_BYTES: the line names it
            raise
        except (yaml.YAMLError, ValueError):  # ValueError: not UTF-8, a bad tagged scalar
            spec = None
        plan = _read_json(self.path(PLAN_FILE), MAX_PLAN_BYTES)
        if not isinstance(spec, dict) or not isinstance(plan, dict):
            raise UsageError(f"{self.root}: {SPEC_FILE} or {PLAN_FILE} is missing or unreadable")
        check_json_depth(plan, f"{self.root / PLAN_FILE}")
        problem = _layout_problem(spec, plan.get("runs"))
        if problem:
            raise UsageError(f"{self.root}: {SPEC_FILE} or {PLAN_FILE} is damaged ({problem}); "
                             "`manifold-lab run` with the spec writes them again")
        return {**redact(spec), "runs": plan["runs"]}  # redacted: also a spec.yaml written before redaction

    # ----------------------------------------------------------------- one run
    def run_dir(self, run_id: str) -> Path:
        return self.path("runs", run_id)

    def is_complete(self, run_id: str) -> bool:
        return done_problem(self.run_dir(run_id))[0] is not None

    def copy_run_from(self, other: "ResultsStore", run_id: str) -> bool:
        """Copy the completed run ``run_id`` of ``other`` here; False if ``other`` has not completed it.

        The record files are copied (checkpoints are not), ``metrics.json`` last, and
        ``status.json`` names the folder it came from. Only regular files are
        copied, each opened without following links; a link is a UsageError.
        """
        source = other.run_dir(run_id)
        metrics, _ = done_problem(source)
        if metrics is None:
            return False
        target = self.run_dir(run_id)
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(source.iterdir()):
            io.refuse_link(path)
            if path.is_file() and path.name not in ("metrics.json", "status.json", ".lock") \
                    and path.suffix != ".pt" and not path.name.startswith("."):
                content = io.read_bytes(path, single_link=True, limit=1 << 30)  # a log, a figure: bounded too
                copy = io.write_bytes(self.path("runs", run_id, path.name), content)
                copy.chmod(copy.stat().st_mode & path.stat().st_mode & 0o777)  # never more readable than its source
        status = _read_json(source / "status.json")
        data = io.read_bytes(source / "metrics.json")
        io.write_json(self.path("runs", run_id, "status.json"),
                      {**status, "copied_from": str(other.root), "metrics_sha256": _sha256(data)})
        io.write_bytes(self.path("runs", run_id, "metrics.json"), data)
        return True

    def begin(self, run_id: str, config: dict, fresh: bool = False) -> Path:
        """Mark a run as started: drop stale results, write its config and status.

        ``fresh`` (``run --force``) empties the run folder first (its lock
        kept), so nothing, a checkpoint included, carries over.
        """
        run_dir = self.run_dir(run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        if fresh:
            for entry in run_dir.iterdir():
                if entry.name == ".lock":
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)  # does not follow links
                else:
                    entry.unlink()
        self.path("runs", run_id, "metrics.json").unlink(missing_ok=True)
        # Temporary files of writes cut short by a kill (manifold_lab.io names them ".<name>.*").
        for leftover in run_dir.glob(".*"):
            if leftover.name != ".lock" and not leftover.is_symlink() and leftover.is_file():
                leftover.unlink(missing_ok=True)
        io.write_text(self.path("runs", run_id, "config.yaml"), yaml.safe_dump(config, sort_keys=False))
        io.write_json(self.path("runs", run_id, "status.json"),
                      {"status": "running", "pid": os.getpid(), "parent": os.getppid()})
        return run_dir

    def finish(self, run_id: str, status: str, metrics: dict, error: str | None, seconds: float) -> None:
        """Record the outcome; for a done run ``metrics.json`` comes last (the complete marker)."""
        record = {"status": status, "error": error, "seconds": round(seconds, 3)}
        data = (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode("utf-8")
        if status == "done":
            record["metrics_sha256"] = _sha256(data)
        else:
            record["metrics"] = metrics
        io.write_json(self.path("runs", run_id, "status.json"), record)
        if status == "done":
            io.write_bytes(self.path("runs", run_id, "metrics.json"), data)

    def pending_state(self, run: dict) -> str:
        """How run ``run`` (an entry of plan.json) not yet finished stands, read without torch: ``running`` (its
        process is alive), ``resumes at epoch K/E`` (its ``checkpoint.pt`` is there: the trainer writes it before
        ``metrics.jsonl``, whose lines count the epochs done; E is ``params.train.epochs``), else ``todo``."""
        run_dir = self.run_dir(run["run_id"])
        status = _read_json(run_dir / "status.json")
        pid = status.get("pid") if isinstance(status, dict) and status.get("status") == "running" else None
        if isinstance(pid, int) and io.pid_alive(pid):
            return "running"
        if not (run_dir / "checkpoint.pt").is_file():
            return "todo"
        try:
            done = len(io.read_bytes(run_dir / "metrics.jsonl").decode("utf-8").split("\n")) - 1
        except (OSError, UnicodeDecodeError):
            return "todo"
        epochs = (run["params"].get("train") or {}).get("epochs") if isinstance(run["params"], dict) else None
        return f"resumes at epoch {done + 1}" + (f"/{epochs}" if isinstance(epochs, int) else "") if done > 0 else "todo"

    def record(self, run: dict) -> RunRecord | None:
        """The finished run ``run`` (an entry of plan.json), or None if pending / interrupted."""
        run_dir = self.run_dir(run["run_id"])
        common = dict(run_id=run["run_id"], params=run["params"], seed=run["seed"], run_dir=run_dir,
                      sweep_values=run["sweep_values"])
        metrics, problem = done_problem(run_dir)
        if metrics is not None:
            return RunRecord(status="done", metrics=metrics, error=None, **common)
        if problem is not None:
            return RunRecord(status="damaged", metrics={}, error=problem, **common)
        status = _read_json(run_dir / "status.json")
        if isinstance(status, dict) and status.get("status") in ("failed", "diverged"):
            return RunRecord(status=status["status"], metrics=status.get("metrics") or {}, error=status.get("error"),
                             **common)
        return None
