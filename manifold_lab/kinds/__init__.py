"""Experiment kinds: the registry and the interface every kind implements.

An experiment *kind* is one kind of study that a YAML spec can name
(``kind: recoverability``). A kind is a module in this package that defines a
module-level ``KIND = Kind(...)``; modules are discovered with ``pkgutil``, so
a new kind is a new file. Kind modules import heavy libraries (torch,
matplotlib) inside ``run`` / ``report`` so that loading the registry, and
therefore validating a spec, stays fast.

The contract::

    KIND = Kind(
        name="my_kind",
        description="one line for listings",
        params=MyParams,     # pydantic model: extra="forbid", every field has a default
        run=run,             # run(params: MyParams, seed: int, ctx: RunContext) -> dict
        report=report,       # optional: report(ctx: ReportContext) -> list[ReportItem]
        check=check,         # optional: check(params) raises ValueError if this machine cannot run it
        estimate_seconds=estimate_seconds,  # optional: estimate_seconds(params) -> CPU seconds of one run
    )

``check`` and ``estimate_seconds`` run when the spec is validated, before any
run starts (see ``Kind``).

``run`` returns the run's *metrics*: a flat dict whose numeric scalars are
aggregated over seeds (``summary.csv``); lists and nested values (curves per
depth or per epoch) are kept in ``metrics.json`` for the kind's own report.
A NaN or infinite scalar metric, or an exception, marks the run ``failed``; a
kind may return ``{"status": "diverged", ...}`` to mark it ``diverged``
(counted as failed). A kind may write extra files into ``ctx.run_dir``
(atomically, through ``manifold_lab.io``).

Plugin hook: the environment variable ``MANIFOLD_LAB_EXTRA_KINDS`` holds a
comma-separated list of importable module names that also define ``KIND``
(the tests use it to register a tiny closed-form kind). ``register(kind)``
adds a kind programmatically.

Kinds sit below the experiment language: they import the library (and
``manifold_lab.stats`` for intervals over seeds), never ``manifold_lab.spec``,
``execution`` or ``reporting``; what a run or a report needs arrives in its
``RunContext`` / ``ReportContext`` (``tests/test_layout.py`` checks the arrows).
"""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

from manifold_lab.errors import UsageError

__all__ = [
    "EXTRA_KINDS_ENV",
    "KINDS",
    "Kind",
    "ReportContext",
    "ReportItem",
    "RunContext",
    "RunRecord",
    "get_kind",
    "register",
]

EXTRA_KINDS_ENV = "MANIFOLD_LAB_EXTRA_KINDS"


