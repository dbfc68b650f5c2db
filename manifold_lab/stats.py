"""Statistics over seeds: summaries with t confidence intervals, paired tests.

Every accuracy is a distribution over seeds. For values ``x_1..x_n``:

- mean ``x̄``, standard deviation ``s`` with ``ddof=1``;
- 95% confidence interval of the mean, the Student t interval
  ``x̄ ± t_{0.975, n-1} s / sqrt(n)`` (``scipy.stats.t``); NaN when ``n < 2``.

A quantity bounded in ``[low, high]`` (an accuracy, a fraction) gets an interval
that stays inside its bounds (``bounded_interval``): the t interval above,
truncated to ``[low, high]``. The mean of such a quantity lies in its bounds, so
the truncation removes only impossible values: the interval covers the true mean
exactly when the untruncated one does (the same 95% coverage, no narrower than
the evidence allows with few seeds). A bootstrap percentile interval also stays
inside, but with 3-5 seeds it is markedly narrower than the t interval (it ignores
the t quantile); a t interval on the logit scale stays inside but can leave the
mean itself outside (five 1.0s and one 0.4).

Two variants A and B measured on the same seeds are compared through the
per-seed differences ``d_i = B_i - A_i``: their mean with its t interval, the
paired t-test (``scipy.stats.ttest_rel``) and the Wilcoxon signed-rank test
(``scipy.stats.wilcoxon``), the latter only where the number of non-zero pairs
can reach p < 0.05 at all (``wilcoxon_min_pairs``: 6 pairs two-sided, since the
smallest exact two-sided p-value of n pairs is ``2 / 2^n``). Degenerate cases
give NaN and a note instead of a misleading number.

Across several tests (the claim table) ``holm_adjust`` gives Holm's
family-wise adjusted p-values. A statistic without a closed-form interval (a rank
correlation over conditions) gets ``bootstrap_interval``: the percentile interval of
``scipy.stats.bootstrap`` with a fixed generator, so the same data give the same interval.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
NAN = float("nan")


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """``x̄ ± t_{(1+c)/2, n-1} s / sqrt(n)``; ``(nan, nan)`` when ``n < 2``."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return NAN, NAN
    half = float(stats.t.ppf(0.5 + confidence / 2, df=x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return float(x.mean()) - half, float(x.mean()) + half


#: How ``bounded_interval`` computes, for reports that name the method.
BOUNDED_METHOD = "t interval of the mean truncated to the quantity's bounds (same coverage)"


def bounded_interval(
    values: Sequence[float], low: float = 0.0, high: float = 1.0, confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Confidence interval of the mean of a quantity bounded in ``[low, high]``: ``t_interval(values)``
    intersected with the bounds (module docstring). ``(nan, nan)`` when ``n < 2``; ``(x, x)`` when every
    value is the same ``x``. ValueError for a value outside ``[low, high]`` or ``low >= high``."""
    x = np.asarray(values, dtype=float)
    if not high > low:
        raise ValueError(f"bounded_interval needs low < high, got [{low}, {high}]")
    if x.size and (x.min() < low or x.max() > high):
        raise ValueError(f"bounded_interval: values outside [{low}, {high}] (min {x.min()}, max {x.max()})")
    t_low, t_high = t_interval(x, confidence)
    if math.isnan(t_low):
        return NAN, NAN
    return max(t_low, low), min(t_high, high)


def wilcoxon_min_pairs(alpha: float = 0.05, alternative: str = "two-sided") -> int:
    """The fewest non-zero pairs whose exact Wilcoxon signed-rank p-value can be below ``alpha``.

    The smallest exact p-value of n pairs (all differences of one sign) is ``2 / 2^n``
    two-sided and ``1 / 2^n`` one-sided: 6 and 5 pairs at ``alpha = 0.05``.
    """
    if alternative not in ("two-sided", "less", "greater"):
        raise ValueError(f"alternative must be two-sided, less or greater, got {alternative!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    tails = 2 if alternative == "two-sided" else 1
    n = 1
    while tails / 2**n >= alpha:
        n += 1
    return n


def describe(values: Sequence[float], bounds: tuple[float, float] | None = None) -> dict[str, float]:
    """``{"mean", "std", "ci_low", "ci_high", "n"}`` of a sample (``std`` with ddof=1); with ``bounds =
    (low, high)`` the interval is ``bounded_interval`` (inside the bounds), else the t interval of the mean."""
    x = np.asarray(values, dtype=float)
    n = int(x.size)
    if n == 0:
        return {"mean": NAN, "std": NAN, "ci_low": NAN, "ci_high": NAN, "n": 0}
    low, high = t_interval(x) if bounds is None else bounded_interval(x, *bounds)
    return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if n > 1 else NAN, "ci_low": low, "ci_high": high,
            "n": n}


def paired(
    a: Sequence[float], b: Sequence[float], bounds: tuple[float, float] | None = None
) -> dict[str, float | int | str]:
    """Compare B with A over shared seeds (``a[i]`` and ``b[i]`` from the same seed).

    With ``bounds = (low, high)`` for the quantity (a fraction: ``(0, 1)``), the interval of the mean
    difference is ``bounded_interval`` over ``[low - high, high - low]`` (inside ``[-1, 1]`` for fractions),
    otherwise the t interval. Returns ``n``, ``mean_a``, ``mean_b``, ``mean_diff`` (of ``b - a``),
    ``diff_ci_low``, ``diff_ci_high``, ``t_stat``, ``t_pvalue``, ``wilcoxon_stat``, ``wilcoxon_pvalue`` and
    ``note`` (why a value is NaN).
    """
    xa = np.asarray(a, dtype=float)
    xb = np.asarray(b, dtype=float)
    if xa.shape != xb.shape or xa.ndim != 1:
        raise ValueError(f"paired() needs two 1-D samples of equal length, got {xa.shape} and {xb.shape}")
    d = xb - xa
    n = int(d.size)
    low, high = t_interval(d) if bounds is None else bounded_interval(d, bounds[0] - bounds[1], bounds[1] - bounds[0])
    out: dict[str, float | int | str] = {
        "n": n, "mean_a": float(xa.mean()) if n else NAN, "mean_b": float(xb.mean()) if n else NAN,
        "mean_diff": float(d.mean()) if n else NAN, "diff_ci_low": low, "diff_ci_high": high,
        "t_stat": NAN, "t_pvalue": NAN, "wilcoxon_stat": NAN, "wilcoxon_pvalue": NAN}
    notes = []
    if n < 2:
        notes.append(f"n={n} shared seed{'s' * (n != 1)}: no test")
    elif np.all(d == 0):
        notes.append("all differences are zero: no test")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            if np.all(d == d[0]):
                notes.append("constant differences: t undefined")
            else:
                t = stats.ttest_rel(xb, xa)
                out["t_stat"], out["t_pvalue"] = float(t.statistic), float(t.pvalue)
            nonzero = int(np.count_nonzero(d))
            if nonzero < wilcoxon_min_pairs():
                notes.append(f"{nonzero} non-zero pair{'s' * (nonzero != 1)}: too few for a Wilcoxon test "
                             f"to reach p < 0.05 (needs >= {wilcoxon_min_pairs()})")
            else:
                w = stats.wilcoxon(xb, xa)
                out["wilcoxon_stat"], out["wilcoxon_pvalue"] = float(w.statistic), float(w.pvalue)
                if nonzero < n:
                    notes.append(f"Wilcoxon dropped {n - nonzero} zero difference(s)")
    out["note"] = "; ".join(notes)
    return out


def bootstrap_interval(statistic, *samples, n_resamples: int = 10_000, seed: int = 0,
                       confidence: float = CONFIDENCE) -> tuple[float, float, int]:
    """Percentile bootstrap interval of ``statistic(*samples, axis=-1)`` over paired resamples.

    ``scipy.stats.bootstrap`` (``paired=True``, ``vectorized=True``: ``statistic`` takes
    arrays with resamples along all but the last axis) draws ``n_resamples`` resamples of
    the rows with ``numpy.random.default_rng(seed)``; resamples where the statistic is
    undefined (NaN, e.g. a constant resample) are left out and the interval is the
    ``(1 -/+ confidence) / 2`` percentiles of the rest. Returns ``(low, high, used)``,
    ``used`` the resamples that entered; ``(nan, nan, 0)`` when none did.
    """
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore")  # undefined resamples: left out below
        res = stats.bootstrap(tuple(np.asarray(x, dtype=float) for x in samples), statistic, paired=True,
                              vectorized=True, n_resamples=n_resamples, method="percentile",
                              confidence_level=confidence, rng=np.random.default_rng(seed))
    dist = res.bootstrap_distribution[np.isfinite(res.bootstrap_distribution)]
    if not dist.size:
        return NAN, NAN, 0
    tail = 50 * (1 - confidence)
    low, high = np.percentile(dist, [tail, 100 - tail])
    return float(low), float(high), int(dist.size)


def holm_adjust(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of ``m`` p-values (family-wise error rate, Holm 1979).

    With the p-values sorted ``p_(1) <= ... <= p_(m)``, the adjusted value of the
    ``i``-th smallest is ``max_{j <= i} min(1, (m - j + 1) p_(j))``; rejecting where the
    adjusted p is below ``alpha`` keeps the chance of any false rejection in the
    family at most ``alpha``, under any dependence between the tests. NaN entries
    (tests not run) are left NaN and do not count in ``m``. Returned in input order.
    """
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"holm_adjust() needs a 1-D sequence of p-values, got shape {p.shape}")
    finite = np.flatnonzero(~np.isnan(p))
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {p[finite].tolist()}")
    out = np.full(p.shape, NAN)
    m = finite.size
    order = finite[np.argsort(p[finite], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()
