"""``manifold-lab theorem``: Theorem 1's kept fraction, Monte Carlo against the closed form."""

from __future__ import annotations

from manifold_lab.commands.spiral import int_list

HELP = "Theorem 1: Monte Carlo kept fraction of ReLU(Bx) vs N(m,n)/2^m over an (m, n) grid"


def _range_list(text: str) -> list[int]:
    """``"1-24"`` or ``"2,4,8"``."""
    if "-" in text and "," not in text:
        lo, _, hi = text.partition("-")
        try:
            values = range(int(lo), int(hi) + 1)
        except ValueError:
            raise ValueError(f"expected a range such as 1-24, got {text!r}") from None
        if len(values) > MAX_VALUES:
            raise ValueError(f"the range {text!r} has {len(values):,} values, more than {MAX_VALUES:,}")
        return list(values)
    return int_list(text)


#: Most values of --m or --n (the collapse_theorem kind takes m <= 1000, n <= 100).
MAX_VALUES = 1000


def add_arguments(p) -> None:
    p.add_argument("--m", default="1-24", help="output channels m: a range 1-24 or a list 2,4,8 (default 1-24)")
    p.add_argument("--n", default="1,2,3,5", help="input dimensions n (default 1,2,3,5)")
    p.add_argument("--matrices", type=int, default=100, help="random matrices B per (m, n) (default 100)")
    p.add_argument("--points", type=int, default=300, help="points per matrix (default 300)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", default="runs/theorem1",
                   help="output folder (default runs/theorem1, ignored by git; the committed copy: --out results/theorem1)")
    p.add_argument("--allow-long", action="store_true",
                   help="accept a grid estimated above 1 h of CPU time (see SECURITY.md)")


def _check_cost(ms: list[int], ns: list[int], matrices: int, points: int) -> None:
    """Refuse a grid whose estimated CPU time (the ``collapse_theorem`` kind's estimate, summed)
    exceeds ``bounds.MAX_RUN_SECONDS``."""
    from types import SimpleNamespace

    from manifold_lab.spec.bounds import MAX_RUN_SECONDS
    from manifold_lab.kinds.collapse_theorem import estimate_seconds

    seconds = sum(estimate_seconds(SimpleNamespace(m=m, n=n, n_matrices=max(matrices, 0), n_points=max(points, 0)))
                  for m in ms for n in ns)
    if seconds > MAX_RUN_SECONDS:
        raise ValueError(f"this grid is estimated at {seconds / 3600:,.1f} h of CPU time, more than the "
                         f"{MAX_RUN_SECONDS / 3600:g} h allowed without --allow-long; use fewer --matrices or "
                         "--points, or pass --allow-long")


def run(args) -> int:
    from tqdm import tqdm

    from manifold_lab.theorem_check import write_theorem_check

    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    ms, ns = _range_list(args.m), int_list(args.n)
    if not args.allow_long:
        _check_cost(ms, ns, args.matrices, args.points)
    result = write_theorem_check(
        args.out, ms, ns, n_matrices=args.matrices, n_points=args.points,
        random_state=args.seed, progress=lambda it: tqdm(it, desc="(m, n)", leave=False, disable=None),
    )
    recs = result["records"]
    worst = max(recs, key=lambda r: abs(r["z"]))
    print(f"{len(recs)} (m, n) pairs; largest |z| = {abs(worst['z']):.2f} at m={worst['m']}, n={worst['n']}; "
          f"{sum(abs(r['z']) <= 3 for r in recs)}/{len(recs)} within 3 standard errors")
    print(f"wrote {result['png']} (+ .pdf, .csv, .json)")
    return 0