@dataclass(frozen=True)
class Kind:
    """One kind of experiment.

    Parameters
    ----------
    name : str
        The value of ``kind:`` in a spec.
    description : str
        One line shown by listings and error messages.
    params : type[pydantic.BaseModel]
        The typed schema of ``params:``. Must forbid extra keys
        (``model_config = ConfigDict(extra="forbid")``) and give every field a
        default, so that a spec may omit any parameter.
    run : callable
        ``run(params, seed, ctx) -> dict`` of metrics (see the module docstring).
    report : callable or None
        ``report(ctx: ReportContext) -> list[ReportItem]``: the kind's figures
        and tables, embedded in ``report.md`` after the generic tables.
    check : callable or None
        ``check(params) -> None``; raises ``ValueError`` (one line naming the
        parameter and the valid choices) for what the schema alone cannot refuse
        (a device not present, a batch larger than the data). Called at
        validation for every distinct grid point.
    estimate_seconds : callable or None
        ``estimate_seconds(params) -> float``: a rough upper estimate of one
        run's CPU time in seconds, from the parameters alone (no work);
        ``load_spec`` refuses a run above ``manifold_lab.spec.bounds.MAX_RUN_SECONDS``
        unless ``--allow-long`` is given.
    bookkeeping : tuple of str
        Metrics that describe the run rather than answer a question (parameter
        counts, epochs, speed, a metric that mirrors another): summarized, never
        compared by paired tests.
    headline : tuple of str
        Metrics a report opens with when its spec declares no ``contrast``
        (default: the first compared metrics).
    warnings : callable or None
        ``warnings(params) -> list[str]``: one line per trap in a valid set of
        parameters (e.g. training that never leaves its warm-up), printed by
        ``manifold-lab run`` before any run starts.
    run_batch : callable or None
        ``run_batch([(params, seed, ctx), ...]) -> [metrics, ...]``: several runs at once
        (``manifold-lab run --batch-runs K``: seed-batched training), each result as ``run``
        returns it, in order.
    batch_key : callable or None
        ``batch_key(params) -> str | None``: runs with equal keys may share one ``run_batch``
        call; None: this run trains alone.
    chance : callable or None
        ``chance(params) -> {metric: level}``: what each accuracy metric of a classifier that
        learned nothing reaches (1 / classes); a report warns when an arm sits there.
    data : callable or None
        ``data(params) -> str``: where a run's data comes from, one line, without reading it;
        raises (``FileNotFoundError`` naming the paths searched) when it is absent. ``--dry-run``
        calls it once per distinct data setting.
    """

    name: str
    description: str
    params: type[pydantic.BaseModel]
    run: Callable[[pydantic.BaseModel, int, "RunContext"], dict]
    report: Callable[["ReportContext"], list["ReportItem"]] | None = None
    check: Callable[[pydantic.BaseModel], None] | None = None
    estimate_seconds: Callable[[pydantic.BaseModel], float] | None = None
    bookkeeping: tuple[str, ...] = ()
    headline: tuple[str, ...] = ()
    warnings: Callable[[pydantic.BaseModel], list[str]] | None = None
    run_batch: Callable[[list], list[dict]] | None = None
    batch_key: Callable[[pydantic.BaseModel], str | None] | None = None
    chance: Callable[[pydantic.BaseModel], dict[str, float]] | None = None
    data: Callable[[pydantic.BaseModel], str] | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"Kind name must be an identifier, got {self.name!r}")
        if not (isinstance(self.params, type) and issubclass(self.params, pydantic.BaseModel)):
            raise ValueError(f"Kind {self.name!r}: params must be a pydantic BaseModel subclass")
        if self.params.model_config.get("extra") != "forbid":
            raise ValueError(
                f"Kind {self.name!r}: {self.params.__name__} must set "
                "model_config = ConfigDict(extra='forbid') so unknown keys are rejected"
            )
        required = [n for n, f in self.params.model_fields.items() if f.is_required()]
        if required:
            raise ValueError(
                f"Kind {self.name!r}: every parameter needs a default; no default for {required}"
            )


@dataclass
class RunContext:
    """What a kind's ``run`` receives besides its params and seed.

    Attributes
    ----------
    run_dir : Path
        The run's own folder ``<results folder>/runs/<id>/`` (exists; the results folder is ``runs/<name>/``, or ``results/<name>/`` with ``--reference``); extra
        files go here, written atomically.
    seed : int
        The run's seed (the same value as the ``seed`` argument of ``run``).
    log : logging.Logger
        Writes to the run's ``run.log``.
    show_progress : bool
        Whether ``progress`` draws a bar (False in worker processes and when
        stderr is not a terminal).
    """

    run_dir: Path
    seed: int
    log: logging.Logger
    show_progress: bool = False

    def progress(
        self, iterable: Iterable, total: int | None = None, desc: str | None = None
    ) -> Iterable:
        """Wrap ``iterable`` in a tqdm bar within the run (a no-op when quiet)."""
        if not self.show_progress:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


@dataclass
class RunRecord:
    """One run as the report sees it.

    Attributes
    ----------
    run_id : str
        Short stable hash of the resolved (kind, params, seed).
    params : dict
        The resolved params (JSON-like; the kind's model dumped).
    seed : int
    status : {"done", "failed", "diverged", "damaged"}
        "diverged" and "damaged" (a metrics.json that is not a valid done
        record, see ``manifold_lab.execution.store``) count as failed.
    metrics : dict
        What ``run`` returned (empty for a failed run).
    run_dir : Path
    error : str or None
        One-line error of a failed / diverged run.
    sweep_values : dict
        ``{dotted sweep path: value}`` of this run's grid point (no seed).
    """

    run_id: str
    params: dict
    seed: int
    status: str
    metrics: dict
    run_dir: Path
    error: str | None = None
    sweep_values: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "done"

    def param(self, path: str) -> Any:
        """The value at a dotted path in ``params`` (``"block.width"``)."""
        value: Any = self.params
        for part in path.split("."):
            value = value[part]
        return value


