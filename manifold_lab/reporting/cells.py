"""CSV and markdown cells: how a number, a list or a missing value is written in a table.

A CSV cell keeps full precision (``repr`` of a float, ``nan`` for undefined, JSON
for a list or mapping, empty for None); a markdown cell shows 4 significant
digits and ``–`` for undefined. ``md_table`` cuts a long table at ``limit`` rows
and points to the CSV file that holds them all. Text is neutralised where it is
written (``manifold_lab.io``): a CSV text cell that a spreadsheet would run as a
formula gets a leading ``'`` (``csv_text``), a markdown cell has ``|`` and line
breaks escaped (``md_cell``, here ``md_escape``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from manifold_lab.io import csv_text
from manifold_lab.io import md_cell as md_escape
from manifold_lab.spec.sweep import canonical_json, format_value

__all__ = ["is_number", "md_escape", "md_table", "natural_key", "num", "to_csv"]


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def natural_key(text: Any) -> tuple:
    """Sort key that orders the numbers inside a text by value: ``n2`` before ``n15``, ``0.25`` before ``0.5``."""
    if is_number(text):
        return ((0, float(text), ""),)
    return tuple((0, float(part), "") if part[0].isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+(?:\.\d+)?)", str(text)) if part)


def _csv_cell(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)  # full precision; "nan" for undefined
    if isinstance(value, (list, dict)) or value is None:
        return "" if value is None else canonical_json(value)
    return str(value)


def to_csv(rows: list[dict], columns: Sequence[str]) -> str:
    """``rows`` as CSV text with a header line ``columns`` (a missing key is an empty cell; ``io.csv_text``)."""
    return csv_text(rows, columns, _csv_cell)


def num(value: Any) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]], limit: int | None = None,
             more: str = "the CSV file") -> str:
    """A markdown table; with ``limit``, at most that many rows and a pointer to ``more``."""
    lines = ["| " + " | ".join(md_escape(str(h)) for h in header) + " |", "|" + "---|" * len(header),
             *("| " + " | ".join(md_escape(_cell(v)) for v in row) + " |" for row in rows[:limit])]
    if limit is not None and len(rows) > limit:
        lines.append(f"\n({len(rows) - limit} more rows in {more})")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return num(value)
    return format_value(value) if not isinstance(value, str) else value
