"""Input validation shared by the library: one clear ``ValueError`` per problem.

Every message names the argument, the offending value and what is allowed, so
the command line can print it as its one-line error.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from pathlib import Path

import numpy as np


def _show(value, limit: int = 60) -> str:
    """``repr(value)`` on one line (an array's repr spans lines), cut to ``limit`` characters."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _float_array(value, name: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array: {exc}") from None


def check_int(value, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an ``int`` (bools rejected) within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {_show(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_float(value, name: str, *, minimum: float | None = None) -> float:
    """``value`` as a finite ``float`` >= ``minimum``."""
    number = math.nan
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            number = float(value)  # Fractions too; an int beyond the float range overflows
        except OverflowError:
            pass
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {_show(value)}")
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return number


def check_choice(value, name: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    if not isinstance(value, str) or value not in choices:  # (`in` on an array compares element-wise)
        raise ValueError(f"{name}={_show(value)} is not one of {', '.join(map(repr, choices))}")
    return value


def check_points(X, name: str = "X", *, n_features: int | None = None, min_rows: int = 1) -> np.ndarray:
    """A 2-D float64 array of finite values, shape ``(N, D)`` with ``N >= min_rows``.

    ``n_features``, when given, is the required number of columns ``D``.
    """
    arr = _float_array(X, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name} must have at least {min_rows} row(s), got shape {arr.shape}")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} must have at least one column (a point has a dimension >= 1), got shape {arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} must have {n_features} columns, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf values")
    return arr


def check_matrix_for(X: np.ndarray, B, name: str = "B") -> np.ndarray:
    """``B`` as a finite ``(m, d)`` matrix whose ``d`` matches the columns of ``X``."""
    B = check_points(B, name)
    if B.shape[1] != X.shape[1]:
        raise ValueError(f"{name} must have shape (m, {X.shape[1]}) to act on points of dimension {X.shape[1]}, "
                         f"got {B.shape}")
    return B


def check_bias(bias, m: int, name: str = "bias") -> np.ndarray | None:
    if bias is None:
        return None
    b = _float_array(bias, name)
    if b.shape not in ((m,), ()):
        raise ValueError(f"{name} must have shape ({m},), got {b.shape}")
    if not np.all(np.isfinite(b)):
        raise ValueError(f"{name} contains NaN or inf values")
    return b


def check_out_dir(path, name: str = "out") -> Path:
    """An output folder: it may not exist yet, but it may not be an existing file."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise ValueError(f"{name}={str(path)!r} must be a folder, but {str(p)!r} is a file")
            break
    return path
