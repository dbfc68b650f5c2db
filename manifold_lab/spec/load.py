"""Experiment specs: load a YAML file, merge presets and overrides, validate it.

A spec is a YAML mapping with the top-level keys

``name``
    The experiment name (letters, digits, ``_ . -``). A user's runs go to
    ``runs/<name>/`` (git-ignored, ``USER_ROOT``); the committed reference
    results to ``results/<name>/`` (``REFERENCE_ROOT``), written only by
    ``manifold-lab run SPEC --reference``.
``kind``
    One of the registered experiment kinds (``manifold_lab.kinds``).
``description``
    Optional free text shown in the report.
``include``
    Optional list of preset files (partial specs with the same keys, which may include
    others), e.g. ``configs/optim/cifar_sgd.yaml``, looked up relative to the current
    directory, then to the including file's folder and each of its parents.
``params``
    The kind's parameters, validated by the kind's pydantic model.
``sweep``
    A mapping from a dotted path under ``params`` (``width``, ``block.act``) to a
    non-empty list of values, plus ``seeds: [...]`` (non-negative integers; default ``[0]``).
``output``
    Optional reference results folder, the one ``--reference`` writes (default ``results/<name>``).
``contrast``
    Optional: the headline comparison the study exists for, which every report opens
    with: ``{factor: model.bottleneck_act, a: relu6, b: identity, metric: test_acc}``
    compares ``b - a`` of ``metric`` (here linear - relu6, the paper's prediction positive;
    a fraction in percentage points) over shared seeds at each setting of the other
    factors. ``factor`` is a swept path (or its unique last component), ``a`` and
    ``b`` two of its values.
``reuse``
    Optional list of other experiments' results folders: a run of this plan that
    one of them completed under the same run id (same kind, parameters and seed)
    is copied from there, not run again (Figure 6b reuses Figure 6a's linear runs).
``jobs``
    Optional: how many runs ``manifold-lab run`` trains at once without ``--jobs`` (default 1,
    at most ``MAX_JOBS``; ``configs/cifar_cpu_budget.yaml`` sets 2 with one torch thread per
    run, the winner of ``benchmarks/bench_cifar_budget.py``). It never changes a run's
    parameters or id.
``launcher``
    Optional settings of ``--launcher slurm`` / ``local`` (partition, time limit, GPUs and CPUs
    per run, ...): ``spec.launcher.LauncherConfig``, used by ``manifold_lab.execution.launch``.

Merge order: the includes in order (each one after its own includes), then the file
itself, then the command-line overrides ``key.path=value`` (the value is parsed as YAML:
``params.train.epochs=3``, ``sweep.seeds=[0,1,2]``; for the sweep the whole rest of the key
is one dotted path: ``sweep.block.act=[relu,identity]``). Mappings merge key by key,
recursively; anything else (lists included) is replaced.

Everything is checked before any work starts and before anything is written: YAML
syntax, duplicate keys, unknown keys at any depth (with a "did you mean"), types and
ranges, unknown kinds, sweep paths that are not parameters, and every grid point's
parameters; each problem is one ``UsageError`` line naming the file:line:column (or the
override) it comes from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from manifold_lab.errors import UsageError
from manifold_lab.kinds import Kind, get_kind
from manifold_lab.spec.bounds import MAX_NODES, MAX_RUN_SECONDS, MAX_RUNS, data_size, first_non_finite
from manifold_lab.spec.checks import check_contrast, check_override_keys, check_sweep, explain
from manifold_lab.spec.launcher import LauncherConfig
from manifold_lab.spec.sources import apply_override, display_path, dotted, load_with_includes, origin
from manifold_lab.spec.sweep import canonical_json, format_values, grid, set_path

__all__ = ["NAME_PATTERN", "REFERENCE_ROOT", "USER_ROOT", "GridPoint", "Spec", "load_spec"]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

USER_ROOT = Path("runs")
REFERENCE_ROOT = Path("results")

#: The most runs a spec's ``jobs:`` may ask to train at once.
MAX_JOBS = 256


class _SpecModel(pydantic.BaseModel):
    """The top level of a spec (after merging)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    name: str = pydantic.Field(pattern=NAME_PATTERN)
    kind: str
    description: str = ""
    include: list[str] = []
    params: dict[str, Any] = {}
    sweep: dict[str, Any] = {}
    output: str | None = None
    reuse: list[str] = []
    launcher: dict[str, Any] = {}
    contrast: dict[str, Any] | None = None
    jobs: int | None = pydantic.Field(None, ge=1, le=MAX_JOBS)


