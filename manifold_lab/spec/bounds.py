"""Bounds on the work a spec may ask for, checked before the work is done.

A spec is the user's own input and is trusted not to be malicious, but a clumsy or
copied spec must not cost minutes of CPU or gigabytes of memory before it is refused.
Every limit below is checked *before* the structure it guards is built, and a spec
beyond one is refused with one ``UsageError`` line naming the limit:

``MAX_SPEC_BYTES``
    Size of one spec or preset file, read from ``stat`` before reading it.
``MAX_NODES``
    Values of one parsed YAML document *after alias expansion* (every mapping, list and
    scalar counted once per place it appears), and of the merged spec (files, presets and
    overrides together). Counted on the composed node graph, where an alias is a shared
    node, in time linear in the text: a 700-byte "billion laughs" document is refused in
    milliseconds.
``MAX_DEPTH``
    Nesting of mappings and lists, in a YAML document (counted while composing, so a
    document nested thousands of levels deep never reaches Python's recursion limit), in
    the expanded alias graph, in an override key path and in JSON read back from a
    results folder (``check_json_depth``).
``MAX_INCLUDE_DEPTH``, ``MAX_INCLUDE_FILES``
    Length of an ``include:`` chain, and files read for one spec in all (a preset
    included ten times by ten presets is read a hundred times).
``MAX_RUNS``
    Runs of one experiment, grid points times seeds, counted before the grid is built.
``MAX_RUN_SECONDS``
    Estimated time of one run (``Kind.estimate_seconds``, for the kinds that can estimate
    it); a larger run needs ``--allow-long`` (``load_spec(..., allow_long=True)``).
``MAX_SEED``
    Seeds are integers in ``[0, 2**32 - 1]``, what every random generator the kinds use
    takes (``numpy.random.RandomState``; torch and ``default_rng`` take more).
"""

from __future__ import annotations

import math
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from manifold_lab.errors import UsageError

__all__ = ["MAX_DEPTH", "MAX_INCLUDE_DEPTH", "MAX_INCLUDE_FILES", "MAX_NODES", "MAX_RUNS", "MAX_RUN_SECONDS", "MAX_SEED",
           "MAX_SPEC_BYTES", "BoundedLoader", "check_json_depth", "compose_bounded", "data_size", "first_non_finite",
           "load_bounded", "safe_load_bounded"]

MAX_SPEC_BYTES = 1 << 20
MAX_NODES = 100_000
MAX_DEPTH = 64
MAX_INCLUDE_DEPTH = 16
MAX_INCLUDE_FILES = 256
MAX_RUNS = 100_000
MAX_RUN_SECONDS = 3600.0
MAX_SEED = 2**32 - 1


class _TooDeep(yaml.MarkedYAMLError):
    """Raised by the composer past ``MAX_DEPTH`` levels (a YAMLError, so it gets line:column)."""


class BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that stops composing past ``MAX_DEPTH`` levels and whose
    ``!!bool`` / ``!!timestamp`` constructors reject a value they cannot read with a
    ``ConstructorError`` (PyYAML's own raise ``KeyError`` / ``AttributeError``)."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _TooDeep(None, None, f"nested more than {MAX_DEPTH} levels deep (the limit)", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_bool(self, node: yaml.Node) -> bool:
        value = self.construct_scalar(node)
        if not isinstance(value, str) or value.lower() not in self.bool_values:
            raise ConstructorError(None, None, f"!!bool value {value!r} is not one of true, false, yes, no, "
                                   "on, off", node.start_mark)
        return self.bool_values[value.lower()]

    def construct_yaml_timestamp(self, node: yaml.Node) -> Any:
        value = self.construct_scalar(node)
        if not isinstance(value, str) or not self.timestamp_regexp.match(value):
            raise ConstructorError(None, None, f"!!timestamp value {value!r} is not a date or time "
                                   "(e.g. 2024-01-31)", node.start_mark)
        return SafeConstructor.construct_yaml_timestamp(self, node)


BoundedLoader.add_constructor("tag:yaml.org,2002:bool", BoundedLoader.construct_yaml_bool)
BoundedLoader.add_constructor("tag:yaml.org,2002:timestamp", BoundedLoader.construct_yaml_timestamp)


def _expanded(node: yaml.Node) -> tuple[int, int]:
    """``(values, depth)`` of the tree that ``node`` expands to, aliases expanded.

    Memoized over the node graph (an alias is a shared node), iterative (no
    recursion), so the time is linear in the number of distinct nodes even
    when the expansion is exponential. A recursive alias (a node inside
    itself) is refused.
    """
    done: dict[int, tuple[int, int]] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    while stack:
        current, children_done = stack.pop()
        key = id(current)
        if key in done:
            continue
        if isinstance(current, yaml.MappingNode):
            children = [n for pair in current.value for n in pair]
        elif isinstance(current, yaml.SequenceNode):
            children = list(current.value)
        else:
            done[key] = (1, 0)
            continue
        if children_done:
            active.discard(key)
            sizes = [done[id(c)] for c in children]
            values = 1 + sum(s for s, _ in sizes)
            depth = 1 + max((d for _, d in sizes), default=0)
            done[key] = (min(values, MAX_NODES + 1), depth)  # capped: no huge integers either
            continue
        active.add(key)
        stack.append((current, True))
        for child in children:
            if id(child) in active:
                raise ConstructorError(None, None, "an alias refers to a node that contains it (a "
                                       "recursive alias); specs must be finite trees", child.start_mark)
            if id(child) not in done:
                stack.append((child, False))
    return done[id(node)]


def compose_bounded(loader: BoundedLoader) -> yaml.Node | None:
    """Compose the single document of ``loader`` and check its expanded size and depth.

    Raises ``yaml.YAMLError`` (with a mark) for a document beyond ``MAX_NODES``
    values or ``MAX_DEPTH`` levels once its aliases are expanded.
    """
    node = loader.get_single_node()
    if node is None:
        return None
    values, depth = _expanded(node)
    if values > MAX_NODES:
        raise ConstructorError(None, None, f"expands to more than {MAX_NODES:,} values once its aliases "
                               "are expanded (the limit)", node.start_mark)
    if depth > MAX_DEPTH:
        raise ConstructorError(None, None, f"nested more than {MAX_DEPTH} levels deep once its aliases are "
                               "expanded (the limit)", node.start_mark)
    return node


def load_bounded(text: str) -> tuple[yaml.Node | None, Any]:
    """``(node, data)``: the composed document (for its marks) and ``yaml.safe_load(text)``, within the bounds
    of this module (raises ``yaml.YAMLError``, for a control character too, or ``ValueError``)."""
    loader = BoundedLoader(text)
    try:
        node = compose_bounded(loader)  # bounded depth and alias expansion, before any walk
        return node, loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()


def safe_load_bounded(text: str) -> Any:
    """``yaml.safe_load`` within the bounds of this module (raises ``yaml.YAMLError`` or ``ValueError``)."""
    return load_bounded(text)[1]


def data_size(data: Any) -> tuple[int, int]:
    """``(values, depth)`` of plain JSON-like data (dicts, lists, scalars), iteratively.

    Shared sub-objects are counted once per place they appear; the count stops
    early past ``MAX_NODES`` (the result is then ``MAX_NODES + 1``).
    """
    values, depth = 0, 0
    stack = [(data, 1)]
    while stack:
        obj, level = stack.pop()
        values += 1
        depth = max(depth, level)
        if values > MAX_NODES or depth > MAX_DEPTH:  # values is then at most MAX_NODES + 1
            return values, depth
        if isinstance(obj, dict):
            stack.extend((v, level + 1) for v in obj.values())
        elif isinstance(obj, (list, tuple)):
            stack.extend((v, level + 1) for v in obj)
    return values, depth


def check_json_depth(data: Any, what: str) -> None:
    """Raise UsageError when ``data`` (parsed JSON / YAML) nests more than ``MAX_DEPTH`` levels."""
    _, depth = data_size(data)
    if depth > MAX_DEPTH:
        raise UsageError(f"{what} is nested more than {MAX_DEPTH} levels deep (the limit); is it damaged?")


def first_non_finite(data: Any, path: tuple = ()) -> tuple[tuple, float] | None:
    """``(path, value)`` of the first NaN or infinite float inside ``data``, or None (iterative)."""
    stack = [(data, path)]
    while stack:
        obj, where = stack.pop()
        if isinstance(obj, float) and not math.isfinite(obj):
            return where, obj
        if isinstance(obj, dict):
            stack.extend((v, where + (k,)) for k, v in reversed(list(obj.items())))
        elif isinstance(obj, (list, tuple)):
            stack.extend((v, where + (i,)) for i, v in reversed(list(enumerate(obj))))
    return None
