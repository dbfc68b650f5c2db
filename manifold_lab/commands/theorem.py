"""``manifold-lab theorem``: Theorem 1's kept fraction, Monte Carlo against the closed form."""

from __future__ import annotations

from manifold_lab.commands.spiral import int_list

HELP = "Theorem 1: Monte Carlo kept fraction of ReLU(Bx) vs N(m,n)/2^m over an (m, n) grid"


def _range_list(text: str) -> list[int]:
    """``"1-24"`` or ``"2,4,8"``."""
    if "-" in text and "," not in text:
        lo, _, hi = text.partition("-")
        try:
            return list(range(int(lo), int(hi) + 1))
        except ValueError:
            raise ValueError(f"expected a range such as 1-24, got {text!r}") from None
    return int_list(text)


def add_arguments(p) -> None:
    p.add_argument("--m", default="1-24", help="output channels m: a range 1-24 or a list 2,4,8 (default 1-24)")
    p.add_argument("--n", default="1,2,3,5", help="input dimensions n (default 1,2,3,5)")
    p.add_argument("--matrices", type=int, default=100, help="random matrices B per (m, n) (default 100)")
    p.add_argument("--points", type=int, default=300, help="points per matrix (default 300)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", default="runs/theorem1",
                   help="output folder (default runs/theorem1, ignored by git; the committed copy: --out results/theorem1)")


def run(args) -> int:
    from tqdm import tqdm

    from manifold_lab.theorem_check import write_theorem_check

    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    result = write_theorem_check(
        args.out, _range_list(args.m), int_list(args.n), n_matrices=args.matrices, n_points=args.points,
        random_state=args.seed, progress=lambda it: tqdm(it, desc="(m, n)", leave=False, disable=None),
    )
    recs = result["records"]
    worst = max(recs, key=lambda r: abs(r["z"]))
    print(f"{len(recs)} (m, n) pairs; largest |z| = {abs(worst['z']):.2f} at m={worst['m']}, n={worst['n']}; "
          f"{sum(abs(r['z']) <= 3 for r in recs)}/{len(recs)} within 3 standard errors")
    print(f"wrote {result['png']} (+ .pdf, .csv, .json)")
    return 0
