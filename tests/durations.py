"""Write ``tests/durations.json`` from a pytest log run with ``--durations=0``: which tests count as slow.

    python -m pytest -n 2 -m "not slow" --durations=0 -p no:cacheprovider > log
    python tests/durations.py log [--slow-above 4.0] [--note "machine and load of the measured run"]

A test's seconds are its setup + call + teardown in the log. The file keeps every test above the
threshold; a test it listed before and that the log does not show (because it was left out as slow)
keeps its earlier seconds, so a remeasurement with ``-m "not slow"`` cannot turn it fast by omission.
``tests/conftest.py`` marks the listed tests above ``slow_above_s`` as slow.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

OUT = Path(__file__).with_name("durations.json")
LINE = re.compile(r"^([0-9.]+)s (setup|call|teardown)\s+(\S.*?)\s*$")


def seconds_per_test(log: str) -> dict[str, float]:
    """``{node id: setup + call + teardown seconds}`` of the ``--durations`` lines of ``log``."""
    total: dict[str, float] = defaultdict(float)
    for line in log.splitlines():
        if m := LINE.match(line):
            total[m.group(3)] += float(m.group(1))
    return dict(total)


def slow_tests(before: dict[str, float], measured: dict[str, float], slow_above: float) -> dict[str, float]:
    """The tests above ``slow_above`` seconds: measured now, or listed ``before`` and absent from this log."""
    merged = {**{k: v for k, v in before.items() if k not in measured}, **measured}
    return {k: round(v, 2) for k, v in sorted(merged.items()) if v > slow_above}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log")
    ap.add_argument("--slow-above", type=float, default=4.0, help="seconds above which a test is slow")
    ap.add_argument("--note", default="", help="the machine and its load during the measured run")
    args = ap.parse_args(argv)
    measured = seconds_per_test(Path(args.log).read_text())
    if not measured:
        raise SystemExit(f"{args.log}: no --durations lines (run pytest with --durations=0)")
    before = json.loads(OUT.read_text())["seconds"] if OUT.exists() else {}
    seconds = slow_tests(before, measured, args.slow_above)
    OUT.write_text(json.dumps({"slow_above_s": args.slow_above, "note": args.note, "seconds": seconds},
                              indent=1) + "\n")
    print(f"{OUT.name}: {len(seconds)} tests above {args.slow_above} s")


if __name__ == "__main__":
    main()
