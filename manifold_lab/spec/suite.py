"""A suite: one YAML file that runs several experiment files in order (the quickstart tour).

    name: quickstart
    description: A short tour ...
    suite:                               # experiment files, run in this order
      - experiments/quickstart/spiral.yaml
      - experiments/quickstart/theorem.yaml

Every part is loaded and validated before anything runs. Part ``P`` writes
its usual results folder under ``runs/<suite name>/<P's name>/`` (git-ignored;
``results/`` with ``--reference``; resumable like any experiment), and the suite
writes ``runs/<suite name>/report.md`` (``manifold_lab.reporting.report.write_suite_report``):
one section per part with its run counts, its figures and a link to its report.

A suite may declare ``gates`` (applied by ``manifold-lab campaign`` and ``manifold-lab run SUITE.yaml``:
``manifold_lab.execution.gates``)::

    gates:
      - after: figure6a_converged_cifar10        # a part's name
        arm: {model.bottleneck_act: identity}    # {dotted param: value}: that part's runs of this arm
        metric: test_acc                         # a number in each run's metrics.json
        at_least: 0.92                           # the mean over those runs must reach this
        why: the recipe is revised first         # optional: said when the campaign stops there

No group of runs outside the arm (of that part or any later one) starts until all the arm's runs are
complete and the mean of ``metric`` over them is at least ``at_least``.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from manifold_lab.errors import UsageError
from manifold_lab.spec.load import NAME_PATTERN, Spec, load_spec
from manifold_lab.spec.sources import display_path, load_yaml

SUITE_KEYS = ("name", "description", "suite", "gates")
GATE_KEYS = ("after", "arm", "metric", "at_least", "why")
#: Most experiment files of one suite (each is loaded and validated before anything runs).
MAX_PARTS = 64


def is_suite(path: str | Path) -> bool:
    """True when the YAML file at ``path`` is a mapping with a ``suite`` key."""
    try:
        data, _ = load_yaml(Path(path), str(path))
    except (OSError, ValueError):
        return False  # load_spec reports the problem precisely
    return "suite" in data


@dataclass(frozen=True)
class Gate:
    """A suite's gate (module docstring): ``arm`` is ``((dotted param, value), ...)`` in file order."""

    after: str
    arm: tuple[tuple[str, Any], ...]
    metric: str
    at_least: float
    why: str = ""

    def matches(self, params: dict) -> bool:
        """True when the resolved ``params`` of a run have every value of the arm."""
        return all(_lookup(params, key) == (True, value) for key, value in self.arm)

    @property
    def arm_text(self) -> str:
        """``model.bottleneck_act=identity`` (the arm, as ``format_values`` writes sweep values)."""
        from manifold_lab.spec.sweep import format_values

        return format_values(dict(self.arm))


@dataclass
class Suite:
    name: str
    description: str
    parts: list[Spec]
    source: Path
    gates: tuple[Gate, ...] = ()


def _lookup(params: Any, dotted: str) -> tuple[bool, Any]:
    """``(True, value)`` at the dotted path of ``params``; if absent, ``(False, the dotted paths valid where it
    stops)``."""
    node, prefix = params, ""
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False, [prefix + str(k) for k in node] if isinstance(node, dict) else []
        node, prefix = node[key], f"{prefix}{key}."
    return True, node


