"""``manifold-lab campaign CAMPAIGN.yaml --stop-after 50m``: run a campaign's experiments within a wall time.

See ``manifold_lab.execution.campaign`` for the rules (what starts, where it stops, how it resumes,
what ``campaign.md`` accounts for, and why a study begun on another device or torch version is refused).
"""

from __future__ import annotations

import argparse

HELP = ("run the experiment files of a campaign (a suite file) in order, stopping cleanly before --stop-after; "
        "the next invocation continues; campaign.md accounts for the device minutes")


def _duration(text: str) -> float:
    from manifold_lab.execution.campaign import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--stop-after: ")) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from manifold_lab.commands.run import _int_at_least

    parser.add_argument("campaign", help="the campaign file: a suite (name, description, suite: [experiment files]), "
                                         "e.g. experiments/converged_campaign.yaml")
    parser.add_argument("--stop-after", type=_duration, required=True, metavar="DURATION",
                        help="wall time of this invocation, e.g. 50m, 90s, 1h30m: no group starts whose estimated "
                             "cost exceeds the time left; a training group stops at an epoch boundary, resumable")
    parser.add_argument("--batch-runs", type=_int_at_least(1), default=None, metavar="K",
                        help="runs trained together (default: 8 on a CUDA device, else 1; see manifold-lab run)")
    parser.add_argument("--out", metavar="DIR", help="campaign folder (default runs/<campaign name>)")
    parser.add_argument("--reference", action="store_true",
                        help="write the committed results/<campaign name>/ on purpose (no --out)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print campaign.md with the estimates for this device; run and write nothing (a "
                             "study started on another device or torch version is refused here too, exit status 2)")


def run(args: argparse.Namespace) -> int:
    from manifold_lab.execution.campaign import run_campaign
    from manifold_lab.reporting.report import write_report

    if args.reference and args.out:
        raise ValueError("--reference writes results/<campaign name>; it takes no --out")
    status, line = run_campaign(args.campaign, args.stop_after, report=write_report, out=args.out,
                                reference=args.reference, batch_runs=args.batch_runs, dry_run=args.dry_run)
    print(line)
    return status
