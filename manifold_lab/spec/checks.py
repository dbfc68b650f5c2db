"""The checks of a merged spec, each problem one line naming where its value came from.

``explain`` turns the first error of a pydantic validation into ``file:line:col:
unknown key 'params.widht' (did you mean 'params.width'?)``; ``check_sweep`` checks the
sweep's keys against the kind's parameters and its values and seeds;
``check_contrast`` resolves the ``contrast:`` mapping against the sweep. The
origins come from ``manifold_lab.spec.sources``.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Sequence
from typing import Any

import pydantic

from manifold_lab.errors import UsageError
from manifold_lab.kinds import KINDS, Kind
from manifold_lab.spec.bounds import MAX_SEED
from manifold_lab.spec.sources import Origins, dotted, hydra_sweep, origin, short
from manifold_lab.spec.sweep import canonical_json

__all__ = ["CONTRAST_KEYS", "check_contrast", "check_override_keys", "check_sweep", "did_you_mean", "explain",
           "fields_at", "parameter_paths"]

def _models_in(annotation: Any) -> list[type[pydantic.BaseModel]]:
    """The pydantic models inside a type annotation (through Optional, list, dict...)."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models_in(arg)]


def fields_at(model: type[pydantic.BaseModel], path: Sequence) -> list[str] | None:
    """The field names valid under ``path`` of ``model`` (None when not a model there)."""
    models = [model]
    for part in path:
        nxt = [sub for m in models if isinstance(part, str) and part in m.model_fields
               for sub in _models_in(m.model_fields[part].annotation)]
        if not (nxt or isinstance(part, int)):
            return None
        models = nxt or models
    return list(dict.fromkeys(n for m in models for n in m.model_fields)) or None


def did_you_mean(word: Any, choices: Sequence[str] | None, prefix: Sequence = ()) -> str:
    """`` (did you mean 'params.model.width_mult'?)``: the choice closest to ``word``, as its full path under
    ``prefix`` (what an override writes); else the valid choices."""
    if not choices:
        return ""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {dotted((*prefix, close[0]))!r}?)"
    return f"; valid keys: {', '.join(choices)}"


def parameter_paths(model: type[pydantic.BaseModel], prefix: tuple = ()) -> list[str]:
    """Every parameter of ``model`` as a dotted path (``model.width``), nested models expanded, as ``kinds`` lists them."""
    out: list[str] = []
    for name in fields_at(model, prefix) or ():
        path = (*prefix, name)
        out += parameter_paths(model, path) if fields_at(model, path) else [".".join(path)]
    return out


def check_override_keys(overrides: Sequence[str], kind_name: Any, top_keys: Sequence[str]) -> None:
    """UsageError for an override whose first key is no spec key but names a parameter of the kind without its
    ``params.`` (``model.width=2``, as ``kinds`` lists it): the line says the override to write (the closest
    parameter under ``params.``, or under ``sweep.`` as a list for a Hydra-style ``model.width=1,2``)."""
    kind = KINDS.get(kind_name) if isinstance(kind_name, str) else None
    for text in overrides:
        key, _, raw = text.partition("=")
        if kind is None or key.split(".")[0].strip() in top_keys:
            continue
        close = difflib.get_close_matches(key.strip(), parameter_paths(kind.params), n=1, cutoff=0.6)
        if close:
            items = hydra_sweep(raw)
            fix = f"sweep.{close[0]}=[{','.join(items)}]" if items else f"params.{close[0]}={raw}"
            raise UsageError(f"override {text!r}: unknown key {key.split('.')[0]!r}: the parameters of kind "
                             f"{kind.name!r} go under params. (sweeps under sweep.); did you mean {fix}?")


def explain(exc: pydantic.ValidationError, model: type[pydantic.BaseModel], prefix: tuple, origins: Origins,
            default_where: str) -> str:
    """One line for the first error of a pydantic ValidationError."""
    errors = exc.errors(include_url=False)
    err = errors[0]
    loc = tuple(err["loc"])
    path = prefix + loc
    if err["type"] == "extra_forbidden":
        msg = f"unknown key {dotted(path)!r}{did_you_mean(loc[-1], fields_at(model, loc[:-1]), path[:-1])}"
    elif err["type"] == "missing":
        msg = f"{dotted(path)}: required key is missing"
    else:
        msg = f"{dotted(path)}: {err['msg']} (got {short(err.get('input'))})"
    more = f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})" if len(errors) > 1 else ""
    return f"{origin(origins, path, default_where)}: {msg}{more}"


