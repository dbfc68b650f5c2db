"""Figure 1 of the paper: a low-dimensional manifold through ``ReLU`` in R^n and back.

A manifold ``X`` (N x d; the 2-D spiral by default) is embedded by a random
Gaussian ``T`` (n x d), passed through ReLU and projected back with the
Moore-Penrose pseudo-inverse: ``X_hat = T^+ ReLU(T x)`` (the paper writes
``T^{-1}``; for ``n > d`` the pseudo-inverse is the natural reading). For
``n = 2, 3`` much of the manifold collapses; for ``n = 15, 30`` the output is
non-convex but the manifold survives.

For every ``n`` the figure's numbers are:

- ``collapsed_fraction``: share of points where the active rows of ``T`` have
  rank < d (``manifold_lab.metrics.collapsed_mask``);
- ``invertible_fraction``: share where Lemma 2 guarantees a unique preimage
  (``manifold_lab.recovery.relu_preimage``);
- ``error_pinv``, ``error_linear``, ``error_knn``, ``error_preimage``:
  normalized reconstruction errors of ``x`` from ``ReLU(T x)``
  (``manifold_lab.recovery.reconstruction_errors``).
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

from manifold_lab import io
from manifold_lab._checks import check_int, check_out_dir
from manifold_lab.manifolds import embed, get_manifold
from manifold_lab.metrics import collapsed_fraction
from manifold_lab.recovery import pinv_projection, reconstruction_errors, relu_preimage

DEFAULT_DIMS = (2, 3, 5, 15, 30)
NUMBERS = ("collapsed_fraction", "invertible_fraction", "error_pinv", "error_linear", "error_knn", "error_preimage")


def check_dims(dims, d: int, manifold: str = "the manifold") -> tuple[int, ...]:
    """The dimensions ``n`` to embed into: integers, each at least the ambient dimension ``d`` of ``X``."""
    dims = tuple(dims)
    if not dims:
        raise ValueError("dims must list at least one dimension n, e.g. 2,3,5,15,30")
    for n in dims:
        check_int(n, "dims entry", minimum=1)
        if n < d:
            raise ValueError(f"dims entry must be >= {d} (the points of {manifold} live in R^{d}), got {n}")
    if len(set(dims)) != len(dims):
        raise ValueError(f"dims must not repeat a dimension (one panel per n), got {','.join(map(str, dims))}")
    return dims


def figure1_data(*, manifold="spiral", dims=DEFAULT_DIMS, n_points=5000, noise=0.0, random_state=0):
    """The points and numbers of Figure 1, without drawing.

    Returns
    -------
    X : array (N, d)
        The input manifold.
    t : array (N,)
        Its intrinsic coordinate (for colouring).
    outputs : dict n -> array (N, d)
        ``T_n^+ ReLU(T_n x)`` for each ``n`` in ``dims``.
    rows : list of dict
        One per ``n``: ``dim`` and every name in ``NUMBERS``.
    """
    generator = get_manifold(manifold)
    n_points = check_int(n_points, "n_points", minimum=20)
    rng = check_random_state(random_state)
    X, t = generator(n_points, noise=noise, random_state=rng)
    dims = check_dims(dims, X.shape[1], manifold)
    outputs, rows = {}, []
    for n in dims:
        _, T = embed(X, n, kind="gaussian", random_state=rng)
        Y = np.maximum(X @ T.T, 0.0)
        outputs[n] = pinv_projection(X, T)
        errors = reconstruction_errors(X, Y, T=T, B=T, random_state=rng)
        _, invertible = relu_preimage(T, Y)
        rows.append({
            "dim": n,
            "collapsed_fraction": collapsed_fraction(X, T),
            "invertible_fraction": float(invertible.mean()),
            **{f"error_{k}": v for k, v in errors.items()},
        })
    return X, t, outputs, rows


def _plane(X: np.ndarray) -> np.ndarray:
    """The top-2 principal directions of ``X`` (d, 2): points of more than 2 dimensions are drawn onto them."""
    _, _, Vt = np.linalg.svd(X - X.mean(axis=0), full_matrices=False)
    return Vt[:2].T


def figure1(*, manifold="spiral", dims=DEFAULT_DIMS, n_points=5000, noise=0.0, random_state=0, seed=None):
    """Draw Figure 1: returns ``(fig, rows)`` (see ``figure1_data`` for ``rows``).

    ``seed`` is an alias of ``random_state`` (an int seed; it wins when both are given).
    """
    if seed is not None:
        random_state = check_int(seed, "seed", minimum=0)
    plt = io.pyplot()

    X, t, outputs, rows = figure1_data(manifold=manifold, dims=dims, n_points=n_points, noise=noise,
                                      random_state=random_state)
    basis = _plane(X) if X.shape[1] > 2 else None
    panels = [("Input", X, None)] + [(f"Output/dim={r['dim']}", outputs[r["dim"]], r) for r in rows]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.6), squeeze=False)
    for ax, (title, Z, row) in zip(axes[0], panels):
        P = Z if basis is None else Z @ basis
        ax.scatter(P[:, 0], P[:, 1], c=t, cmap="viridis", s=2, linewidths=0, rasterized=True)
        ax.set_title(title, fontsize=11)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xticks([])
        ax.set_yticks([])
        if row is not None:
            ax.set_xlabel(
                f"collapsed {row['collapsed_fraction']:.0%}, Lemma-2 invertible {row['invertible_fraction']:.0%}\n"
                f"error: pinv {row['error_pinv']:.2f}, linear {row['error_linear']:.2f}\n"
                f"preimage {row['error_preimage']:.2g}, kNN {row['error_knn']:.2g}",
                fontsize=7.5,
            )
    fig.suptitle(
        f"{manifold} embedded in R^n by a random T, x -> T^+ ReLU(T x)  "
        f"({len(X)} points, seed {random_state})",
        fontsize=10,
    )
    fig.tight_layout()
    return fig, rows


def write_figure1(out_dir, *, manifold="spiral", dims=DEFAULT_DIMS, n_points=5000, noise=0.0, random_state=0,
                  seed=None):
    """Write ``figure1.png``, ``figure1.pdf``, ``figure1.csv`` and ``figure1.json`` into ``out_dir``.

    Everything is computed (and validated) before the first file is written;
    each file is written atomically. Returns ``{"png", "pdf", "csv", "json"}``
    paths and ``"rows"`` (the numbers).
    """
    if seed is not None:
        random_state = check_int(seed, "seed", minimum=0)
    out = check_out_dir(out_dir)
    fig, rows = figure1(manifold=manifold, dims=dims, n_points=n_points, noise=noise, random_state=random_state)
    header = ["dim", *NUMBERS]
    csv = "\n".join([",".join(header)] + [",".join(f"{r[h]:.6g}" if h != "dim" else str(r[h]) for h in header)
                                         for r in rows]) + "\n"
    meta = {"manifold": manifold, "n_points": n_points, "noise": noise, "seed": random_state, "rows": rows}
    return {**write_figure_files(fig, out, "figure1", csv, meta), "rows": rows}


def write_figure_files(fig, out, stem: str, csv: str, meta: dict) -> dict:
    """Write ``<stem>.png/.pdf/.csv/.json`` into the folder ``out``, each atomically (the PDF without a
    creation date: same seed, same bytes), then close ``fig``; returns the paths by suffix."""
    paths = {
        "png": io.savefig(fig, out / f"{stem}.png", dpi=150),
        "pdf": io.savefig(fig, out / f"{stem}.pdf"),
        "csv": io.write_text(out / f"{stem}.csv", csv),
        "json": io.write_json(out / f"{stem}.json", meta),
    }
    io.pyplot().close(fig)
    return paths
