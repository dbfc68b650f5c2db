"""Run every benchmark: ``python -m benchmarks`` (``make bench``).

Each benchmark times the project's code and a reference in the same process
and reports the ratio of medians; results go to ``benchmarks/results/*.json``.
Afterwards one table (benchmark, figure, value, target, met?) is printed and
``benchmarks/results/summary.json`` holds each benchmark's headline ratio, its
target and the machine. The augmentation benchmark needs the CIFAR-10 JPEG copy
and is skipped without it.

    python -m benchmarks [--quick] [--only NAME[,NAME]] [--threads N] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import importlib
import json
import operator
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from manifold_lab.execution.provenance import cpu_model

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Bench:
    module: str  # imported when it runs, so a bad --only fails before torch loads
    args: tuple[str, ...] = ()  # always passed
    quick: tuple[str, ...] = ()  # passed with --quick (fewer repeats, no compile)


BENCHMARKS = {
    "collapsed": Bench("benchmarks.bench_collapsed", quick=("--repeats", "3")),
    "train_step": Bench("benchmarks.bench_train_step", quick=("--repeats", "2", "--no-compile")),
    "memory_efficient": Bench("benchmarks.bench_memory_efficient", quick=("--repeats", "3")),
    "augment": Bench("benchmarks.bench_augment", quick=("--repeats", "1")),
    "quickstart": Bench("benchmarks.bench_quickstart", quick=("--repeats", "1")),
    "probe": Bench("benchmarks.bench_probe", quick=("--repeats", "1")),
}

OPS = {"<=": operator.le, ">=": operator.ge}


def figure(name: str, value, unit: str = "x", target: str | None = None) -> dict:
    """One row of the table; ``target`` like ``"<= 3"`` (same unit), ``met`` is None without one."""
    met = None
    if target is not None and value is not None:
        op, bound = target.split()
        met = bool(OPS[op](value, float(bound)))
    return {"figure": name, "value": value, "unit": unit, "target": target, "met": met}


def _figures_collapsed(r: dict) -> list[dict]:
    return [figure("collapsed_fraction / bare ReLU map, time", r["ratio"], target=r.get("target", "<= 3"))]


def _figures_train_step(r: dict) -> list[dict]:
    rows = [figure("ours / plain PyTorch, images/s", r["model_vs_plain"], target=r.get("model_target", ">= 1.0")),
            figure("data + augmentation + step / bare step, time", r.get("epoch_vs_bare_step"),
                   target=r.get("epoch_target", "<= 1.10"))]
    for name, v in r.get("variants", {}).items():
        rows.append(figure(f"{name} / eager, images/s", v.get("vs_eager")))
        if v.get("compile") and "warmup_s" in v:
            rows.append(figure(f"{name}: compile warm-up (first step)", v["warmup_s"], unit="s"))
    return rows


def _figures_memory_efficient(r: dict) -> list[dict]:
    standard, *split = r["rows"]
    pick = next((row for row in split if row["t_prime"] == 2), split[0])
    lowest = min(split, key=lambda row: row["measured_peak_mb"])
    t = f"t'={pick['t_prime']}"
    return [figure(f"peak memory, {t} / standard forward", pick["measured_peak_mb"] / standard["measured_peak_mb"]),
            figure(f"time, {t} / standard forward", pick["time_ratio"]),
            figure(f"lowest peak memory (t'={lowest['t_prime']}) / standard",
                   lowest["measured_peak_mb"] / standard["measured_peak_mb"])]


def _figures_augment(r: dict) -> list[dict]:
    target = f">= {r.get('target_ratio', 5.0):g}"
    return [figure("device loader / per-sample DataLoader, images/s", r["ratios"]["device_vs_per_sample_array"],
                   target=target),
            figure("device loader / JPEG-decoding DataLoader, images/s", r["ratios"]["device_vs_per_sample_jpeg"])]


def _figures_quickstart(r: dict) -> list[dict]:
    return [figure("quickstart / interpreter start + imports, time", r["ratio"]),
            figure("quickstart wall time, median", r["quickstart_median_s"], unit="s")]


def _figures_probe(r: dict) -> list[dict]:
    return [figure("probe wall time, width-0.5 CIFAR net, median", r["probe_median_s"], unit="s", target="<= 60"),
            figure("probe / forward pass over the same images, time", r["ratio"])]


FIGURES = {
    "collapsed": _figures_collapsed, "train_step": _figures_train_step,
    "memory_efficient": _figures_memory_efficient, "augment": _figures_augment, "quickstart": _figures_quickstart,
    "probe": _figures_probe,
}


def machine_info() -> dict:
    import numpy
    import torch

    return {"cpu": cpu_model(), "arch": platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "torch_threads": torch.get_num_threads(), "load_average_1min": os.getloadavg()[0]}


def summarize(results: dict, machine: dict, **extra) -> dict:
    """The summary: per benchmark its status, headline figure (``ratio``, ``target``, ``met``) and all figures.

    ``results`` maps a benchmark name to its result dict (the JSON it wrote), or to
    ``{"status": "skipped" | "error", "reason": ...}`` when it did not complete.
    """
    benchmarks = {}
    for name, result in results.items():
        if result.get("status") in ("skipped", "error"):
            benchmarks[name] = {"status": result["status"], "reason": result["reason"]}
            continue
        rows = FIGURES[name](result)
        head = rows[0]
        benchmarks[name] = {"status": "ok", "figure": head["figure"], "ratio": head["value"],
                            "target": head["target"], "met": head["met"], "figures": rows}
    return {"machine": machine, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), **extra,
            "benchmarks": benchmarks}


def _value(row: dict) -> str:
    v = row["value"]
    if v is None:
        return "n/a"
    return f"{v:.2f}x" if row["unit"] == "x" else f"{v:.1f} {row['unit']}"


def format_table(summary: dict) -> str:
    """The combined table, Markdown (it reads as plain text in a terminal too)."""
    lines = ["| benchmark | figure | value | target | met? |", "|---|---|---:|---:|:---:|"]
    for name in summary.get("benchmarks_run") or summary["benchmarks"]:  # run order (the JSON sorts its keys)
        b = summary["benchmarks"][name]
        if b["status"] != "ok":
            lines.append(f"| {name} | {b['status']}: {b['reason']} | | | |")
            continue
        for row in b["figures"]:
            met = {True: "yes", False: "NO", None: "-"}[row["met"]]
            lines.append(f"| {name} | {row['figure']} | {_value(row)} | {row['target'] or '-'} | {met} |")
    m = summary["machine"]
    lines.append("")
    lines.append(f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, numpy {m['numpy']}; "
                 f"1-minute load {m['load_average_1min']:.1f} at the start.")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """One-line errors and exit status 2, like the ``manifold-lab`` command."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_args(argv=None) -> argparse.Namespace:
    parser = _Parser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no torch.compile")
    parser.add_argument("--only", metavar="NAME[,NAME]", help=f"run only these ({', '.join(BENCHMARKS)})")
    parser.add_argument("--threads", type=int, help="torch threads of the training-step benchmark (default: torch's)")
    parser.add_argument("--out-dir", default=str(HERE / "results"), help="where the JSON files go")
    args = parser.parse_args(argv)
    names = list(BENCHMARKS)
    if args.only is not None:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BENCHMARKS]
        if unknown or not names:
            parser.error(f"unknown benchmark {', '.join(map(repr, unknown)) or repr(args.only)}; "
                         f"valid: {', '.join(BENCHMARKS)}")
    args.names = list(dict.fromkeys(names))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    out_dir = Path(args.out_dir)
    machine = machine_info()  # the load before the suite adds its own
    results, status, start = {}, 0, time.perf_counter()
    for name in args.names:
        bench = BENCHMARKS[name]
        out = out_dir / f"{name}.json"
        argv_bench = [*bench.args, *(bench.quick if args.quick else ()), "--out", str(out)]
        if name == "augment":
            argv_bench += ["--md", str(out.with_suffix(".md"))]
        if name == "train_step" and args.threads:
            argv_bench += ["--threads", str(args.threads)]
        print(f"== {name}: python -m {bench.module} {' '.join(argv_bench)}", flush=True)
        threads = torch.get_num_threads()
        try:
            importlib.import_module(bench.module).main(argv_bench)
            results[name] = json.loads(out.read_text())
        except FileNotFoundError as exc:  # the CIFAR-10 copy is missing
            print(f"{name} skipped: {exc}", file=sys.stderr)
            results[name] = {"status": "skipped", "reason": " ".join(str(exc).split())}
        except Exception as exc:  # noqa: BLE001 - report it and run the others
            print(f"{name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            results[name] = {"status": "error", "reason": " ".join(f"{type(exc).__name__}: {exc}".split())}
            status = 1
        finally:
            torch.set_num_threads(threads)  # a benchmark's --threads must not carry over to the next one
    from manifold_lab.io import write_json

    summary = summarize(results, machine, quick=args.quick, benchmarks_run=args.names,
                        load_average_1min_end=os.getloadavg()[0], wall_time_s=time.perf_counter() - start)
    path = write_json(out_dir / "summary.json", summary)
    print()
    print(format_table(summary))
    print(f"-> {path}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
