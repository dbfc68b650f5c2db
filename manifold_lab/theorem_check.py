"""Theorem 1 against simulation: Monte Carlo kept fraction vs ``N_{m,n} / 2^m``.

For every ``(m, n)`` of a grid, ``manifold_lab.metrics.estimate_kept_fraction``
draws Gaussian ``B`` (m x n) and points uniform in the unit n-ball; the mean
kept fraction and its standard error are compared with the closed form
``manifold_lab.theory.kept_fraction`` and the appendix bound.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

from manifold_lab import io
from manifold_lab._checks import check_int, check_out_dir
from manifold_lab.figure1 import write_figure_files
from manifold_lab.metrics import estimate_kept_fraction
from manifold_lab.theory import kept_fraction, kept_fraction_bound

DEFAULT_MS = tuple(range(1, 25))
DEFAULT_NS = (1, 2, 3, 5)
COLUMNS = ("m", "n", "kept_mc", "stderr", "kept_theory", "kept_bound", "z")


def theorem_check(ms=DEFAULT_MS, ns=DEFAULT_NS, *, n_matrices=100, n_points=300, random_state=0, progress=None):
    """Records ``{m, n, kept_mc, stderr, kept_theory, kept_bound, z}`` for every ``(m, n)``.

    ``z = (kept_mc - kept_theory) / stderr`` (0 when the draws have no spread).
    ``progress`` optionally wraps the grid iterable (e.g. ``tqdm``).
    """
    ms = [check_int(m, "m", minimum=1) for m in ms]
    ns = [check_int(n, "n", minimum=1) for n in ns]
    if not ms or not ns:
        raise ValueError("m and n must each list at least one value")
    check_int(n_matrices, "n_matrices", minimum=2)
    check_int(n_points, "n_points", minimum=1)
    rng = check_random_state(random_state)
    grid = [(m, n) for n in ns for m in ms]
    records = []
    for m, n in (progress(grid) if progress else grid):
        mc, se = estimate_kept_fraction(m, n, n_matrices=n_matrices, n_points=n_points, random_state=rng)
        theory = kept_fraction(m, n)
        records.append({
            "m": m, "n": n, "kept_mc": mc, "stderr": se, "kept_theory": theory,
            "kept_bound": kept_fraction_bound(m, n), "z": (mc - theory) / se if se > 0 else 0.0,
        })
    return records


def plot_theorem_check(records):
    """Kept fraction vs m: theory lines, Monte Carlo points with 2 standard errors, bound dashed."""
    plt = io.pyplot()

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, n in enumerate(sorted({r["n"] for r in records})):
        rs = sorted((r for r in records if r["n"] == n), key=lambda r: r["m"])
        m = np.array([r["m"] for r in rs])
        colour = f"C{i}"
        m_fine = np.arange(m.min(), m.max() + 1)
        ax.plot(m_fine, kept_fraction(m_fine, n), color=colour, lw=1.5, label=f"n={n}: N(m,n)/2^m")
        # The appendix bound is a bound only for m >= n (below it nothing is kept).
        m_bound = m_fine[m_fine >= n]
        if m_bound.size:
            ax.plot(m_bound, np.clip(kept_fraction_bound(m_bound, n), 0, 1), color=colour, lw=1, ls=":")
        ax.errorbar(m, [r["kept_mc"] for r in rs], yerr=[2 * r["stderr"] for r in rs], fmt="o", ms=3,
                    color=colour, capsize=2)
    ax.set_xlabel("m (output channels of ReLU(Bx))")
    ax.set_ylabel("kept (non-collapsed) fraction")
    ax.set_title("Theorem 1: lines theory, points Monte Carlo +- 2 s.e., dotted the bound (m >= n)", fontsize=9)
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def write_theorem_check(out_dir, ms=DEFAULT_MS, ns=DEFAULT_NS, *, n_matrices=100, n_points=300, random_state=0,
                        progress=None):
    """Compute, then write ``theorem1.png/.pdf/.csv/.json`` atomically into ``out_dir``."""
    out = check_out_dir(out_dir)
    records = theorem_check(ms, ns, n_matrices=n_matrices, n_points=n_points, random_state=random_state,
                            progress=progress)
    fig = plot_theorem_check(records)
    csv = "\n".join([",".join(COLUMNS)] + [",".join(f"{r[c]:.8g}" for c in COLUMNS) for r in records]) + "\n"
    meta = {"n_matrices": n_matrices, "n_points": n_points, "seed": random_state, "records": records}
    return {**write_figure_files(fig, out, "theorem1", csv, meta), "records": records}
