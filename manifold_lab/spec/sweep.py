"""Sweeps: the grid of parameter values times the seeds, and stable run ids.

Expansion order (stable, documented in ``configs/README.md``): the grid is the
Cartesian product of the swept values, keys in the order they appear in the
merged spec, the *last* key varying fastest (``itertools.product``); every
grid point is repeated for each seed, seeds innermost. Run ``i`` is therefore
grid point ``i // len(seeds)`` with seed ``seeds[i % len(seeds)]``.

A run id is the first 12 hex digits of the SHA-256 of the canonical JSON of
``{"kind", "params", "seed"}`` (keys sorted, no whitespace), with ``params``
the kind's *resolved* parameters (defaults filled in). It does not depend on
the order of keys in a file, the experiment name or the output folder, and
changes whenever anything that can change the result changes.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from manifold_lab.errors import UsageError

RUN_ID_LENGTH = 12


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal objects give equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)


def run_id(kind: str, params: Mapping[str, Any], seed: int) -> str:
    """Stable short id of one run: ``sha256(canonical_json(kind, params, seed))[:12]``."""
    text = canonical_json({"kind": kind, "params": params, "seed": int(seed)})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:RUN_ID_LENGTH]


def set_path(tree: dict, path: str | Sequence[str], value: Any) -> dict:
    """Return a deep copy of ``tree`` with ``value`` at ``path`` (creating mappings).

    ``path`` is a dotted string (``"block.width"``) or a sequence of keys.
    """
    out = copy.deepcopy(tree)
    node = out
    parts = path.split(".") if isinstance(path, str) else list(path)
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ValueError(f"{'.'.join(parts[: i + 1])!r} is {type(child).__name__}, not a mapping")
        node = child
    node[parts[-1]] = copy.deepcopy(value)
    return out


def grid(sweep: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The grid points ``[{key: value, ...}, ...]``; the last key varies fastest.

    An empty sweep has one grid point, ``{}`` (the base parameters).
    """
    keys = list(sweep)
    return [dict(zip(keys, values)) for values in itertools.product(*(sweep[k] for k in keys))]


@dataclass(frozen=True)
class PlannedRun:
    """One run of the plan: its position (``--run-index``), id, grid point (index and ``{dotted path: value}``),
    seed and resolved parameters (JSON-like, defaults filled in)."""

    index: int
    run_id: str
    point: int
    sweep_values: dict
    seed: int
    params: dict


def plan(spec) -> list[PlannedRun]:
    """Expand a validated spec (``manifold_lab.spec.load.Spec``) into its runs (grid points outer, seeds inner)."""
    runs: list[PlannedRun] = []
    for p, point in enumerate(spec.points):
        params = point.params.model_dump(mode="json")
        for seed in spec.seeds:
            runs.append(PlannedRun(index=len(runs), run_id=run_id(spec.kind.name, params, seed), point=p,
                                   sweep_values=dict(point.values), seed=seed, params=params))
    return runs


def run_indices(text: str, n_runs: int) -> frozenset[int]:
    """The plan indices that ``run --runs TEXT`` selects: comma-separated indices and inclusive ranges, e.g.
    ``0-48`` or ``0-10,12,20-24`` (as Slurm's ``--array``); one ``UsageError`` line otherwise, or when an index
    is outside the plan (runs ``0..n_runs - 1``)."""
    chosen: set[int] = set()
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise UsageError(f"--runs {text!r}: expected run indices and ranges like 0-48 or 0-10,12,20-24 "
                             "(the indices of --list)")
        low, high = int(m.group(1)), int(m.group(2) or m.group(1))
        if high >= n_runs:
            raise UsageError(f"--runs {text!r}: run {high} is out of range: the plan has runs 0..{n_runs - 1}")
        chosen.update(range(low, high + 1))
    return frozenset(chosen)


def format_values(values: Mapping[str, Any]) -> str:
    """``"width=0.5, act=relu"`` (JSON for non-scalars); ``"-"`` for no values."""
    return ", ".join(f"{k}={format_value(v)}" for k, v in values.items()) if values else "-"


def format_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
