"""``manifold-lab report DIR``: aggregate a results folder into tables and ``report.md``."""

from __future__ import annotations

import argparse
import sys

HELP = "aggregate a results folder (summary.csv, comparisons.csv, report.md) from its runs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", metavar="DIR", help="a results folder, e.g. results/toy_linear_bottleneck or runs/<name>")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from manifold_lab.execution.store import ResultsStore
    from manifold_lab.reporting.report import write_report
    from manifold_lab.spec import display_path

    store = ResultsStore(Path(args.results))
    store.read_spec()  # a results folder? (before a lock file is created in it)
    store.check_links()
    # One writer at a time: a runner writes its own report when it ends.
    with store.lock(hint="it writes the report itself when it ends; run report after that"):
        store.remove_temporaries()
        path, kind_error = write_report(store.root)
        spec = store.read_spec()
        damaged = [(run, r) for run in spec["runs"] if (r := store.record(run)) is not None and r.status == "damaged"]
    for run, record in damaged:
        print(f"run {run['index']} ({run['run_id']}) is damaged and counted as not done: {record.error}; "
              f"`{spec.get('command', 'manifold-lab run <spec>')}` redoes it", file=sys.stderr)
    print(f"report: {display_path(path)}")
    if kind_error:
        print(f"the kind's figures failed: {kind_error}", file=sys.stderr)
        return 1
    return 0