@dataclass(frozen=True)
class GridPoint:
    """One point of the sweep grid: the swept values and the validated params."""

    values: dict[str, Any]
    params: pydantic.BaseModel


@dataclass(frozen=True)
class Spec:
    """A validated experiment (the keys are those of the module docstring).

    ``params`` are the base parameters (file + presets + overrides, no sweep applied),
    ``raw_params`` the merged ``params:`` mapping as written (before defaults); ``sweep``
    maps a dotted param path to its values, in spec order (``seeds`` excluded); ``points``
    is the validated grid (one point, ``{}``, without a sweep). ``output`` is where a
    user's runs go, ``runs/<name>``; ``reference`` the committed results folder.
    ``launcher`` is a ``LauncherConfig`` or None when absent. ``no_reuse``: ``run
    --no-reuse`` ignores the ``reuse:`` folders (``reuse`` is then empty), and the
    recorded command says so. ``runs``: ``run --runs`` (``sweep.run_indices``), the part of
    the plan this invocation trains (a pre-registered part of a study); the recorded command
    says so.
    """

    name: str
    description: str
    kind: Kind
    params: pydantic.BaseModel
    raw_params: dict
    sweep: dict[str, list]
    seeds: tuple[int, ...]
    points: tuple[GridPoint, ...]
    output: Path
    source: Path | None
    overrides: tuple[str, ...]
    reuse: tuple[Path, ...] = ()
    launcher: Any = None
    reference: Path | None = None
    contrast: dict | None = None
    jobs: int = 1
    no_reuse: bool = False
    runs: str | None = None

    def resolved(self) -> dict:
        """The spec as one self-contained mapping (no includes), for ``spec.yaml``."""
        return {
            "name": self.name,
            "kind": self.kind.name,
            "description": self.description,
            "params": self.params.model_dump(mode="json"),
            "sweep": {**self.sweep, "seeds": list(self.seeds)},
            **({"reuse": [str(folder) for folder in self.reuse]} if self.reuse else {}),
            **({"contrast": dict(self.contrast)} if self.contrast else {}),
            **({"jobs": self.jobs} if self.jobs != 1 else {}),
            **({"overrides": list(self.overrides)} if self.overrides else {}),
        }


def _check_runnable(kind: Kind, points: list[GridPoint], allow_long: bool, where: str) -> None:
    """The kind's own checks (``Kind.check``: this machine can run it) and cost bound, per distinct point."""
    seen: set[str] = set()
    for point in points:
        text = canonical_json(point.params.model_dump(mode="json"))
        if text in seen:
            continue
        seen.add(text)
        note = f" [in the sweep point {format_values(point.values)}]" if point.values else ""
        if kind.check is not None:
            try:
                kind.check(point.params)
            except ValueError as exc:
                raise UsageError(f"{where}: params: {' '.join(str(exc).split())}{note}") from None
        if kind.estimate_seconds is not None and not allow_long:
            seconds = float(kind.estimate_seconds(point.params))
            if seconds > MAX_RUN_SECONDS:
                raise UsageError(f"{where}: one run of kind {kind.name!r}{note} is estimated at {seconds / 3600:,.1f} "
                                 f"h of CPU time, more than the {MAX_RUN_SECONDS / 3600:g} h a run may take without "
                                 "--allow-long; use smaller sizes or pass --allow-long")


