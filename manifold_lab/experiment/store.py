"""The results folder of one experiment: layout, run states and the lock.

Layout::

    results/<name>/
        .lock                 fcntl lock: one runner at a time
        spec.yaml             the resolved spec (no includes) and the command
        plan.json             every run: index, id, grid point, sweep values, seed
        summary.csv, comparisons.csv, report.md, figures/   (manifold_lab.experiment.report)
        runs/<id>/
            config.yaml       resolved kind, params, seed, sweep values
            status.json       {"status": "running" | "done" | "failed" | "diverged", "error", ...}
            metrics.json      the kind's metrics; written LAST, only for a done run
            run.log           the run's log
            .lock             held while the run executes

Every file except the log is written atomically (``manifold_lab.io``), so a
run is complete exactly when ``metrics.json`` exists and parses; a run killed
at any moment is seen as interrupted and done again on the next invocation.

Locks: a whole-experiment runner holds ``.lock`` exclusively. ``--run-index``
runners (one per cluster task, possibly at the same time) hold it shared plus
the run's own ``runs/<id>/.lock`` exclusively, so array tasks coexist but
never with a whole-experiment runner, and never two on the same run.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from manifold_lab import io
from manifold_lab.errors import UsageError
from manifold_lab.experiment.bounds import check_json_depth, safe_load_bounded
from manifold_lab.kinds import RunRecord

SPEC_FILE = "spec.yaml"
PLAN_FILE = "plan.json"


@contextmanager
def locked(path: Path, *, shared: bool = False, what: str = "results folder") -> Iterator[None]:
    """Hold an ``fcntl.flock`` on ``path`` (created if missing) or raise UsageError at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise UsageError(
                f"{what} {path.parent} is locked by another runner ({holder}); "
                "wait for it to finish or use --out to write elsewhere"
            ) from None
        if not shared:
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
            f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _read_json(path: Path) -> Any:
    """The parsed file, or None when it is missing or not valid JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # nested too deep
        return None


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
    def lock(self, *, shared: bool = False):
        return locked(self.root / ".lock", shared=shared)

    def lock_run(self, run_id: str):
        return locked(self.run_dir(run_id) / ".lock", what="run folder")

    def write_plan(self, resolved_spec: dict, command: str, runs: list[dict]) -> None:
        io.write_text(
            self.root / SPEC_FILE,
            yaml.safe_dump({**resolved_spec, "command": command}, sort_keys=False),
        )
        io.write_json(self.root / PLAN_FILE, {"runs": runs})

    def read_spec(self) -> dict:
        path = self.root / SPEC_FILE
        if not self.root.is_dir():
            raise UsageError(f"results folder not found: {self.root}")
        try:
            spec = safe_load_bounded(path.read_text(encoding="utf-8"))  # no alias bomb, bounded depth
        except FileNotFoundError:
            raise UsageError(
                f"{self.root} holds no {SPEC_FILE}; is it a results folder written by "
                "`manifold-lab run`?"
            ) from None
        except (yaml.YAMLError, ValueError):  # ValueError: not UTF-8, a bad tagged scalar
            spec = None
        plan = _read_json(self.root / PLAN_FILE)
        if not isinstance(spec, dict) or not isinstance(plan, dict):
            raise UsageError(f"{self.root}: {SPEC_FILE} or {PLAN_FILE} is missing or unreadable")
        check_json_depth(plan, f"{self.root / PLAN_FILE}")
        problem = _layout_problem(spec, plan.get("runs"))
        if problem:
            raise UsageError(f"{self.root}: {SPEC_FILE} or {PLAN_FILE} is damaged ({problem}); "
                             "`manifold-lab run` with the spec writes them again")
        return {**spec, "runs": plan["runs"]}

    # ----------------------------------------------------------------- one run
    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def is_complete(self, run_id: str) -> bool:
        return isinstance(_read_json(self.run_dir(run_id) / "metrics.json"), dict)

    def copy_run_from(self, other: "ResultsStore", run_id: str) -> bool:
        """Copy the completed run ``run_id`` of ``other`` here; False if ``other`` has not completed it.

        The record files are copied (checkpoints are not), ``metrics.json`` last, and
        ``status.json`` names the folder it came from.
        """
        if not other.is_complete(run_id):
            return False
        source, target = other.run_dir(run_id), self.run_dir(run_id)
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(source.iterdir()):
            if path.is_file() and path.name not in ("metrics.json", "status.json", ".lock") \
                    and path.suffix != ".pt" and not path.name.startswith("."):
                io.write_bytes(target / path.name, path.read_bytes())
        status = _read_json(source / "status.json")
        status = status if isinstance(status, dict) else {"status": "done"}
        io.write_json(target / "status.json", {**status, "copied_from": str(other.root)})
        io.write_bytes(target / "metrics.json", (source / "metrics.json").read_bytes())
        return True

    def begin(self, run_id: str, config: dict) -> Path:
        """Mark a run as started: drop stale results, write its config and status."""
        run_dir = self.run_dir(run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.json").unlink(missing_ok=True)
        # Temporary files of writes cut short by a kill (manifold_lab.io names them ".<name>.*").
        for leftover in run_dir.glob(".*"):
            if leftover.name != ".lock" and leftover.is_file():
                leftover.unlink(missing_ok=True)
        io.write_text(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
        io.write_json(run_dir / "status.json", {"status": "running", "pid": os.getpid()})
        return run_dir

    def finish(self, run_id: str, status: str, metrics: dict, error: str | None, seconds: float) -> None:
        """Record the outcome; for a done run ``metrics.json`` comes last (the complete marker)."""
        run_dir = self.run_dir(run_id)
        record = {"status": status, "error": error, "seconds": round(seconds, 3)}
        if status != "done":
            record["metrics"] = metrics
        io.write_json(run_dir / "status.json", record)
        if status == "done":
            io.write_json(run_dir / "metrics.json", metrics)

    def record(self, run: dict) -> RunRecord | None:
        """The finished run ``run`` (an entry of plan.json), or None if pending / interrupted."""
        run_dir = self.run_dir(run["run_id"])
        common = dict(
            run_id=run["run_id"],
            params=run["params"],
            seed=run["seed"],
            run_dir=run_dir,
            sweep_values=run["sweep_values"],
        )
        metrics = _read_json(run_dir / "metrics.json")
        if isinstance(metrics, dict):
            return RunRecord(status="done", metrics=metrics, error=None, **common)
        status = _read_json(run_dir / "status.json")
        if isinstance(status, dict) and status.get("status") in ("failed", "diverged"):
            return RunRecord(
                status=status["status"],
                metrics=status.get("metrics") or {},
                error=status.get("error"),
                **common,
            )
        return None