def check_sweep(sweep: dict, kind: Kind, origins: Origins, where: str) -> tuple[dict[str, list], tuple[int, ...]]:
    """The checked sweep (``seeds`` excluded) and the seeds; a UsageError naming the origin of a bad key or value."""
    seeds_value = sweep.get("seeds", [0])
    seed_where = origin(origins, ("sweep", "seeds"), where)
    if not isinstance(seeds_value, list) or not seeds_value or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in seeds_value):
        raise UsageError(f"{seed_where}: sweep.seeds must be a non-empty list of integers >= 0 and <= {MAX_SEED} "
                         f"(what the random generators take), got {short(seeds_value)}")
    if len(set(seeds_value)) != len(seeds_value):
        raise UsageError(f"{seed_where}: sweep.seeds has repeated values: {seeds_value}")
    out: dict[str, list] = {}
    for key, values in sweep.items():
        if key == "seeds":
            continue
        kwhere = origin(origins, ("sweep", key), where)
        parts = str(key).split(".")
        if not isinstance(key, str) or any(not p for p in parts):
            raise UsageError(f"{kwhere}: bad sweep key {key!r}: expected a dotted parameter path")
        for i in range(len(parts)):
            choices = fields_at(kind.params, parts[:i])
            if choices is None:
                break  # below a free-form mapping: checked when the grid is built
            if parts[i] not in choices:
                raise UsageError(f"{kwhere}: sweep key {key!r}: {'.'.join(parts[: i + 1])!r} is not a "
                                 f"parameter of kind {kind.name!r}{did_you_mean(parts[i], choices, parts[:i])}")
        if not isinstance(values, list) or not values:
            raise UsageError(f"{kwhere}: sweep.{key} must be a non-empty list of values, got {short(values)}")
        try:
            texts = [canonical_json(v) for v in values]
        except (TypeError, ValueError) as exc:  # a date, bytes, a set, a self-referencing alias...
            raise UsageError(f"{kwhere}: sweep.{key} values must be numbers, strings, booleans, null, lists or "
                             f"mappings ({' '.join(str(exc).split())})") from None
        if len(set(texts)) != len(texts):
            raise UsageError(f"{kwhere}: sweep.{key} has repeated values: {short(values)}")
        out[key] = values
    return out, tuple(seeds_value)


CONTRAST_KEYS = ("factor", "a", "b", "metric")


def check_contrast(contrast: dict | None, sweep: dict[str, list], origins: Origins, where: str,
                    narrowed: bool = False) -> dict | None:
    """The validated ``contrast:`` mapping with ``factor`` resolved to its full swept path.

    ``narrowed``: sweep overrides were applied (and none of ``contrast``); a contrast
    whose arms they removed (``sweep.model.bottleneck_act=[identity]``) is dropped,
    not refused.
    """
    if contrast is None:
        return None
    where = origin(origins, ("contrast",), where)
    for key in contrast:
        if key not in CONTRAST_KEYS:
            raise UsageError(f"{origin(origins, ('contrast', key), where)}: unknown key 'contrast.{key}'"
                             f"{did_you_mean(key, CONTRAST_KEYS)}; contrast has {', '.join(CONTRAST_KEYS)}")
    missing = [k for k in CONTRAST_KEYS if k not in contrast]
    if missing:
        raise UsageError(f"{where}: contrast needs {', '.join(CONTRAST_KEYS)}; missing {', '.join(missing)}")
    factor, metric = contrast["factor"], contrast["metric"]
    if not isinstance(metric, str) or not metric:
        raise UsageError(f"{where}: contrast.metric must be a metric name, got {short(metric)}")
    matches = [k for k in sweep if k == factor] or [k for k in sweep if k.rsplit(".", 1)[-1] == factor]
    if len(matches) != 1:
        choices = ", ".join(sweep) or "(nothing is swept)"
        raise UsageError(f"{where}: contrast.factor {short(factor)} is not a swept parameter; swept: {choices} "
                         "(override contrast=null to drop the contrast)")
    factor = matches[0]
    texts = [canonical_json(v) for v in sweep[factor]]
    for side in ("a", "b"):
        if canonical_json(contrast[side]) not in texts:
            if narrowed:
                return None
            raise UsageError(f"{where}: contrast.{side} {short(contrast[side])} is not a value of sweep.{factor}; "
                             f"values: {', '.join(map(str, sweep[factor]))} (override contrast=null to drop the contrast)")
    if canonical_json(contrast["a"]) == canonical_json(contrast["b"]):
        raise UsageError(f"{where}: contrast.a and contrast.b are the same value {short(contrast['a'])}")
    return {"factor": factor, "a": contrast["a"], "b": contrast["b"], "metric": metric}
