"""Run every benchmark: ``python -m benchmarks`` (``make bench``).

Each benchmark times the project's code and a reference in the same process
and reports the ratio of medians; results go to ``benchmarks/results/*.json``.
The augmentation benchmark needs the CIFAR-10 JPEG copy and is skipped without it.
"""

from __future__ import annotations

import sys

from benchmarks import bench_augment, bench_collapsed, bench_memory_efficient, bench_train_step


def main() -> int:
    bench_collapsed.main([])
    bench_train_step.main([])
    bench_memory_efficient.main([])
    try:
        return int(bench_augment.main([]) or 0)
    except FileNotFoundError as exc:
        print(f"bench_augment skipped: {exc}", file=sys.stderr)
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
