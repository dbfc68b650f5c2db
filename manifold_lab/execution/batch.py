"""Seed-batched execution: compatible runs of a sweep trained together, one folder per run.

``manifold-lab run SPEC --batch-runs K`` groups the pending runs whose kind gives equal
``batch_key``s (for ``mobilenetv2``: the same configuration up to seed and activations,
``manifold_lab.train.batched``) into groups of at most ``K``, in plan order, and executes each
group with the kind's ``run_batch`` (one stacked network). Every member keeps its own run
folder exactly as a run executed alone: its lock, ``config.yaml``, ``status.json``,
``metrics.json``, ``run.log``, ``provenance.json`` (with a ``batch`` entry naming the group's
run ids) and the kind's own files. A member that diverges is ``diverged`` on its own; if the
group as a whole raises (a member's data missing, say), its members are executed again one by
one, so that only the faulty ones fail.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

from manifold_lab.execution.one_run import (STALE_LOCK_WAIT, _one_line, _run_logger, check_metrics, close_logger,
                                            execute_run, finish_run, run_config, start_provenance)
from manifold_lab.execution.store import ResultsStore
from manifold_lab.kinds import Kind, RunContext
from manifold_lab.spec.sweep import PlannedRun


def group_runs(kind: Kind, runs: Sequence[PlannedRun], size: int) -> list[list[PlannedRun]]:
    """``runs`` in groups of at most ``size`` sharing ``kind.batch_key``; singletons where the kind cannot batch.

    Groups keep the plan order of their first run, and members keep plan order inside a group.
    """
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    if size == 1 or kind.run_batch is None or kind.batch_key is None:
        return [[run] for run in runs]
    open_groups: dict[str, list[PlannedRun]] = {}
    groups: list[list[PlannedRun]] = []
    for run in runs:
        key = kind.batch_key(kind.params.model_validate(run.params))
        if key is None:
            groups.append([run])
            continue
        group = open_groups.get(key)
        if group is None or len(group) >= size:
            group = open_groups[key] = []
            groups.append(group)
        group.append(run)
    return groups


def execute_batch(kind: Kind, runs: list[PlannedRun], root: str | os.PathLike, name: str,
                  show_progress: bool = False, fresh: bool = False) -> list[tuple[str, str | None]]:
    """Execute ``runs`` as one ``kind.run_batch`` call; ``(status, error)`` per run, in order."""
    if len(runs) == 1:
        return [execute_run(kind, runs[0], root, name, show_progress, fresh)]
    store = ResultsStore(root)
    ids = [r.run_id for r in runs]
    with contextlib.ExitStack() as stack:
        for run in runs:
            stack.enter_context(store.lock_run(run.run_id, wait_stale=STALE_LOCK_WAIT))
        dirs = [store.begin(run.run_id, run_config(kind, run, name), fresh=fresh) for run in runs]
        loggers = [_run_logger(d, r.run_id) for d, r in zip(dirs, runs)]
        records = [start_provenance(run, batch={"size": len(runs), "run_ids": ids}) for run in runs]
        error = None
        try:
            members = []
            for run, run_dir, (log, _) in zip(runs, dirs, loggers):
                log.info("run %s: kind %s, seed %d, %s; seed-batched with %s", run.run_id, kind.name, run.seed,
                         run.sweep_values, ", ".join(i for i in ids if i != run.run_id))
                members.append((kind.params.model_validate(run.params), run.seed,
                                RunContext(run_dir=run_dir, seed=run.seed, log=log, show_progress=show_progress)))
            results = kind.run_batch(members)
            if not isinstance(results, list) or len(results) != len(runs):
                raise RuntimeError(f"run_batch returned {type(results).__name__}, expected {len(runs)} results")
            outcomes = [check_metrics(r) for r in results]
        except Exception as exc:  # noqa: BLE001 - the group failed as a whole: retry its members alone
            error = _one_line(exc)
            for log, _ in loggers:
                log.exception("the seed-batched group failed; this run is executed again alone")
        for i, (run, run_dir, (log, handler)) in enumerate(zip(runs, dirs, loggers)):
            if error is None:
                outcomes[i] = finish_run(store, run.run_id, run_dir, records[i], *outcomes[i], log, handler,
                                         " (the group's time)")
            else:
                close_logger(log, handler)
    if error is not None:
        return [execute_run(kind, run, root, name, show_progress, fresh=False) for run in runs]
    return outcomes


#: Runs trained together by default on a CUDA device: 8 stacked networks gave 4.41x the images/s of one
#: on the H200 (benchmarks/README.md); on 2 CPU cores two batched runs gave 0.83x of --jobs 2, so 1 there.
GPU_BATCH_RUNS = 8


def default_batch_runs(spec) -> int:
    """``GPU_BATCH_RUNS`` when the spec's kind can batch and every grid point trains on CUDA (``train.device``
    ``cuda``/``cuda:N``, or ``auto`` with a CUDA device here); else 1."""
    if spec.kind.run_batch is None:
        return 1
    devices = {getattr(getattr(point.params, "train", None), "device", None) for point in spec.points}
    if None in devices or "cpu" in devices:
        return 1
    import torch

    return GPU_BATCH_RUNS if torch.cuda.is_available() else 1
