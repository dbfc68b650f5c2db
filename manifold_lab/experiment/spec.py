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
    Optional list of preset files (partial specs with the same keys, which may
    include others), e.g. ``configs/optim/cifar_sgd.yaml``. A path is looked up
    relative to the current directory, then relative to the including file's
    folder and each of its parents (so the repository root works from anywhere
    inside it).
``params``
    The kind's parameters, validated by the kind's pydantic model.
``sweep``
    A mapping from a dotted path under ``params`` (``width``, ``block.act``)
    to a non-empty list of values, plus ``seeds: [...]`` (non-negative
    integers; default ``[0]``).
``output``
    Optional reference results folder (default ``results/<name>``), the folder
    ``manifold-lab run SPEC --reference`` writes.
``contrast``
    Optional: the headline comparison the study exists for, which every report opens
    with: ``{factor: model.bottleneck_act, a: identity, b: relu6, metric: test_acc}``
    compares ``b - a`` of ``metric`` over shared seeds at each setting of the other
    factors. ``factor`` is a swept path (or its unique last component), ``a`` and
    ``b`` two of its values.
``reuse``
    Optional list of other experiments' results folders: a run of this plan that
    one of them completed under the same run id (same kind, parameters and seed)
    is copied from there, not run again (Figure 6b reuses Figure 6a's linear runs).
``jobs``
    Optional: how many runs ``manifold-lab run`` trains at once when ``--jobs`` is not
    given (default 1; at most ``MAX_JOBS``). ``configs/cifar_cpu_budget.yaml`` sets 2 with
    one torch thread per run, the winner of ``benchmarks/bench_cifar_budget.py``. It
    changes how runs are scheduled, never a run's parameters or id.
``launcher``
    Optional settings of ``--launcher slurm`` / ``local`` (partition, time limit,
    GPUs and CPUs per run, ...): ``manifold_lab.experiment.launch.LauncherConfig``.

Merge order: the includes in order (each one after its own includes), then the
file itself, then the command-line overrides ``key.path=value`` (the value is
parsed as YAML: ``params.train.epochs=3``, ``sweep.seeds=[0,1,2]``; for the sweep the
whole rest of the key is one dotted path: ``sweep.block.act=[relu,identity]``).
Mappings merge key by key, recursively; anything else (lists included) is
replaced.

Everything is checked before any work starts and before anything is written:
YAML syntax (line:column), duplicate keys, unknown keys at any depth (with a
"did you mean"), types and ranges (the kind's pydantic constraints), unknown
kinds, sweep paths that are not parameters, and every grid point's parameters.
Every problem is one ``UsageError`` line naming the file, line and column (or
the override) it comes from.
"""

from __future__ import annotations

import difflib
import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import yaml

from manifold_lab.errors import UsageError
from manifold_lab.experiment.bounds import (
    MAX_DEPTH,
    MAX_INCLUDE_DEPTH,
    MAX_INCLUDE_FILES,
    MAX_NODES,
    MAX_RUN_SECONDS,
    MAX_RUNS,
    MAX_SEED,
    MAX_SPEC_BYTES,
    BoundedLoader,
    compose_bounded,
    data_size,
    first_non_finite,
    safe_load_bounded,
)
from manifold_lab.experiment.sweep import canonical_json, format_values, grid, set_path
from manifold_lab.kinds import Kind, get_kind

__all__ = ["NAME_PATTERN", "GridPoint", "Spec", "display_path", "load_spec", "parse_override"]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

#: Where a user's runs go (``runs/<name>/``, ignored by git) and where the committed
#: reference results live (``results/<name>/``, written on purpose with ``--reference``).
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
    """A validated experiment.

    Attributes
    ----------
    name, description : str
    kind : Kind
    params : pydantic.BaseModel
        The base parameters (file + presets + overrides, no sweep applied).
    raw_params : dict
        The merged ``params:`` mapping as written (before defaults).
    sweep : dict[str, list]
        Dotted param path -> values, in spec order (``seeds`` excluded).
    seeds : tuple of int
    points : tuple of GridPoint
        The grid, validated (one point, ``{}``, without a sweep).
    output : Path
        Where a user's runs go: ``runs/<name>`` (git-ignored).
    source : Path or None
        The spec file.
    overrides : tuple of str
        The ``key.path=value`` overrides applied.
    reuse : tuple of Path
        Results folders of other experiments whose completed runs with the same run id
        (same kind, parameters and seed) are copied instead of trained again.
    launcher : LauncherConfig or None
        The ``launcher:`` section (``manifold_lab.experiment.launch``); None when absent.
    jobs : int
        Runs at once when ``--jobs`` is not given (the ``jobs:`` key; default 1).
    reference : Path or None
        The committed reference results folder (``output:`` or ``results/<name>``),
        written only by ``manifold-lab run SPEC --reference``.
    no_reuse : bool
        ``run --no-reuse``: the spec's ``reuse:`` folders are ignored (``reuse`` is then empty),
        and the recorded command says so.
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


# --------------------------------------------------------------------------- YAML + provenance

# Where each key path came from: (path tuple) -> "file:line:col" or "override 'k=v'".
_Origins = dict[tuple, str]


def _load_yaml(path: Path, shown: str) -> tuple[Any, _Origins]:
    """Parse one YAML file; return the data and the origin of every key path."""
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES and path.is_file():
            raise UsageError(f"{shown}: the file has {size:,} bytes, more than a spec may have "
                             f"({MAX_SPEC_BYTES:,}, the limit)")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"spec file not found: {shown}") from None
    except (OSError, UnicodeDecodeError) as exc:  # a folder, no permission, a name too long...
        raise UsageError(f"cannot read spec file {shown}: {exc}") from None
    loader = None
    try:
        loader = BoundedLoader(text)  # rejects control characters already
        node = compose_bounded(loader)  # bounded depth and alias expansion, before any walk
        data = loader.construct_document(node) if node is not None else None
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: a bad tagged scalar, e.g. !!int x
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        if isinstance(exc, yaml.reader.ReaderError):  # a position in the text, no mark
            before = text[: exc.position]
            line, column = before.count("\n") + 1, len(before) - before.rfind("\n")
            where = f"{shown}:{line}:{column}"
        else:
            where = f"{shown}:{mark.line + 1}:{mark.column + 1}" if mark else shown
        raise UsageError(f"{where}: invalid YAML: {_yaml_problem(exc)}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if data is None:
        raise UsageError(f"{shown}: the file is empty; expected a mapping with name, kind, params")
    if not isinstance(data, dict):
        raise UsageError(
            f"{shown}:1:1: expected a mapping with name, kind, params, got {type(data).__name__}"
        )
    origins: _Origins = {}
    _walk_marks(node, (), shown, origins)
    return data, origins


def _yaml_problem(exc: Exception) -> str:
    """What is wrong, in one line, without the position (PyYAML's own text spans lines)."""
    if isinstance(exc, yaml.reader.ReaderError):
        return f"unacceptable character #x{exc.character:04x}: {exc.reason}"
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    return " ".join((f"{context}, {problem}" if context else problem).split())


def _walk_marks(node: yaml.Node, path: tuple, shown: str, origins: _Origins) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set = set()
        for knode, vnode in node.value:
            key = knode.value if isinstance(knode, yaml.ScalarNode) else str(knode.value)
            where = f"{shown}:{knode.start_mark.line + 1}:{knode.start_mark.column + 1}"
            if key in seen:
                raise UsageError(f"{where}: duplicate key {_dotted(path + (key,))!r}")
            seen.add(key)
            # The sweep's keys are whole dotted paths: do not split them.
            origins[path + (key,)] = where
            _walk_marks(vnode, path + (key,), shown, origins)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            origins[path + (i,)] = f"{shown}:{item.start_mark.line + 1}:{item.start_mark.column + 1}"
            _walk_marks(item, path + (i,), shown, origins)


def _dotted(path: Sequence) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _origin(origins: _Origins, path: tuple, default: str) -> str:
    for n in range(len(path), 0, -1):
        if path[:n] in origins:
            return origins[path[:n]]
    return default


def _deep_merge(base: dict, over: dict, origins: _Origins, over_origins: _Origins, path=()) -> dict:
    """Merge ``over`` into ``base``: mappings key by key, everything else replaced.

    ``origins`` (the merged result's key origins) is updated in place from
    ``over_origins`` so that errors point at the file that set a value last.
    """
    out = dict(base)
    for key, value in over.items():
        sub = path + (key,)
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value, origins, over_origins, sub)
            if sub in over_origins:
                origins[sub] = over_origins[sub]
        else:
            out[key] = value
            for p in [p for p in origins if p[: len(sub)] == sub]:
                del origins[p]
            origins.update({p: w for p, w in over_origins.items() if p[: len(sub)] == sub})
    return out


def _find_include(name: str, including: Path) -> Path:
    candidates = [Path(name)] if Path(name).is_absolute() else [
        Path.cwd() / name,
        *(folder / name for folder in [including.parent, *including.parent.parents]),
    ]
    for candidate in candidates:
        try:
            if candidate.is_file():
                # Only spec fragments: an error about any other file (a key file, /etc/shadow)
                # would quote its content. Checked before reading, on the link's target too.
                if not all(p.suffix.lower() in (".yaml", ".yml") for p in (candidate, candidate.resolve())):
                    raise UsageError(
                        f"include {name!r} (in {display_path(including)}) is not a .yaml or .yml file; "
                        "an include must be a spec fragment"
                    )
                return candidate
        except OSError:  # e.g. a name too long for the file system: not a file there
            continue
    raise UsageError(
        f"include {name!r} (in {display_path(including)}) not found relative to the current "
        "directory or the including file's folders"
    )


def display_path(path: Path) -> str:
    """A path as the user would write it: relative to the current directory if possible."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _load_with_includes(
    path: Path, shown: str, stack: tuple[Path, ...], reads: list[int] | None = None
) -> tuple[dict, _Origins]:
    """The file merged over its includes (recursively); ``reads`` counts the files and bytes read."""
    reads = [0, 0] if reads is None else reads
    reads[0] += 1
    if reads[0] > MAX_INCLUDE_FILES:
        raise UsageError(f"{shown}: the spec reads more than {MAX_INCLUDE_FILES} files through its includes "
                         "(the limit); include each preset once")
    try:
        reads[1] += path.stat().st_size if path.is_file() else 0
    except OSError:
        pass  # _load_yaml says what is wrong with the file
    if reads[1] > MAX_SPEC_BYTES:
        raise UsageError(f"{shown}: the spec and its includes read more than {MAX_SPEC_BYTES:,} bytes (the limit)")
    data, origins = _load_yaml(path, shown)
    includes = data.get("include", [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        where = _origin(origins, ("include",), shown)
        raise UsageError(f"{where}: include must be a list of file paths, got {includes!r}")
    merged: dict = {}
    merged_origins: _Origins = {}
    for name in includes:
        inc = _find_include(name, path)
        key = inc.resolve()
        if key in stack:
            chain = " -> ".join(display_path(p) for p in (*stack, key))
            raise UsageError(f"include cycle: {chain}")
        if len(stack) >= MAX_INCLUDE_DEPTH:
            raise UsageError(f"{_origin(origins, ('include',), shown)}: include chain longer than "
                             f"{MAX_INCLUDE_DEPTH} files (the limit), from {display_path(stack[0])}")
        inc_data, inc_origins = _load_with_includes(inc, display_path(inc), (*stack, key), reads)
        merged = _deep_merge(merged, inc_data, merged_origins, inc_origins)
    body = {k: v for k, v in data.items() if k != "include"}
    merged = _deep_merge(merged, body, merged_origins, origins)
    return merged, merged_origins


# --------------------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """Split ``"a.b=value"`` into ``(("a", "b"), parsed YAML value)``.

    Under ``sweep`` the rest of the key is one dotted path:
    ``"sweep.block.act=[relu]"`` -> ``(("sweep", "block.act"), ["relu"])``.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"bad override {text!r}: expected key.path=value, e.g. sweep.seeds=[0,1,2]")
    parts = tuple(key.split("."))
    if any(not p for p in parts):
        raise UsageError(f"bad override {text!r}: empty component in key {key!r}")
    if parts[0] == "include":
        raise UsageError(f"bad override {text!r}: include cannot be overridden; edit the file")
    if len(parts) > MAX_DEPTH:
        raise UsageError(f"bad override {_short(text)}: the key has more than {MAX_DEPTH} components (the limit)")
    if parts[0] == "sweep" and len(parts) > 2:
        parts = ("sweep", ".".join(parts[1:]))
    try:
        value = safe_load_bounded(raw) if raw.strip() else None
    except (yaml.YAMLError, ValueError) as exc:
        raise UsageError(f"bad override {text!r}: the value is not valid YAML ({_yaml_problem(exc)})") from None
    return parts, value


