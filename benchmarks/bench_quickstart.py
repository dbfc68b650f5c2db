"""Wall time of ``make quickstart`` against a bare interpreter start + imports.

The quickstart (``experiments/quickstart.yaml``: Figure 1, the Theorem 1 check and
18 trained toy networks) runs as users run it,

    make quickstart QUICKSTART_OUT=<fresh temporary folder>

in a subprocess from the repository root (the installation must be up to date:
``make install`` first, it is not timed), with a new empty output folder each
repeat (so every run is computed; nothing is resumed). The reference, timed in the
same rounds just before it, is the fixed cost every command pays:

    python -c "import manifold_lab, torch"

(one untimed reference start warms the file cache first). The ratio of the medians
says how many bare starts the tour costs and moves with the machine's load much
less than the seconds do; the median seconds are the figure a user waits for
(the project README quotes ``readme_s``, the median rounded to 5 s; tests/test_docs.py
checks that README.md and the Makefile say that figure).

    python -m benchmarks.bench_quickstart [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.bench_collapsed import machine, save_and_print

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = [sys.executable, "-c", "import manifold_lab, torch"]


def readme_seconds(median_s: float) -> int:
    """The figure README.md quotes for a median of ``median_s`` seconds: rounded to 5 s."""
    return int(5 * round(median_s / 5))


def wall_time(cmd: list[str]) -> float:
    """Seconds of one run of ``cmd`` from the repository root; its output is kept only on failure."""
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = " ".join(done.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"{' '.join(cmd[1:])} failed with status {done.returncode}: {tail}")
    return seconds


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/quickstart.json")
    args = parser.parse_args(argv)
    if subprocess.run(["make", "-q", ".install-stamp"], cwd=ROOT).returncode != 0:
        raise SystemExit("the installation is not up to date: run `make install` first (the benchmark times the tour only)")
    load_start = os.getloadavg()[0]
    wall_time(REFERENCE)  # warm-up: imports from a warm file cache, as in every later start
    quickstart, reference = [], []
    for _ in range(args.repeats):
        reference.append(wall_time(REFERENCE))
        with tempfile.TemporaryDirectory(prefix="quickstart-bench-") as tmp:
            quickstart.append(wall_time(["make", "-s", "quickstart", f"PYTHON={sys.executable}",
                                         f"QUICKSTART_OUT={tmp}"]))
    q, ref = statistics.median(quickstart), statistics.median(reference)
    result = {
        "benchmark": "make quickstart wall time vs interpreter start + import manifold_lab, torch",
        "command": "make quickstart QUICKSTART_OUT=<fresh temporary folder>",
        "reference": "python -c 'import manifold_lab, torch'",
        "repeats": args.repeats, "quickstart_s": quickstart, "reference_s": reference,
        "quickstart_median_s": q, "reference_median_s": ref, "ratio": q / ref,
        "readme_s": readme_seconds(q),
        "machine": f"{machine()}, torch {torch.__version__}",
        "load_average_1min_start": load_start, "load_average_1min": os.getloadavg()[0],
    }
    return save_and_print(args.out, result, [
        f"medians of {args.repeats}: interpreter + imports {ref:.2f} s, quickstart {q:.2f} s "
        f"(README: about {readme_seconds(q)} s); ratio {q / ref:.1f}x -> {args.out}"])


if __name__ == "__main__":
    main()