@dataclass
class ReportContext:
    """What a kind's ``report`` receives.

    Attributes
    ----------
    name : str
        The experiment name.
    out_dir : Path
        The results folder (``runs/<name>/`` or ``results/<name>/``); write figures under it
        (e.g. ``out_dir / "figures" / "x.png"`` through ``manifold_lab.io.savefig``)
        and return their paths relative to it.
    runs : list of RunRecord
        Every finished run (done, failed or diverged), in plan order; use
        ``done_runs`` for the successful ones.
    sweep_keys : list of str
        The swept dotted param paths (without ``seeds``), in spec order.
    """

    name: str
    out_dir: Path
    runs: list[RunRecord]
    sweep_keys: list[str]

    @property
    def done_runs(self) -> list[RunRecord]:
        return [r for r in self.runs if r.ok]


@dataclass(frozen=True)
class ReportItem:
    """A figure or a markdown block for ``report.md``.

    Exactly one of ``figure`` (a path relative to the report's ``out_dir``)
    and ``markdown`` (a table or section body) is given.
    """

    title: str
    figure: str | None = None
    caption: str = ""
    markdown: str | None = None

    def __post_init__(self) -> None:
        if (self.figure is None) == (self.markdown is None):
            raise ValueError("ReportItem needs exactly one of figure= and markdown=")
        if self.figure is not None and Path(self.figure).is_absolute():
            raise ValueError(f"ReportItem figure must be relative to out_dir, got {self.figure!r}")


# --------------------------------------------------------------------------- registry

_REGISTRY: dict[str, Kind] = {}
_IMPORT_ERRORS: dict[str, str] = {}
_DISCOVERED = False


def register(kind: Kind) -> Kind:
    """Add ``kind`` to the registry (re-registering the same object is a no-op)."""
    if not isinstance(kind, Kind):
        raise ValueError(f"register() needs a Kind, got {type(kind).__name__}")
    old = _REGISTRY.get(kind.name)
    if old is not None and old is not kind:
        raise ValueError(f"two experiment kinds are named {kind.name!r}")
    _REGISTRY[kind.name] = kind
    return kind


def _load_module(module_name: str) -> None:
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a broken kind must not hide the others
        _IMPORT_ERRORS[module_name] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        logging.getLogger(__name__).debug("%s", traceback.format_exc())
        return
    kind = getattr(module, "KIND", None)
    if isinstance(kind, Kind):
        register(kind)


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            _load_module(f"{__name__}.{info.name}")
    # The plugin hook; the current directory is importable like `python -m`.
    extra = [m.strip() for m in os.environ.get(EXTRA_KINDS_ENV, "").split(",") if m.strip()]
    if extra and "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    for module_name in extra:
        _load_module(module_name)


class _Kinds(Mapping[str, Kind]):
    """Read-only ``{name: Kind}`` view that discovers kind modules on first use."""

    def __getitem__(self, name: str) -> Kind:
        _discover()
        return _REGISTRY[name]

    def __iter__(self) -> Iterator[str]:
        _discover()
        return iter(sorted(_REGISTRY))

    def __len__(self) -> int:
        _discover()
        return len(_REGISTRY)


KINDS: Mapping[str, Kind] = _Kinds()


def get_kind(name: str) -> Kind:
    """The registered kind called ``name``; ValueError listing the known kinds."""
    _discover()
    if name in _REGISTRY:
        return _REGISTRY[name]
    import difflib

    known = sorted(_REGISTRY)
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    msg = f"unknown kind {name!r}{hint}; known kinds: {', '.join(known) or '(none)'}"
    if _IMPORT_ERRORS:
        broken = "; ".join(f"{m}: {e}" for m, e in sorted(_IMPORT_ERRORS.items()))
        msg += f"; could not import: {broken}"
    raise UsageError(msg)

