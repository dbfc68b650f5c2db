"""Provenance of a run: what produced its numbers (``runs/<id>/provenance.json``).

``collect(params)`` records, without importing anything heavy:

- ``python``, and ``packages``: the installed versions of torch, numpy, scipy,
  scikit-learn, pydantic and manifold-lab (``importlib.metadata``);
- ``commit`` and ``dirty``: the project's git commit and whether tracked files
  differed from it (None outside a git checkout);
- ``host``, ``platform``, ``cpu`` (model name), ``cpu_count``, ``threads`` (torch's
  intra-op threads when torch is loaded, and the ``*_NUM_THREADS`` variables),
  ``device`` (``params.train.device`` where the kind has one, else ``cpu``) and
  ``gpu`` (the CUDA device name when torch sees one);
- ``command``: the command line, as ``manifold-lab ...``, with values that look like
  credentials replaced by ``REDACTED`` (``redact``, also applied to ``spec.yaml``,
  ``report.md`` and ``submissions.jsonl``).

The runner adds ``started`` and ``finished`` (UTC, ISO 8601). ``differences(records)``
lists the fields whose values differ between runs, for the report.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import platform
import re
import shlex
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["FILE", "VOLATILE", "collect", "command", "cpu_model", "differences", "now", "read", "redact", "use_command"]

FILE = "provenance.json"
#: Fields that differ between any two runs by nature; not reported as differences.
VOLATILE = ("started", "finished", "command")
PACKAGES = ("torch", "numpy", "scipy", "scikit-learn", "pydantic", "manifold-lab")
#: How a runner hands its command line to the worker processes it spawns (``multiprocessing``); read
#: only there, so the variable set by hand does not change what a command records.
COMMAND_ENV = "MANIFOLD_LAB_COMMAND"
_command: str | None = None  # set by ``use_command`` (a launched task: the launcher's command)
REDACTED = "REDACTED"
_SECRET_NAME = (r"[\w.-]*(?:token|secret|passw(?:or)?d|pwd|api[_-]?key|access[_-]?key|private[_-]?key|credential"
                r"|authorization|auth|cookie)s?(?![a-z])[\w-]*")
_VALUE = r"(?:\"[^\"]*\"|'[^']*'|[^\s\"',;&|\]}]+)"
#: ``name=value`` / ``name: value`` / ``--name value`` with a credential-like name; ``Bearer X``; well-known
#: token shapes (GitHub, GitLab, Slack, AWS, OpenAI-style, Hugging Face); the password of ``scheme://user:password@``.
_SECRET = re.compile(
    rf"(?i:(?<![\w.-])({_SECRET_NAME})(\s*[=:]\s*)(?:(?:bearer|basic|token)\s+)?){_VALUE}"
    rf"|(?i:(?<![^\s'\"])(--?{_SECRET_NAME})(\s+))(?!-){_VALUE}"
    r"|(?i:\b(bearer)(\s+))[\w.~+/=-]+"
    r"|\b(?:gh[pousr]_\w{20,}|github_pat_\w{20,}|glpat-[\w-]{20,}|xox[abposr]-[\w-]{10,}|AKIA[0-9A-Z]{16}"
    r"|sk-[\w-]{20,}|hf_\w{20,})"
    r"|(?<=://)([^/\s:@]+:)[^/\s@]+(?=@)")


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def _git() -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the checkout holding this package; ``(None, None)`` outside git."""
    folder = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                                timeout=10)
        if commit.returncode != 0:
            return None, None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else ``platform``)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _threads() -> dict[str, Any]:
    out: dict[str, Any] = {v: os.environ[v] for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if v in os.environ}
    torch = sys.modules.get("torch")  # only if the kind loaded it: provenance imports nothing heavy
    if torch is not None:
        out["torch"] = torch.get_num_threads()
    return out


def _gpu() -> str | None:
    torch = sys.modules.get("torch")
    try:
        return torch.cuda.get_device_name() if torch is not None and torch.cuda.is_available() else None
    except Exception:  # a broken driver must not fail the run
        return None


def redact(value: Any) -> Any:
    """``value`` with what looks like a credential replaced by ``REDACTED``: in a string, the value of
    ``name=value`` or ``name: value`` when the name says token, secret, password, api_key, auth...,
    a ``Bearer`` token, a known token shape (``ghp_...``, ``AKIA...``) or a URL's password; in a mapping
    (nested), also every scalar under such a key. Everything else is returned as it is."""
    if isinstance(value, str):
        return _SECRET.sub(lambda m: "".join(g for g in m.groups() if g) + REDACTED, value)
    if isinstance(value, dict):
        return {k: REDACTED if isinstance(k, str) and re.fullmatch(_SECRET_NAME, k, re.I)
                and not isinstance(v, (dict, list)) else redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def use_command(text: str | None) -> None:
    """Record ``text`` as this process's command (a launched task runs the launcher's command)."""
    global _command
    _command = text


def command() -> str:
    """The command line as typed (``manifold-lab run ...``), redacted: this process's own, the one set by
    ``use_command``, or in a worker spawned by a runner (``multiprocessing``), its runner's."""
    if _command:
        return redact(_command)
    inherited = os.environ.get(COMMAND_ENV) if multiprocessing.parent_process() is not None else None
    return redact(inherited or shlex.join(["manifold-lab", *sys.argv[1:]]))


def collect(params: Mapping | None = None) -> dict[str, Any]:
    """The provenance record of a run with (JSON) ``params`` (see the module docstring)."""
    commit, dirty = _git()
    train = params.get("train") if isinstance(params, Mapping) else None
    device = train.get("device") if isinstance(train, Mapping) and "device" in train else "cpu"
    if device == "auto":  # the device the trainer picks (manifold_lab.train.distributed.pick_device), not "auto"
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return {
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "commit": commit,
        "dirty": dirty,
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": _threads(),
        "device": device,
        "gpu": _gpu(),
        "command": command(),
    }


def read(run_dir: Path) -> dict | None:
    """The run's provenance record, or None (runs recorded before provenance existed)."""
    import json

    from manifold_lab import io
    from manifold_lab.errors import UsageError

    try:
        data = json.loads(io.read_text(Path(run_dir) / FILE))
    except UsageError:  # a link, a fifo, an oversized file: one line naming it
        raise
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _flatten(record: Mapping, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differences(records: Sequence[Mapping | None]) -> tuple[dict[str, dict[str, int]], int]:
    """The fields that differ between the runs' records, and how many runs have none.

    Returns
    -------
    ``({field: {value as text: number of runs}}, missing)`` over the fields (dotted,
    ``packages.torch``) whose values are not all equal, ``VOLATILE`` ones left out.
    """
    present = [_flatten(r) for r in records if r]
    fields = dict.fromkeys(k for flat in present for k in flat if k not in VOLATILE)
    out: dict[str, dict[str, int]] = {}
    for name in fields:
        counts = Counter(str(flat.get(name, "(absent)")) for flat in present)
        if len(counts) > 1:
            out[name] = dict(counts)
    return out, len(records) - len(present)
