"""A suite: one YAML file that runs several experiment files in order (the quickstart tour).

    name: quickstart
    description: A short tour ...
    suite:                               # experiment files, run in this order
      - experiments/quickstart/spiral.yaml
      - experiments/quickstart/theorem.yaml

Every part is loaded and validated before anything runs. Part ``P`` writes
its usual results folder under ``runs/<suite name>/<P's name>/`` (git-ignored;
``results/`` with ``--reference``; resumable like any experiment), and the suite
writes ``runs/<suite name>/report.md``:
one section per part with its run counts, its figures and a link to its report.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import yaml

from manifold_lab import io
from manifold_lab.errors import UsageError
from manifold_lab.experiment.spec import Spec, display_path, load_spec

SUITE_KEYS = ("name", "description", "suite")


def is_suite(path: str | Path) -> bool:
    """True when the YAML file at ``path`` is a mapping with a ``suite`` key."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False  # load_spec reports the problem precisely
    return isinstance(data, dict) and "suite" in data


@dataclass
class Suite:
    name: str
    description: str
    parts: list[Spec]
    source: Path


def load_suite(path: str | Path, overrides=()) -> Suite:
    """Validate the suite file and every part; ``UsageError`` naming the problem otherwise."""
    path = Path(path)
    shown = display_path(path)
    if overrides:
        raise UsageError(f"{shown} is a suite: key=value overrides apply to single experiment files; "
                         f"run a part ({', '.join(map(str, yaml.safe_load(path.read_text())['suite']))}) to override it")
    data = yaml.safe_load(path.read_text())
    for key in data:
        if key not in SUITE_KEYS:
            close = difflib.get_close_matches(str(key), SUITE_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"{shown}: unknown key {key!r}{hint}; a suite has {', '.join(SUITE_KEYS)}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise UsageError(f"{shown}: 'name' must be a non-empty string")
    entries = data["suite"]
    if not isinstance(entries, list) or not entries or not all(isinstance(e, str) for e in entries):
        raise UsageError(f"{shown}: 'suite' must be a non-empty list of experiment files")
    parts = []
    for entry in entries:
        candidate = Path(entry) if Path(entry).exists() else path.parent / entry
        if not candidate.exists():
            raise UsageError(f"{shown}: suite entry {entry!r} does not exist")
        parts.append(load_spec(candidate))
    names = [p.name for p in parts]
    if len(set(names)) != len(names):
        raise UsageError(f"{shown}: suite parts need distinct names, got {names}")
    return Suite(name, str(data.get("description") or "").strip(), parts, path)


def write_suite_report(suite: Suite, root: Path, lines: list[str], command: str) -> Path:
    """``root/report.md``: one section per part: its answer (the numbers its own report
    opens with), its summary line, its figures and a link to its report."""
    from manifold_lab.experiment.report import aggregate, headline

    out = [f"# {suite.name}", "", suite.description, "", "Regenerate (completed runs are skipped):", "",
           f"    {command}", ""]
    for spec, line in zip(suite.parts, lines):
        part = root / spec.name
        out += [f"## {spec.name}", "", spec.description.strip(), "", *headline(aggregate(part), f"{spec.name}/"),
                f"`{line}`. Full report: [{spec.name}/report.md]({spec.name}/report.md).", ""]
        for fig in sorted((part / "figures").glob("*.png")):
            out += [f"![{fig.stem}]({spec.name}/figures/{fig.name})", ""]
    return io.write_text(root / "report.md", "\n".join(out))
