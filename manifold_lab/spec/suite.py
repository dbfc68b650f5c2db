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
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from manifold_lab.errors import UsageError
from manifold_lab.spec.load import NAME_PATTERN, Spec, load_spec
from manifold_lab.spec.sources import display_path, load_yaml

SUITE_KEYS = ("name", "description", "suite")
#: Most experiment files of one suite (each is loaded and validated before anything runs).
MAX_PARTS = 64


def is_suite(path: str | Path) -> bool:
    """True when the YAML file at ``path`` is a mapping with a ``suite`` key."""
    try:
        data, _ = load_yaml(Path(path), str(path))
    except (OSError, ValueError):
        return False  # load_spec reports the problem precisely
    return "suite" in data


@dataclass
class Suite:
    name: str
    description: str
    parts: list[Spec]
    source: Path


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
    return Suite(name, str(data.get("description") or "").strip(), parts, path)