def _apply_override(data: dict, origins: _Origins, text: str) -> tuple[dict, int]:
    """``data`` with the override applied, and the number of values the override sets."""
    parts, value = parse_override(text)
    values, depth = data_size(value)
    if len(parts) + depth > MAX_DEPTH:
        raise UsageError(f"bad override {_short(text)}: nested more than {MAX_DEPTH} levels deep (the limit)")
    try:
        data = set_path(data, parts, value)
    except ValueError as exc:
        raise UsageError(f"bad override {text!r}: {exc}") from None
    for p in [p for p in origins if p[: len(parts)] == parts]:
        del origins[p]
    origins[parts] = f"override {text!r}"
    return data, values


# --------------------------------------------------------------------------- validation


def _models_in(annotation: Any) -> list[type[pydantic.BaseModel]]:
    """The pydantic models inside a type annotation (through Optional, list, dict...)."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    out: list = []
    for arg in typing.get_args(annotation):
        out += _models_in(arg)
    return out


def _fields_at(model: type[pydantic.BaseModel], path: Sequence) -> list[str] | None:
    """The field names valid under ``path`` of ``model`` (None when not a model there)."""
    models = [model]
    for part in path:
        nxt: list = []
        for m in models:
            if isinstance(part, str) and part in m.model_fields:
                nxt += _models_in(m.model_fields[part].annotation)
        if nxt or isinstance(part, int):
            models = nxt or models
        else:
            return None
    names: list[str] = []
    for m in models:
        names += [n for n in m.model_fields if n not in names]
    return names or None


def _did_you_mean(word: Any, choices: Sequence[str] | None) -> str:
    if not choices:
        return ""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f"; valid keys: {', '.join(choices)}"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _explain(
    exc: pydantic.ValidationError,
    model: type[pydantic.BaseModel],
    prefix: tuple,
    origins: _Origins,
    default_where: str,
) -> str:
    """One line for the first error of a pydantic ValidationError."""
    errors = exc.errors(include_url=False)
    err = errors[0]
    loc = tuple(err["loc"])
    path = prefix + loc
    where = _origin(origins, path, default_where)
    if err["type"] == "extra_forbidden":
        msg = f"unknown key {_dotted(path)!r}{_did_you_mean(loc[-1], _fields_at(model, loc[:-1]))}"
    elif err["type"] == "missing":
        msg = f"{_dotted(path)}: required key is missing"
    else:
        msg = f"{_dotted(path)}: {err['msg']} (got {_short(err.get('input'))})"
    more = f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})" if len(errors) > 1 else ""
    return f"{where}: {msg}{more}"


def _check_sweep(
    sweep: dict, kind: Kind, origins: _Origins, where: str
) -> tuple[dict[str, list], tuple[int, ...]]:
    seeds_value = sweep.get("seeds", [0])
    seed_where = _origin(origins, ("sweep", "seeds"), where)
    if (
        not isinstance(seeds_value, list)
        or not seeds_value
        or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in seeds_value)
    ):
        raise UsageError(
            f"{seed_where}: sweep.seeds must be a non-empty list of integers >= 0 and <= {MAX_SEED} "
            f"(what the random generators take), got {_short(seeds_value)}"
        )
    if len(set(seeds_value)) != len(seeds_value):
        raise UsageError(f"{seed_where}: sweep.seeds has repeated values: {seeds_value}")
    out: dict[str, list] = {}
    for key, values in sweep.items():
        if key == "seeds":
            continue
        kwhere = _origin(origins, ("sweep", key), where)
        parts = str(key).split(".")
        if not isinstance(key, str) or any(not p for p in parts):
            raise UsageError(f"{kwhere}: bad sweep key {key!r}: expected a dotted parameter path")
        for i in range(len(parts)):
            choices = _fields_at(kind.params, parts[:i])
            if choices is None:
                break  # below a free-form mapping: checked when the grid is built
            if parts[i] not in choices:
                raise UsageError(
                    f"{kwhere}: sweep key {key!r}: {'.'.join(parts[: i + 1])!r} is not a "
                    f"parameter of kind {kind.name!r}{_did_you_mean(parts[i], choices)}"
                )
        if not isinstance(values, list) or not values:
            raise UsageError(
                f"{kwhere}: sweep.{key} must be a non-empty list of values, got {_short(values)}"
            )
        try:
            texts = [canonical_json(v) for v in values]
        except (TypeError, ValueError) as exc:  # a date, bytes, a set, a self-referencing alias...
            raise UsageError(
                f"{kwhere}: sweep.{key} values must be numbers, strings, booleans, null, lists or "
                f"mappings ({' '.join(str(exc).split())})"
            ) from None
        if len(set(texts)) != len(texts):
            raise UsageError(f"{kwhere}: sweep.{key} has repeated values: {_short(values)}")
        out[key] = values
    return out, tuple(seeds_value)


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
                raise UsageError(
                    f"{where}: one run of kind {kind.name!r}{note} is estimated at {seconds / 3600:,.1f} h of CPU "
                    f"time, more than the {MAX_RUN_SECONDS / 3600:g} h a run may take without --allow-long; "
                    "use smaller sizes or pass --allow-long"
                )


CONTRAST_KEYS = ("factor", "a", "b", "metric")


def _check_contrast(contrast: dict | None, sweep: dict[str, list], origins: _Origins, where: str,
                    narrowed: bool = False) -> dict | None:
    """The validated ``contrast:`` mapping with ``factor`` resolved to its full swept path.

    ``narrowed``: sweep overrides were applied (and none of ``contrast``); a contrast
    whose arms they removed (``sweep.model.bottleneck_act=[identity]``) is dropped,
    not refused.
    """
    if contrast is None:
        return None
    where = _origin(origins, ("contrast",), where)
    for key in contrast:
        if key not in CONTRAST_KEYS:
            raise UsageError(f"{_origin(origins, ('contrast', key), where)}: unknown key 'contrast.{key}'"
                             f"{_did_you_mean(key, CONTRAST_KEYS)}; contrast has {', '.join(CONTRAST_KEYS)}")
    missing = [k for k in CONTRAST_KEYS if k not in contrast]
    if missing:
        raise UsageError(f"{where}: contrast needs {', '.join(CONTRAST_KEYS)}; missing {', '.join(missing)}")
    factor, metric = contrast["factor"], contrast["metric"]
    if not isinstance(metric, str) or not metric:
        raise UsageError(f"{where}: contrast.metric must be a metric name, got {_short(metric)}")
    matches = [k for k in sweep if k == factor] or [k for k in sweep if k.rsplit(".", 1)[-1] == factor]
    if len(matches) != 1:
        choices = ", ".join(sweep) or "(nothing is swept)"
        raise UsageError(f"{where}: contrast.factor {_short(factor)} is not a swept parameter; swept: {choices} "
                         "(override contrast=null to drop the contrast)")
    factor = matches[0]
    texts = [canonical_json(v) for v in sweep[factor]]
    for side in ("a", "b"):
        if canonical_json(contrast[side]) not in texts:
            if narrowed:
                return None
            raise UsageError(f"{where}: contrast.{side} {_short(contrast[side])} is not a value of sweep.{factor}; "
                             f"values: {', '.join(map(str, sweep[factor]))} (override contrast=null to drop the contrast)")
    if canonical_json(contrast["a"]) == canonical_json(contrast["b"]):
        raise UsageError(f"{where}: contrast.a and contrast.b are the same value {_short(contrast['a'])}")
    return {"factor": factor, "a": contrast["a"], "b": contrast["b"], "metric": metric}


def load_spec(path: str | Path, overrides: Sequence[str] = (), *, allow_long: bool = False) -> Spec:
    """Load, merge and validate an experiment spec.

    Parameters
    ----------
    path : str or Path
        The YAML file.
    overrides : sequence of str
        ``key.path=value`` items applied after the file (see the module docstring).
    allow_long : bool
        Accept runs whose estimated time (``Kind.estimate_seconds``) exceeds
        ``bounds.MAX_RUN_SECONDS`` (the command line's ``--allow-long``).

    Returns
    -------
    Spec

    Raises
    ------
    UsageError
        One line naming the file:line:column (or override) and the problem.
    """
    path = Path(path)
    shown = display_path(path)
    data, origins = _load_with_includes(path, shown, (path.resolve(),))
    total = data_size(data)[0]
    for text in overrides:
        data, added = _apply_override(data, origins, text)
        total += added
        if total > MAX_NODES:
            raise UsageError(f"{shown}: the spec, its includes and overrides hold more than {MAX_NODES:,} values "
                             "(the limit)")

    try:
        top = _SpecModel.model_validate(data)
    except pydantic.ValidationError as exc:
        raise UsageError(_explain(exc, _SpecModel, (), origins, shown)) from None
    try:
        kind = get_kind(top.kind)
    except ValueError as exc:
        raise UsageError(f"{_origin(origins, ('kind',), shown)}: {exc}") from None

    def build(params: dict, sweep_note: str = "") -> pydantic.BaseModel:
        try:
            model = kind.params.model_validate(params)
        except pydantic.ValidationError as exc:
            line = _explain(exc, kind.params, ("params",), origins, shown)
            raise UsageError(f"{line}{sweep_note}") from None
        found = first_non_finite(model.model_dump(), ("params",))  # e.g. the string "1e400" read as a float
        if found is not None:
            raise UsageError(f"{_origin(origins, found[0], shown)}: {_dotted(found[0])}: {found[1]} is not a finite "
                             f"number; parameters take finite numbers only{sweep_note}")
        return model

    for section, tree in (("params", top.params), ("sweep", top.sweep)):
        found = first_non_finite(tree, (section,))
        if found is not None:
            where = _origin(origins, found[0], shown)
            raise UsageError(f"{where}: {_dotted(found[0])}: {found[1]} is not a finite number; "
                             "parameters take finite numbers only")
    base = build(top.params)
    launcher = None
    if top.launcher:
        from manifold_lab.experiment.launch import LauncherConfig

        try:
            launcher = LauncherConfig.model_validate(top.launcher)
        except pydantic.ValidationError as exc:
            raise UsageError(_explain(exc, LauncherConfig, ("launcher",), origins, shown)) from None
    sweep, seeds = _check_sweep(top.sweep, kind, origins, shown)
    n_points = math.prod(len(values) for values in sweep.values())
    if n_points * len(seeds) > MAX_RUNS:
        raise UsageError(
            f"{_origin(origins, ('sweep',), shown)}: the sweep has {n_points:,} grid points x {len(seeds)} seeds "
            f"= {n_points * len(seeds):,} runs, more than an experiment may have ({MAX_RUNS:,}, the limit); "
            "split it into several experiments"
        )
    contrast = _check_contrast(top.contrast, sweep, origins, shown, narrowed=any(o.startswith("sweep.") for o in overrides)
                               and not any(o.startswith("contrast") for o in overrides))
    # From here on a bad value of a swept parameter comes from the sweep.
    for key in sweep:
        origins[("params", *key.split("."))] = _origin(origins, ("sweep", key), shown)
    points = []
    for values in grid(sweep):
        params = top.params
        for key, value in values.items():
            try:
                params = set_path(params, key, value)
            except ValueError as exc:
                where = _origin(origins, ("sweep", key), shown)
                raise UsageError(f"{where}: sweep key {key!r}: {exc}") from None
        note = f" [in the sweep point {format_values(values)}]" if values else ""
        points.append(GridPoint(values=values, params=build(params, note)))
    _check_runnable(kind, points, allow_long, shown)

    output = USER_ROOT / top.name
    return Spec(
        name=top.name,
        description=top.description,
        kind=kind,
        params=base,
        raw_params=top.params,
        sweep=sweep,
        seeds=seeds,
        points=tuple(points),
        output=output,
        source=path,
        overrides=tuple(overrides),
        reuse=tuple(Path(folder) for folder in top.reuse),
        launcher=launcher,
        reference=Path(top.output) if top.output else REFERENCE_ROOT / top.name,
        contrast=contrast,
        jobs=top.jobs or 1,
    )

