"""Whose results folder is it: one experiment per folder, unless the user says otherwise.

A results folder belongs to the experiment whose ``spec.yaml`` it holds (written
by ``manifold_lab.execution.runner``): its ``name``, its ``kind`` and the spec
file named in its ``command``. Two specs with the same name (so the same default
folder ``runs/<name>/``) but another kind, or another spec file, would
otherwise replace each other's ``spec.yaml``, ``plan.json`` and report in turn.
``check_owner`` refuses that with one line before anything is written; the
user asks for it with ``--replace`` (the folder's runs stay: their ids differ
whenever the kind or the parameters do).

A suite's folder ``runs/<suite>/`` holds its parts' folders and its
``report.md``; ``check_suite_root`` refuses a folder that holds an
experiment's ``spec.yaml`` (the suite's report would replace the experiment's).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import yaml

from manifold_lab.errors import UsageError
from manifold_lab.spec.bounds import MAX_SPEC_BYTES, safe_load_bounded

__all__ = ["check_owner", "check_suite_root"]

SPEC_FILE = "spec.yaml"
_ASK = "use --out to write elsewhere, or --replace to write this experiment there anyway"


def _recorded(root: Path) -> dict | None:
    """The ``spec.yaml`` of ``root`` as a mapping, or None (missing, a link, too large or unreadable)."""
    path = root / SPEC_FILE
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_SPEC_BYTES:
            return None
        data = safe_load_bounded(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def _recorded_source(recorded: dict) -> Path | None:
    """The spec file named by the recorded command ``manifold-lab run FILE ...``, if it names one."""
    try:
        words = shlex.split(command) if isinstance(command := recorded.get("command"), str) else []
    except ValueError:
        return None
    return Path(words[2]) if len(words) >= 3 and words[1] == "run" else None


def check_owner(root: str | os.PathLike, name: str, kind: str, source: Path | None, *, replace: bool = False) -> None:
    """Raise UsageError when ``root`` holds another experiment (another name, kind or spec file).

    A spec file counts as another one only when the recorded one still exists
    (relative to the current directory) and is a different file, so a renamed or
    moved spec is not refused. Nothing is checked with ``replace``.
    """
    root = Path(root)
    recorded = None if replace else _recorded(root)
    if recorded is None:
        return
    old_name, old_kind = recorded.get("name"), recorded.get("kind")
    if (old_name, old_kind) != (name, kind):
        raise UsageError(f"{root} holds the results of experiment {old_name!r} (kind {old_kind!r}), not "
                         f"{name!r} (kind {kind!r}); {_ASK}")
    old_source = _recorded_source(recorded)
    if source is None or old_source is None:
        return
    try:
        other = old_source.is_file() and not os.path.samefile(old_source, source)
    except OSError:
        other = False
    if other:
        raise UsageError(f"{root} holds the results of experiment {name!r} from the spec file {old_source}, "
                         f"not {source}; {_ASK}")


def check_suite_root(root: str | os.PathLike, *, replace: bool = False) -> None:
    """Raise UsageError when a suite's folder ``root`` is an experiment's results folder."""
    root = Path(root)
    if not replace and (root / SPEC_FILE).exists():
        raise UsageError(f"{root} is the results folder of an experiment (it holds {SPEC_FILE}); a suite writes "
                         f"its report.md there; {_ASK}")
