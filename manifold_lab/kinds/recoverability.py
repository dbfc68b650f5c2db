"""Experiment kind ``recoverability``: how much of a manifold survives a stack of random blocks.

A manifold from ``manifold_lab.manifolds.MANIFOLDS`` is embedded into the
bottleneck space ``R^k`` by a random matrix and pushed through ``depth`` random
inverted-residual blocks (``manifold_lab.relu_maps.random_stack``):
``x -> x + A act(ReLU6(B x))`` or without the shortcut, with ``act`` the
bottleneck activation (identity = the paper's linear bottleneck). After every
block the kind measures every recoverability and geometry metric of the
library against the block's input manifold:

* reconstruction errors of the stack's input from the block output by the
  decoders of ``manifold_lab.recovery.reconstruction_errors`` (linear least
  squares, k-nearest-neighbour regression);
* the Lemma-2 invertible fraction of the block's expansion layer and its
  collapsed fraction (``manifold_lab.metrics``);
* trustworthiness and k-nearest-neighbour overlap with the input, and the
  TwoNN intrinsic dimension of the output (``manifold_lab.geometry``).

Metrics are per-depth curves (lists, index ``l`` = after block ``l + 1``) and
their values at the final depth (scalars, aggregated over seeds).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from manifold_lab.kinds import Kind, ReportContext, ReportItem, RunContext, RunRecord


# --------------------------------------------------------------------------- report helpers


def group_mean_ci(
    runs: Sequence[RunRecord], x_key: str, metric: str
) -> tuple[list[float], list[float], list[float], list[float], list[int]]:
    """Group ``runs`` by the param at ``x_key``; mean and 95% t-interval of ``metric`` per group.

    The interval is ``manifold_lab.experiment.stats.describe``'s (NaN for a single seed).

    Returns ``(xs, mean, lo, hi, n)`` sorted by ``xs``; runs without the metric are skipped.
    """
    from manifold_lab.experiment.stats import describe

    groups: dict[Any, list[float]] = {}
    for r in runs:
        if metric in r.metrics:
            groups.setdefault(r.param(x_key), []).append(float(r.metrics[metric]))
    xs = sorted(groups)
    stats = [describe(groups[x]) for x in xs]
    return (
        [float(x) for x in xs],
        [s["mean"] for s in stats],
        [s["ci_low"] for s in stats],
        [s["ci_high"] for s in stats],
        [s["n"] for s in stats],
    )


def panel_label(keys: Sequence[str], values: Sequence[Any]) -> str:
    """``"task=classify, n_dims=10"`` from dotted keys and their values (last path part only)."""
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in zip(keys, values)) or "all runs"