def load_spec(path: str | Path, overrides: Sequence[str] = (), *, allow_long: bool = False) -> Spec:
    """Load the YAML file ``path``, merge it with its includes and the ``key.path=value`` ``overrides``
    (see the module docstring), and validate it: a ``Spec``, or a ``UsageError`` line naming the
    file:line:column (or override) and the problem. ``allow_long`` (``--allow-long``) accepts runs
    whose estimated time (``Kind.estimate_seconds``) exceeds ``bounds.MAX_RUN_SECONDS``.
    """
    path = Path(path)
    shown = display_path(path)
    data, origins = load_with_includes(path, shown, (path.resolve(),))
    total = data_size(data)[0]
    for text in overrides:
        data, added = apply_override(data, origins, text)
        total += added
        if total > MAX_NODES:
            raise UsageError(f"{shown}: the spec, its includes and overrides hold more than {MAX_NODES:,} values "
                             "(the limit)")

    check_override_keys(overrides, data.get("kind"), list(_SpecModel.model_fields))
    try:
        top = _SpecModel.model_validate(data)
    except pydantic.ValidationError as exc:
        raise UsageError(explain(exc, _SpecModel, (), origins, shown)) from None
    try:
        kind = get_kind(top.kind)
    except ValueError as exc:
        raise UsageError(f"{origin(origins, ('kind',), shown)}: {exc}") from None

    def check_finite(tree: Any, section: str, sweep_note: str = "") -> None:
        found = first_non_finite(tree, (section,))
        if found is not None:
            raise UsageError(f"{origin(origins, found[0], shown)}: {dotted(found[0])}: {found[1]} is not a finite "
                             f"number; parameters take finite numbers only{sweep_note}")

    def build(params: dict, sweep_note: str = "") -> pydantic.BaseModel:
        try:
            model = kind.params.model_validate(params)
        except pydantic.ValidationError as exc:
            raise UsageError(f"{explain(exc, kind.params, ('params',), origins, shown)}{sweep_note}") from None
        check_finite(model.model_dump(), "params", sweep_note)  # e.g. the string "1e400" read as a float
        return model

    check_finite(top.params, "params")
    check_finite(top.sweep, "sweep")
    base = build(top.params)
    launcher = None
    if top.launcher:
        try:
            launcher = LauncherConfig.model_validate(top.launcher)
        except pydantic.ValidationError as exc:
            raise UsageError(explain(exc, LauncherConfig, ("launcher",), origins, shown)) from None
    sweep, seeds = check_sweep(top.sweep, kind, origins, shown)
    n_points = math.prod(len(values) for values in sweep.values())
    if n_points * len(seeds) > MAX_RUNS:
        raise UsageError(f"{origin(origins, ('sweep',), shown)}: the sweep has {n_points:,} grid points x "
                         f"{len(seeds)} seeds = {n_points * len(seeds):,} runs, more than an experiment may have "
                         f"({MAX_RUNS:,}, the limit); split it into several experiments")
    contrast = check_contrast(top.contrast, sweep, origins, shown, narrowed=any(o.startswith("sweep.") for o in overrides)
                               and not any(o.startswith("contrast") for o in overrides))
    # From here on a bad value of a swept parameter comes from the sweep.
    for key in sweep:
        origins[("params", *key.split("."))] = origin(origins, ("sweep", key), shown)
    points = []
    for values in grid(sweep):
        params = top.params
        for key, value in values.items():
            try:
                params = set_path(params, key, value)
            except ValueError as exc:
                raise UsageError(f"{origin(origins, ('sweep', key), shown)}: sweep key {key!r}: {exc}") from None
        note = f" [in the sweep point {format_values(values)}]" if values else ""
        points.append(GridPoint(values=values, params=build(params, note)))
    _check_runnable(kind, points, allow_long, shown)

    return Spec(name=top.name, description=top.description, kind=kind, params=base, raw_params=top.params,
                sweep=sweep, seeds=seeds, points=tuple(points), output=USER_ROOT / top.name, source=path,
                overrides=tuple(overrides), reuse=tuple(Path(folder) for folder in top.reuse), launcher=launcher,
                reference=Path(top.output) if top.output else REFERENCE_ROOT / top.name, contrast=contrast,
                jobs=top.jobs or 1)

