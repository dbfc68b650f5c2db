"""``manifold-lab probe-correlation``: the pre-registered correlation study of issue 12 (beyond the paper)."""

from __future__ import annotations

HELP = ("Does the information the bottlenecks lose (probe) predict the ReLU6 accuracy penalty? "
        "The pre-registered analysis over the results folders")


def add_arguments(p) -> None:
    p.add_argument("--results", default="results", help="folder holding the studies (default results)")
    p.add_argument("--out", default="runs/probe_penalty_correlation",
                   help="output folder (default runs/probe_penalty_correlation)")


def run(args) -> int:
    from pathlib import Path

    from manifold_lab.reproduction.probe_correlation import write_study

    if not Path(args.results).is_dir():
        raise ValueError(f"--results {args.results} is not a folder")
    payload = write_study(args.results, args.out)
    print(f"{payload['n']} conditions; Spearman rho = {payload['rho']:.3f} "
          f"[{payload['ci_low']:.3f}, {payload['ci_high']:.3f}]: {payload['verdict']}")
    return 0
