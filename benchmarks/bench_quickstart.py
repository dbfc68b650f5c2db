"""Wall time of the quickstart tour against a bare interpreter start + imports.

The quickstart (``experiments/quickstart.yaml``: Figure 1, the Theorem 1 check and
18 trained toy networks) runs as users run it,

    python -m manifold_lab run experiments/quickstart.yaml --out <fresh temporary folder>

in a subprocess from the repository root, with a new empty output folder each
repeat (so every run is computed; nothing is resumed). The reference, timed in the
same rounds just before it, is the fixed cost every command pays:

    python -c "import manifold_lab, torch"

(one untimed reference start warms the file cache first). The ratio of the medians
says how many bare starts the tour costs and moves with the machine's load much
less than the seconds do; the median seconds are the figure a user waits for
(the project README says "about a minute on 2 cores").

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
SPEC = "experiments/quickstart.yaml"
REFERENCE = [sys.executable, "-c", "import manifold_lab, torch"]
README_CLAIM_S = 60.0


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
    load_start = os.getloadavg()[0]
    wall_time(REFERENCE)  # warm-up: imports from a warm file cache, as in every later start
    quickstart, reference = [], []
    for _ in range(args.repeats):
        reference.append(wall_time(REFERENCE))
        with tempfile.TemporaryDirectory(prefix="quickstart-bench-") as tmp:
            quickstart.append(wall_time([sys.executable, "-m", "manifold_lab", "run", SPEC, "--out", tmp]))
    q, ref = statistics.median(quickstart), statistics.median(reference)
    result = {
        "benchmark": "quickstart wall time vs interpreter start + import manifold_lab, torch",
        "command": f"python -m manifold_lab run {SPEC} --out <fresh temporary folder>",
        "reference": "python -c 'import manifold_lab, torch'",
        "repeats": args.repeats, "quickstart_s": quickstart, "reference_s": reference,
        "quickstart_median_s": q, "reference_median_s": ref, "ratio": q / ref,
        "readme_claim_s": README_CLAIM_S,
        "machine": f"{machine()}, torch {torch.__version__}",
        "load_average_1min_start": load_start, "load_average_1min": os.getloadavg()[0],
    }
    return save_and_print(args.out, result, [
        f"medians of {args.repeats}: interpreter + imports {ref:.2f} s, quickstart {q:.2f} s "
        f"(README: about {README_CLAIM_S:.0f} s on 2 cores); ratio {q / ref:.1f}x -> {args.out}"])


if __name__ == "__main__":
    main()
