"""``collapsed_fraction`` against the bare ReLU map on the same points.

10^6 points of the 2-D spiral, ``B`` of shape 30 x 2. The reference is
``np.maximum(X @ B.T, 0)``, timed in the same process; the figure is the ratio
of medians over ``--repeats`` runs (target: at most 3x).

    python -m benchmarks.bench_collapsed [--points 1000000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from manifold_lab import io
from manifold_lab.manifolds import make_spiral
from manifold_lab.metrics import collapsed_fraction


def median_times(fns, repeats: int) -> list[float]:
    """Median wall time of each function; the calls are interleaved so that
    load from other processes on a shared machine hits every function alike."""
    for fn in fns:
        fn()  # warm-up
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            start = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - start)
    return [float(np.median(ts)) for ts in times]


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, numpy {np.__version__}"


def save_and_print(out, result: dict, lines: list[str]) -> dict:
    """Write ``result`` to the JSON file ``out`` (atomically), print ``lines``, return ``result``."""
    io.write_json(Path(out), result)
    print("\n".join(lines))
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default="benchmarks/results/collapsed.json")
    args = parser.parse_args(argv)
    X, _ = make_spiral(args.points, random_state=0)
    B = np.random.RandomState(0).standard_normal((30, 2))
    reference, ours = median_times([lambda: np.maximum(X @ B.T, 0), lambda: collapsed_fraction(X, B)],
                                   args.repeats)
    result = {
        "benchmark": "collapsed_fraction vs np.maximum(X @ B.T, 0)",
        "points": args.points, "B_shape": [30, 2], "repeats": args.repeats,
        "reference_median_s": reference, "collapsed_fraction_median_s": ours,
        "ratio": ours / reference, "target": "<= 3", "machine": machine(),
        # other jobs on a shared machine slow both timings; the 1-minute load says how busy it was
        "load_average_1min": os.getloadavg()[0],
    }
    return save_and_print(args.out, result, [
        f"bare ReLU map     {reference * 1e3:8.1f} ms (median of {args.repeats})",
        f"collapsed_fraction{ours * 1e3:8.1f} ms",
        f"ratio             {ours / reference:8.2f}x  (target <= 3x)  -> {args.out}"])


if __name__ == "__main__":
    main()
