"""Power of the paired t test: the smallest difference a study detects, and the seeds it needs.

For ``n`` paired differences with standard deviation ``sd``, the two-sided one-sample t test of
``mean = 0`` at level ``alpha`` rejects when ``|T| > t_{1 - alpha/2, n-1}``, ``T = mean / (sd / sqrt(n))``.
If the true mean is ``delta``, ``T`` follows a noncentral t with ``n - 1`` degrees of freedom and
noncentrality ``delta sqrt(n) / sd``, so the power is

    power(delta) = P(T' > c) + P(T' < -c),   T' ~ nct(n - 1, delta sqrt(n) / sd),  c = t_{1 - alpha/2, n-1}.

``detectable_difference`` solves ``power(delta) = target`` for ``delta`` (the minimal detectable
difference, MDD); ``seeds_needed`` gives the smallest ``n`` whose MDD is at most a given difference.
With Holm's adjustment over ``m`` tests the first (strictest) step tests at ``alpha / m``: pass
``tests=m`` to size a study for the worst case. Large ``n`` approaches the normal formula
``(z_{1 - alpha/2} + z_{power}) sd / sqrt(n)`` from above (``tests/test_power.py``).
"""

from __future__ import annotations

import math

from scipy import optimize, stats


def paired_power(delta: float, n: int, sd: float, *, alpha: float = 0.05, tests: int = 1) -> float:
    """Power of the two-sided paired t test at level ``alpha / tests`` for a true mean difference ``delta``."""
    _check(n, sd, alpha, tests)
    c = stats.t.ppf(1 - alpha / tests / 2, n - 1)
    nc = abs(delta) * math.sqrt(n) / sd
    upper, lower = stats.nct.sf(c, n - 1, nc), stats.nct.cdf(-c, n - 1, nc)
    # scipy's noncentral t gives NaN far in its tails (nc of tens): there the tails are 1 and 0
    upper = (1.0 if nc > c else 0.0) if math.isnan(upper) else upper
    lower = 0.0 if math.isnan(lower) else lower
    return float(min(1.0, upper + lower))


def detectable_difference(n: int, sd: float, *, alpha: float = 0.05, power: float = 0.8, tests: int = 1) -> float:
    """The smallest mean difference detected with probability ``power`` (module docstring), in ``sd``'s unit."""
    _check(n, sd, alpha, tests)
    if not 0 < power < 1:
        raise ValueError(f"power={power} must be in (0, 1)")
    hi = sd
    while paired_power(hi, n, sd, alpha=alpha, tests=tests) < power:
        hi *= 2
    return float(optimize.brentq(lambda d: paired_power(d, n, sd, alpha=alpha, tests=tests) - power, 0.0, hi,
                                 xtol=1e-12 * sd))


def seeds_needed(difference: float, sd: float, *, alpha: float = 0.05, power: float = 0.8, tests: int = 1,
                 at_least: int = 2, at_most: int = 1000) -> int:
    """The smallest ``n >= at_least`` whose ``detectable_difference`` is at most ``difference``."""
    if difference <= 0:
        raise ValueError(f"difference={difference} must be > 0")
    for n in range(max(2, at_least), at_most + 1):
        if detectable_difference(n, sd, alpha=alpha, power=power, tests=tests) <= difference:
            return n
    raise ValueError(f"more than {at_most} seeds needed to detect {difference} at sd {sd}")


def _check(n: int, sd: float, alpha: float, tests: int) -> None:
    if int(n) != n or n < 2:
        raise ValueError(f"n={n} must be an integer >= 2 (a t test needs two differences)")
    if not sd > 0:
        raise ValueError(f"sd={sd} must be > 0")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha} must be in (0, 1)")
    if int(tests) != tests or tests < 1:
        raise ValueError(f"tests={tests} must be an integer >= 1")
