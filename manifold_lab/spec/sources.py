"""Where every value of a spec came from: YAML files, their includes, command-line overrides.

``load_yaml`` parses one file (bounded: ``manifold_lab.spec.bounds``) and records
the origin of every key path, ``"file:line:col"``; ``load_with_includes`` merges a
file over its includes (mappings key by key, anything else replaced), and
``apply_override`` applies one ``key.path=value`` on top, recording ``"override
'k=v'"``. ``origin(origins, path, default)`` is what an error message names, so
that every problem points at the file, line and column (or the override) that set
the value last.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from manifold_lab import io
from manifold_lab.errors import UsageError
from manifold_lab.spec.bounds import (MAX_DEPTH, MAX_INCLUDE_DEPTH, MAX_INCLUDE_FILES, MAX_SPEC_BYTES, data_size,
                                      load_bounded, safe_load_bounded)
from manifold_lab.spec.sweep import set_path

__all__ = ["Origins", "apply_override", "display_path", "dotted", "load_with_includes", "load_yaml", "origin",
           "parse_override", "short"]


# Where each key path came from: (path tuple) -> "file:line:col" or "override 'k=v'".
Origins = dict[tuple, str]


def load_yaml(path: Path, shown: str) -> tuple[Any, Origins]:
    """Parse one YAML file; return the data and the origin of every key path."""
    try:  # a regular file only (a fifo or device would hang or never end), at most MAX_SPEC_BYTES read
        text = io.read_text(path, limit=MAX_SPEC_BYTES, what="a spec file", follow=True)
    except FileNotFoundError:
        raise UsageError(f"spec file not found: {shown}") from None
    except (OSError, UnicodeDecodeError) as exc:  # a folder, no permission, a name too long...
        raise UsageError(f"cannot read spec file {shown}: {exc}") from None
    try:
        node, data = load_bounded(text)
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: a bad tagged scalar, e.g. !!int x
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        if isinstance(exc, yaml.reader.ReaderError):  # a position in the text, no mark
            before = text[: exc.position]
            line, column = before.count("\n") + 1, len(before) - before.rfind("\n")
            where = f"{shown}:{line}:{column}"
        else:
            where = f"{shown}:{mark.line + 1}:{mark.column + 1}" if mark else shown
        raise UsageError(f"{where}: invalid YAML: {_yaml_problem(exc)}") from None
    if data is None:
        raise UsageError(f"{shown}: the file is empty; expected a mapping with name, kind, params")
    if not isinstance(data, dict):
        raise UsageError(f"{shown}:1:1: expected a mapping with name, kind, params, got {type(data).__name__}")
    origins: Origins = {}
    _walk_marks(node, (), shown, origins)
    return data, origins


def _yaml_problem(exc: Exception) -> str:
    """What is wrong, in one line, without the position (PyYAML's own text spans lines)."""
    if isinstance(exc, yaml.reader.ReaderError):
        return f"unacceptable character #x{exc.character:04x}: {exc.reason}"
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    return " ".join((f"{context}, {problem}" if context else problem).split())


def _walk_marks(node: yaml.Node, path: tuple, shown: str, origins: Origins) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set = set()
        for knode, vnode in node.value:
            key = knode.value if isinstance(knode, yaml.ScalarNode) else str(knode.value)
            where = f"{shown}:{knode.start_mark.line + 1}:{knode.start_mark.column + 1}"
            if key in seen:
                raise UsageError(f"{where}: duplicate key {dotted(path + (key,))!r}")
            seen.add(key)
            # The sweep's keys are whole dotted paths: do not split them.
            origins[path + (key,)] = where
            _walk_marks(vnode, path + (key,), shown, origins)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            origins[path + (i,)] = f"{shown}:{item.start_mark.line + 1}:{item.start_mark.column + 1}"
            _walk_marks(item, path + (i,), shown, origins)


def dotted(path: Sequence) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def origin(origins: Origins, path: tuple, default: str) -> str:
    for n in range(len(path), 0, -1):
        if path[:n] in origins:
            return origins[path[:n]]
    return default


def _deep_merge(base: dict, over: dict, origins: Origins, over_origins: Origins, path=()) -> dict:
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
                    raise UsageError(f"include {name!r} (in {display_path(including)}) is not a .yaml or .yml "
                                     "file; an include must be a spec fragment")
                return candidate
        except OSError:  # e.g. a name too long for the file system: not a file there
            continue
    raise UsageError(f"include {name!r} (in {display_path(including)}) not found relative to the current "
                     "directory or the including file's folders")


def display_path(path: Path) -> str:
    """A path as the user would write it: relative to the current directory if possible."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_with_includes(path: Path, shown: str, stack: tuple[Path, ...], reads: list[int] | None = None
                       ) -> tuple[dict, Origins]:
    """The file merged over its includes (recursively); ``reads`` counts the files and bytes read."""
    reads = [0, 0] if reads is None else reads
    reads[0] += 1
    if reads[0] > MAX_INCLUDE_FILES:
        raise UsageError(f"{shown}: the spec reads more than {MAX_INCLUDE_FILES} files through its includes "
                         "(the limit); include each preset once")
    try:
        reads[1] += path.stat().st_size if path.is_file() else 0
    except OSError:
        pass  # load_yaml says what is wrong with the file
    if reads[1] > MAX_SPEC_BYTES:
        raise UsageError(f"{shown}: the spec and its includes read more than {MAX_SPEC_BYTES:,} bytes (the limit)")
    data, origins = load_yaml(path, shown)
    includes = data.get("include", [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise UsageError(f"{origin(origins, ('include',), shown)}: include must be a list of file paths, "
                         f"got {includes!r}")
    merged: dict = {}
    merged_origins: Origins = {}
    for name in includes:
        inc = _find_include(name, path)
        key = inc.resolve()
        if key in stack:
            raise UsageError(f"include cycle: {' -> '.join(display_path(p) for p in (*stack, key))}")
        if len(stack) >= MAX_INCLUDE_DEPTH:
            raise UsageError(f"{origin(origins, ('include',), shown)}: include chain longer than "
                             f"{MAX_INCLUDE_DEPTH} files (the limit), from {display_path(stack[0])}")
        inc_data, inc_origins = load_with_includes(inc, display_path(inc), (*stack, key), reads)
        merged = _deep_merge(merged, inc_data, merged_origins, inc_origins)
    body = {k: v for k, v in data.items() if k != "include"}
    return _deep_merge(merged, body, merged_origins, origins), merged_origins


def hydra_sweep(raw: str) -> list[str] | None:
    """The items of a Hydra-style sweep value ``1,2,4`` (a comma list, not quoted or bracketed); None otherwise."""
    text = raw.strip()
    if "," not in text or text[0] in "[{'\"":
        return None
    return [item.strip() for item in text.split(",")]


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
        raise UsageError(f"bad override {short(text)}: the key has more than {MAX_DEPTH} components (the limit)")
    if parts[0] == "sweep" and len(parts) > 2:
        parts = ("sweep", ".".join(parts[1:]))
    items = hydra_sweep(raw) if parts[0] in ("params", "sweep") and len(parts) > 1 else None
    if items:
        raise UsageError(f"bad override {text!r}: key=a,b is Hydra's sweep syntax; here a sweep is a list under "
                         f"sweep.: write sweep.{'.'.join(parts[1:])}=[{','.join(items)}] (quote a text with commas)")
    try:
        value = safe_load_bounded(raw) if raw.strip() else None
    except (yaml.YAMLError, ValueError) as exc:
        raise UsageError(f"bad override {text!r}: the value is not valid YAML ({_yaml_problem(exc)})") from None
    return parts, value


def apply_override(data: dict, origins: Origins, text: str) -> tuple[dict, int]:
    """``data`` with the override applied, and the number of values the override sets."""
    parts, value = parse_override(text)
    values, depth = data_size(value)
    if len(parts) + depth > MAX_DEPTH:
        raise UsageError(f"bad override {short(text)}: nested more than {MAX_DEPTH} levels deep (the limit)")
    try:
        data = set_path(data, parts, value)
    except ValueError as exc:
        raise UsageError(f"bad override {text!r}: {exc}") from None
    for p in [p for p in origins if p[: len(parts)] == parts]:
        del origins[p]
    origins[parts] = f"override {text!r}"
    return data, values


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
