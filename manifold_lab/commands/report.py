"""``manifold-lab report DIR``: aggregate a results folder into tables and ``report.md``."""

from __future__ import annotations

import argparse
import sys

HELP = "aggregate a results folder (summary.csv, comparisons.csv, report.md) from its runs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", metavar="DIR", help="a results folder, e.g. results/toy_linear_bottleneck or runs/<name>")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from manifold_lab.experiment.report import write_report
    from manifold_lab.experiment.spec import display_path

    path, kind_error = write_report(Path(args.results))
    print(f"report: {display_path(path)}")
    if kind_error:
        print(f"the kind's figures failed: {kind_error}", file=sys.stderr)
        return 1
    return 0
