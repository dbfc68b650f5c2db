"""``manifold-lab claims``: the claim table of the reproduction, ``results/README.md``."""

from __future__ import annotations

import argparse

HELP = "write results/README.md: one row per claim of the paper, with our numbers and a verdict"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", default="results", metavar="DIR",
                        help="the folder holding the studies' results folders (default: results)")
    parser.add_argument("--out", default=None, metavar="FILE", help="default: DIR/README.md")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from manifold_lab import io
    from manifold_lab.reproduction.claims import claims
    from manifold_lab.reproduction.readme import render
    from manifold_lab.spec import display_path

    results = Path(args.results)
    if not results.is_dir():
        raise NotADirectoryError(f"results folder not found: {args.results}")
    rows = claims(results)
    out = io.write_text(Path(args.out) if args.out else results / "README.md", render(rows, results))
    for row in rows:
        print(f"{row.verdict:>28}  {row.claim}")
    print(f"claims: {display_path(out)}")
    return 0