def load_suite(path: str | Path, overrides=(), *, allow_long: bool = False) -> Suite:
    """Validate the suite file and every part; ``UsageError`` naming the problem otherwise.

    The suite's ``name`` is checked like an experiment's (letters, digits, ``_ . -``, not
    starting with a dot), so its folder ``runs/<name>/`` (``results/<name>/``) stays under ``runs/`` (``results/``).
    """
    path = Path(path)
    shown = display_path(path)
    data, _ = load_yaml(path, shown)
    if overrides:
        raise UsageError(f"{shown} is a suite: key=value overrides apply to single experiment files; "
                         "run one of its parts to override it")
    for key in data:
        if key not in SUITE_KEYS:
            close = difflib.get_close_matches(str(key), SUITE_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"{shown}: unknown key {key!r}{hint}; a suite has {', '.join(SUITE_KEYS)}")
    name = data.get("name")
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise UsageError(f"{shown}: the suite's name must be letters, digits and _ . - not starting with "
                         f"a dot or a dash (it names the suite's folder, runs/<name> or results/<name>), got {name!r}")
    entries = data["suite"]
    if not isinstance(entries, list) or not entries or not all(isinstance(e, str) for e in entries):
        raise UsageError(f"{shown}: 'suite' must be a non-empty list of experiment files")
    if len(entries) > MAX_PARTS:
        raise UsageError(f"{shown}: a suite has at most {MAX_PARTS} parts, got {len(entries):,}")
    if len(set(entries)) != len(entries):
        raise UsageError(f"{shown}: suite entries repeat a file: {sorted(e for e in set(entries) if entries.count(e) > 1)}")
    parts = []
    for entry in entries:
        candidate = Path(entry) if Path(entry).exists() else path.parent / entry
        if not candidate.exists():
            raise UsageError(f"{shown}: suite entry {entry!r} does not exist")
        parts.append(load_spec(candidate, allow_long=allow_long))
    names = [p.name for p in parts]
    if len(set(names)) != len(names):
        raise UsageError(f"{shown}: suite parts need distinct names, got {names}")
    gates = _load_gates(data.get("gates"), parts, shown) if "gates" in data else ()
    return Suite(name, str(data.get("description") or "").strip(), parts, path, gates)


def _load_gates(entries: Any, parts: list[Spec], shown: str) -> tuple[Gate, ...]:
    """The validated ``gates`` (module docstring); ``UsageError``, one line naming the problem, otherwise."""
    from manifold_lab.spec.sweep import format_value, plan

    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise UsageError(f"{shown}: 'gates' must be a list of mappings {{{', '.join(GATE_KEYS)}}}")
    by_name = {p.name: p for p in parts}
    gates = []
    for i, entry in enumerate(entries):
        where = f"{shown}: gates[{i}]"
        for key in entry:
            if key not in GATE_KEYS:
                close = difflib.get_close_matches(str(key), GATE_KEYS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise UsageError(f"{where}: unknown key {key!r}{hint}; a gate has {', '.join(GATE_KEYS)} (why optional)")
        missing = [k for k in GATE_KEYS[:-1] if k not in entry]
        if missing:
            raise UsageError(f"{where} needs {', '.join(GATE_KEYS[:-1])} (why optional); missing: {', '.join(missing)}")
        after, arm, metric, at_least, why = (entry.get(k) for k in GATE_KEYS)
        if not isinstance(after, str) or after not in by_name:
            raise UsageError(f"{where}.after must be the name of one of the suite's parts "
                             f"({', '.join(by_name)}), got {after!r}")
        part = by_name[after]
        if not isinstance(arm, dict) or not arm or not all(isinstance(k, str) for k in arm):
            raise UsageError(f"{where}.arm must be a non-empty mapping {{dotted param: value}} of {after}'s "
                             f"parameters, got {arm!r}")
        params = part.points[0].params.model_dump(mode="json")
        for key in arm:
            found, valid = _lookup(params, key)
            if not found:
                depth = valid[0].count(".") + 1 if valid else 0  # the part of the key that is not there
                close = difflib.get_close_matches(".".join(key.split(".")[:depth]), valid, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise UsageError(f"{where}.arm: {after} has no parameter {key!r}{hint}; "
                                 f"valid there: {', '.join(valid) or 'none (a value, not a mapping)'}")
        if not isinstance(metric, str) or not metric.strip():
            raise UsageError(f"{where}.metric must be a non-empty string (a metric of each run's metrics.json, "
                             f"e.g. test_acc), got {metric!r}")
        if isinstance(at_least, bool) or not isinstance(at_least, (int, float)) or not math.isfinite(at_least):
            raise UsageError(f"{where}.at_least must be a finite number, got {at_least!r}")
        if why is not None and not isinstance(why, str):
            raise UsageError(f"{where}.why must be text, got {why!r}")
        gate = Gate(after, tuple(arm.items()), metric.strip(), float(at_least), " ".join((why or "").split()))
        runs = plan(part)
        if not any(gate.matches(r.params) for r in runs):
            values = {k: sorted({format_value(_lookup(r.params, k)[1]) for r in runs}) for k in arm}
            raise UsageError(f"{where}.arm {gate.arm_text} matches none of {after}'s {len(runs)} planned runs "
                             f"(their values: {'; '.join(f'{k}: ' + ', '.join(v) for k, v in values.items())})")
        gates.append(gate)
    return tuple(gates)
