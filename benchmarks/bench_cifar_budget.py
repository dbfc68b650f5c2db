"""Runs per hour of the CIFAR-10 budget on this machine: today's configuration against
``torch.compile`` + channels_last and against two runs at once with one thread each.

Each arm trains the same two runs of the Figure 6a study (linear bottleneck, seeds 0 and 1,
``configs/cifar_cpu_budget.yaml`` through ``experiments/figure6a_linear_bottleneck_cifar10.yaml``)
through the real command, ``python -m manifold_lab run ... --out <scratch>``, and times the
whole thing: process start, data loading, every epoch, evaluation, the Figure 7 statistics,
and for the compiled arm the compile warm-up of each run. ``runs per hour = 2 x 3600 / wall``.

- ``baseline``: the budget as it was before this benchmark (2 torch threads, channels_last, eager), the
  runs one after the other;
- ``compile``: the same with ``params.train.compile=true`` (torch.compile of the model, channels_last);
- ``jobs2``: ``--jobs 2`` with ``params.train.threads=1``: both runs at once, one thread each;
- ``jobs2_compile``: both of the above: two compiled runs at once, one thread each;
- ``batch2``: ``--batch-runs 2`` with 2 torch threads: both runs trained together as one seed-batched
  network (``manifold_lab.train.batched``) in one process.

The figure is each arm's runs per hour as a ratio to ``--reference`` (default ``baseline``; target:
>= 1.3x for the winner, which then becomes the budget's default). The arms run one after the other in one
process run, so a shared machine's load hits them alike only if it is steady: the load average
before and after each arm is recorded. ``--quick`` runs the digits smoke experiment
(``experiments/smoke/figure6a.yaml``: seconds per run) to check the plumbing; its ratios say
nothing about the CIFAR budget. The scratch results folder is deleted afterwards.

    python -m benchmarks.bench_cifar_budget [--quick] [--arms baseline,compile,jobs2] [--epochs E]
                                            [--reference ARM] [--out benchmarks/results/cifar_budget.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = "experiments/figure6a_linear_bottleneck_cifar10.yaml"
QUICK_SPEC = "experiments/smoke/figure6a.yaml"
RUNS = 2
#: arm: (extra overrides, --jobs, further options of ``run``)
ARMS = {
    "baseline": (("params.train.threads=2",), 1, ()),
    "compile": (("params.train.threads=2", "params.train.compile=true"), 1, ()),
    "jobs2": (("params.train.threads=1",), 2, ()),
    "jobs2_compile": (("params.train.threads=1", "params.train.compile=true"), 2, ()),
    "batch2": (("params.train.threads=2",), 1, ("--batch-runs", "2")),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_args(argv=None) -> argparse.Namespace:
    p = _Parser(prog="python -m benchmarks.bench_cifar_budget", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=f"the digits smoke experiment ({QUICK_SPEC}) instead")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {', '.join(ARMS)}")
    p.add_argument("--epochs", type=int, default=None, help="override the epochs of every run (default: the spec's)")
    p.add_argument("--reference", default="baseline", help="the arm every ratio is taken against (default baseline)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cifar_budget.json"))
    args = p.parse_args(argv)
    args.arm_names = [a.strip() for a in args.arms.split(",") if a.strip()]
    bad = [a for a in args.arm_names if a not in ARMS]
    if bad or not args.arm_names:
        p.error(f"unknown arm {', '.join(map(repr, bad)) or repr(args.arms)}; valid: {', '.join(ARMS)}")
    if args.reference not in args.arm_names:
        p.error(f"--arms must include the reference arm {args.reference!r} (every figure is a ratio to it)")
    if args.epochs is not None and args.epochs < 1:
        p.error(f"--epochs must be >= 1, got {args.epochs}")
    return args


def command(spec: str, out: Path, arm: str, epochs: int | None) -> list[str]:
    """The ``manifold-lab run`` command line of one arm: one grid point, ``RUNS`` seeds."""
    overrides, jobs, options = ARMS[arm]
    extra = [f"params.train.epochs={epochs}"] if epochs else []
    return [sys.executable, "-m", "manifold_lab", "run", spec, "sweep.model.bottleneck_act=[identity]",
            f"sweep.seeds={list(range(RUNS))}", *overrides, *extra, "--jobs", str(jobs), *options, "--out", str(out)]


def time_arm(cmd: list[str]) -> dict:
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[2:])} failed (exit {res.returncode}): {res.stderr.strip()[-500:]}")
    return {"wall_s": round(wall, 2), "runs": RUNS, "runs_per_hour": RUNS * 3600 / wall,
            "load_before": load_before, "load_after": os.getloadavg()[0], "command": " ".join(cmd[2:])}


def main(argv=None) -> dict:
    args = parse_args(argv)
    from manifold_lab import io

    spec = QUICK_SPEC if args.quick else SPEC
    scratch = Path(tempfile.mkdtemp(prefix="bench_cifar_budget_"))
    arms = {}
    try:
        for arm in args.arm_names:
            cmd = command(spec, scratch / arm, arm, args.epochs)
            arms[arm] = time_arm(cmd)
            # the record names the scratch folder, not this machine's temporary path
            arms[arm]["command"] = arms[arm]["command"].replace(str(scratch), "<scratch>")
            print(f"{arm}: {arms[arm]['wall_s']:.1f} s for {RUNS} runs, {arms[arm]['runs_per_hour']:.2f} runs/hour",
                  flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    base = arms[args.reference]["runs_per_hour"]
    for a in arms.values():
        a[f"vs_{args.reference}"] = a["runs_per_hour"] / base
    best = max(arms, key=lambda a: arms[a][f"vs_{args.reference}"])
    result = {"spec": spec, "quick": args.quick, "epochs": args.epochs, "reference": args.reference, "arms": arms,
              "best": best, "target": ">= 1.3",
              "met": arms[best][f"vs_{args.reference}"] >= 1.3 and best != args.reference,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"}
    io.write_json(args.out, result)
    print(f"best: {best} ({arms[best][f'vs_{args.reference}']:.2f}x {args.reference} runs/hour); wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
