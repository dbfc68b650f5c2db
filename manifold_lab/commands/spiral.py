"""``manifold-lab spiral``: the paper's Figure 1 (see ``manifold_lab.figure1``)."""

from __future__ import annotations

HELP = "Figure 1: a manifold through ReLU in R^n and back, for several n (PNG, PDF, CSV, JSON)"


def int_list(text: str) -> list[int]:
    """``"2,3,5"`` -> ``[2, 3, 5]``; a ``ValueError`` naming the bad entry otherwise."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated integers such as 2,3,5, got {text!r}") from None


def add_arguments(p) -> None:
    p.add_argument("--dims", default="2,3,5,15,30", help="dimensions n of the ReLU space (default 2,3,5,15,30)")
    p.add_argument("--manifold", default="spiral", help="manifold generator (spiral, swiss_roll, helix, ...)")
    p.add_argument("--points", type=int, default=2000,
                   help="number of points (default 2000, as the spiral_figure kind)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--noise", type=float, default=0.0, help="Gaussian noise on the manifold (default 0)")
    p.add_argument("--out", default="runs/figure1",
                   help="output folder (default runs/figure1, ignored by git; the committed copy: --out results/figure1)")


def run(args) -> int:
    from manifold_lab.figure1 import write_figure1

    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    result = write_figure1(args.out, manifold=args.manifold, dims=int_list(args.dims), n_points=args.points,
                           noise=args.noise, random_state=args.seed)
    print(f"{'n':>4} {'collapsed':>10} {'invertible':>10} {'err pinv':>9} {'err linear':>10} {'err kNN':>8}")
    for r in result["rows"]:
        print(f"{r['dim']:>4} {r['collapsed_fraction']:>10.3f} {r['invertible_fraction']:>10.3f} "
              f"{r['error_pinv']:>9.3f} {r['error_linear']:>10.4f} {r['error_knn']:>8.4f}")
    print(f"wrote {result['png']} (+ .pdf, .csv, .json)")
    return 0
