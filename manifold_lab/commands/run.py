"""``manifold-lab run SPEC [key.path=value ...]``: run (or resume) an experiment.

A user's runs go to ``runs/<name>/`` (git-ignored; ``--out`` elsewhere), so no run changes a
committed file; ``--reference`` (no overrides, no ``--out``) writes ``results/<name>/`` on purpose.
See ``manifold_lab.spec``, ``manifold_lab.execution`` and ``manifold_lab.reporting``.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from manifold_lab.errors import UsageError
from manifold_lab.execution.batch import GPU_BATCH_RUNS, default_batch_runs
from manifold_lab.execution.store import ResultsStore
from manifold_lab.spec import display_path, load_spec
from manifold_lab.spec.sweep import format_values, plan, run_indices

HELP = "run or resume the experiment of a YAML spec (skips completed runs), then write its report"


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            if int(text) >= minimum:
                return int(text)
        except ValueError:
            pass
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Overrides may come after options (`run x.yaml --jobs 2 params.a=1`); plain
    # argparse stops filling a positional list at the first option, so this
    # sub-parser parses intermixed (the main parser hands it the remaining words).
    def intermixed(args=None, namespace=None):
        # parse_known_intermixed_args calls parse_known_args itself: use the class's meanwhile.
        del parser.parse_known_args
        try:
            return parser.parse_known_intermixed_args(args, namespace)
        finally:
            parser.parse_known_args = intermixed

    parser.parse_known_args = intermixed  # type: ignore[method-assign]
    parser.add_argument("spec", help="the experiment file, e.g. experiments/quickstart.yaml")
    parser.add_argument(
        "overrides", nargs="*", metavar="key.path=value",
        help="override a value of the spec, parsed as YAML, e.g. sweep.seeds=[0,1,2] (any kind) or "
             "params.train.epochs=3 (kind mobilenetv2); `manifold-lab kinds KIND` lists each kind's parameters",
    )
    parser.add_argument("--jobs", "-j", type=_int_at_least(1), default=None, metavar="N",
                        help="runs executed at a time, as local processes (default: the spec's jobs: key, else 1)")
    parser.add_argument("--batch-runs", type=_int_at_least(1), default=None, metavar="K",
                        help="train up to K runs that differ only in seed and activations together, as one "
                             f"seed-batched network (mobilenetv2; one folder per run as always; default "
                             f"{GPU_BATCH_RUNS} when the runs train on a CUDA device, else 1: each alone)")
    parser.add_argument("--list", action="store_true", help="print the runs and their status; run nothing")
    parser.add_argument("--run-index", type=_int_at_least(0), metavar="I",
                        help="run only run I of --list (cluster array jobs); then `manifold-lab report DIR`")
    parser.add_argument("--runs", metavar="I-J",
                        help="train only these runs of --list, e.g. 0-48 or 0-10,12 (a pre-registered part of a "
                             "study); the others stay pending, the report covers every done run and the recorded "
                             "command says --runs")
    parser.add_argument("--out", metavar="DIR",
                        help="results folder (default runs/<name>, ignored by git)")
    parser.add_argument("--reference", action="store_true",
                        help="write the committed reference results results/<name> on purpose "
                             "(no overrides, no --out)")
    parser.add_argument("--dry-run", action="store_true", help="validate and print the plan; write nothing")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved experiment (includes and overrides applied, every parameter with "
                             "its value, the sweep and seeds) as YAML; run nothing, write nothing")
    parser.add_argument("--force", action="store_true", help="redo completed runs too")
    parser.add_argument("--replace", action="store_true",
                        help="write into a results folder that holds another experiment (another name, kind or "
                             "spec file), replacing its spec.yaml, plan.json and report (its runs stay)")
    parser.add_argument("--no-reuse", action="store_true",
                        help="train every run here, copying none from the spec's reuse: folders (to keep a whole "
                             "study on one device; the run ids do not change)")
    parser.add_argument("--allow-long", action="store_true",
                        help="accept runs estimated above the per-run time bound (1 h; see SECURITY.md)")
    parser.add_argument("--launcher", choices=("slurm", "local"),
                        help="submit the pending runs through submitit: slurm (one job array; settings in the "
                             "spec's launcher: section or launcher.KEY=VALUE) or local (subprocesses, --jobs at a "
                             "time); see manifold_lab.execution.launch")
    parser.add_argument("--wait", action="store_true",
                        help="with --launcher slurm: wait for the job array, then write the report")


def _print_plan(spec, runs, root, header: bool) -> None:
    store = ResultsStore(root)
    states = []
    for run in runs:
        found = (root / "runs" / run.run_id).is_dir()
        record = store.record(dataclasses.asdict(run)) if found else None
        states.append(record.status if record is not None else store.pending_state(dataclasses.asdict(run))
                      if found else "todo")
    if header:
        print(f"experiment {spec.name}: kind {spec.kind.name}, results in {display_path(root)}")
        part = f"; --runs {spec.runs}: {len(runs)} of them" if spec.runs else ""
        print(f"{len(spec.points)} grid point(s) x {len(spec.seeds)} seed(s) = {len(spec.points) * len(spec.seeds)} "
              f"runs{part}; {states.count('done')} done, {len(runs) - states.count('done')} to run")
    width = len(str(max((r.index for r in runs), default=0)))
    for run, state in zip(runs, states):
        print(f"{run.index:>{width}}  {run.run_id}  {state:<8}  seed={run.seed}  {format_values(run.sweep_values)}")


def _run_suite(args: argparse.Namespace) -> int:
    from manifold_lab.execution.gates import GateFilter, part_gates
    from manifold_lab.execution.runner import run_experiment
    from manifold_lab.reporting.report import write_report, write_suite_report
    from manifold_lab.spec.load import REFERENCE_ROOT, USER_ROOT
    from manifold_lab.spec.suite import load_suite

    suite = load_suite(args.spec, args.overrides, allow_long=args.allow_long)
    if args.run_index is not None or args.runs is not None:
        raise ValueError(f"{'--run-index' if args.runs is None else '--runs'} applies to single experiment files, "
                         "not to a suite; run a part instead")
    root = Path(args.out) if args.out else (REFERENCE_ROOT if args.reference else USER_ROOT) / suite.name
    if not (args.list or args.print_config):  # --dry-run refuses what the run would refuse
        from manifold_lab.execution.ownership import check_suite_root

        check_suite_root(root, replace=args.replace)
    status, lines = 0, {}
    waits = args.launcher in (None, "local") or args.wait  # the runs are over when a part's call returns
    for n, spec in enumerate(suite.parts):
        if args.list or args.dry_run or args.print_config:
            print(f"part {spec.name} ({display_path(spec.source)}):")
            args_part = argparse.Namespace(**{**vars(args), "spec": str(spec.source), "overrides": [],
                                              "out": str(root / spec.name), "reference": False})
            run(args_part)
            continue
        warn_traps(spec)
        gates, ran = part_gates(suite, n, root), frozenset()
        while True:  # the suite's gates (manifold_lab.execution.gates): a pilot first, the rest once it passed
            gate = GateFilter(spec.name, gates, exclude=ran)  # a run is started once per call, --force or not
            if gate.holds_everything():
                break  # a gate of an earlier part holds every run of this one: its folder is not touched
            if args.launcher:
                summary = _launch(args, spec, root / spec.name, select=gate)
            else:
                summary = run_experiment(spec, out=root / spec.name, jobs=args.jobs or spec.jobs, force=args.force,
                                         replace=args.replace, report=write_report, select=gate,
                                         batch_runs=args.batch_runs or default_batch_runs(spec))
            if gate.why is None:  # else the gate's line below says why nothing ran
                lines.setdefault(spec.name, []).append(summary.line(spec.name))
                print(lines[spec.name][-1])
            status = max(status, 1 if summary.failed or summary.report_error else 0)
            ran |= {r.run_id for r in gate.chosen}
            if not (gate.restricted and gate.why is None and waits
                    and all(st.state != "pending" for _, st in gate.states())):
                break  # else the pilot's runs settled its gate: the rest of the part now, or the gate's stop
        if gate.why is not None:
            lines.setdefault(spec.name, []).append(f"{spec.name}: {gate.why}")
            print(lines[spec.name][-1])
            status = max(status, gate.status)
            break
    if not (args.list or args.dry_run):
        command = shlex.join(["manifold-lab", "run", display_path(suite.source), *args.overrides,
                              *(["--reference"] if args.reference else ["--out", display_path(root)])])
        print(f"report: {display_path(write_suite_report(suite, root, lines, command))}")
        _print_where(root, args)
    return status


def _launch(args: argparse.Namespace, spec, out, reference: bool = False, select=None):
    from manifold_lab.execution.launch import launch
    from manifold_lab.reporting.report import write_report

    return launch(spec, args.launcher, out=out, wait=args.wait, jobs=args.jobs or spec.jobs, force=args.force,
                  reference=reference, replace=args.replace, report=write_report, select=select)


def data_sources(spec) -> list[str]:
    """``--dry-run``: where the data of the grid points comes from, one line per distinct source; raises
    (the paths searched and how to obtain it) when a run's data is absent and will not be downloaded."""
    if spec.kind.data is None:
        return []
    return list(dict.fromkeys(spec.kind.data(point.params) for point in spec.points))


def warn_traps(spec) -> None:
    """Print, once each, the kind's warnings about the parameters of the grid points (one line each)."""
    if spec.kind.warnings is None:
        return
    seen: dict[str, None] = {}
    for point in spec.points:
        seen.update((line, None) for line in spec.kind.warnings(point.params))
    for line in seen:
        print(f"warning: {spec.name}: {line}", file=sys.stderr)


def git_ignored(path) -> bool | None:
    """Whether git ignores ``path`` (``git check-ignore``); None outside a git work tree or without git."""
    import subprocess

    path = Path(path).resolve()
    try:
        found = subprocess.run(["git", "check-ignore", "-q", "--", str(path)], cwd=path if path.is_dir() else
                               path.parent, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return {0: True, 1: False}.get(found.returncode)


def _print_where(root, args: argparse.Namespace) -> None:
    if args.reference:
        print(f"reference results written on purpose in {display_path(root)}/ (committed files: review `git diff`)")
        return
    ignored = git_ignored(root)
    where = "ignored by git" if ignored else str(root.resolve()) + ("; not ignored by git: `git status` lists it"
                                                                      if ignored is False else "")
    print(f"results in {display_path(root)}/ ({where}); the committed reference results stay untouched")


def run(args: argparse.Namespace) -> int:
    from manifold_lab.execution.runner import check_plan, run_experiment
    from manifold_lab.reporting.report import write_report
    from manifold_lab.spec.suite import is_suite

    if args.wait and not args.launcher:
        raise ValueError("--wait applies to --launcher slurm (without a launcher, run always waits)")
    if args.launcher and (args.batch_runs or 1) > 1:
        raise ValueError("--batch-runs trains runs together in this process; it cannot be combined with --launcher "
                         "(each array task runs one run)")
    if args.launcher and args.run_index is not None:
        raise ValueError("--run-index runs one run here; it cannot be combined with --launcher, "
                         "which submits every pending run")
    if args.runs is not None and args.run_index is not None:
        raise ValueError("--runs and --run-index both choose runs: give one (--run-index I is --runs I for an "
                         "array task, without the report)")
    if args.reference and args.overrides:  # the committed results exactly as the experiment file says
        raise UsageError(
            f"--reference writes the committed results of {args.spec} as the file says; it takes no "
            f"key=value overrides (got {' '.join(args.overrides)}): drop them, or run without --reference "
            "to write runs/<name>/")
    if args.reference and args.out:
        raise UsageError("--reference writes the spec's reference folder (results/<name>); it takes no --out")
    if is_suite(args.spec):
        return _run_suite(args)
    spec = load_spec(args.spec, args.overrides, allow_long=args.allow_long)
    if args.runs is not None:  # refused before anything is written
        run_indices(args.runs, len(spec.points) * len(spec.seeds))
        spec = dataclasses.replace(spec, runs=args.runs.replace(" ", ""))
    if args.print_config:
        import yaml

        print(yaml.safe_dump(spec.resolved(), sort_keys=False), end="")
        return 0
    if args.batch_runs is None:
        args.batch_runs = 1 if args.launcher or args.run_index is not None else default_batch_runs(spec)
    root = Path(args.out) if args.out else (spec.reference if args.reference else spec.output)
    if args.list or args.dry_run:
        runs = plan(spec)
        check_plan(runs)
        if spec.runs:  # the part --runs chooses
            indices = run_indices(spec.runs, len(runs))
            runs = [r for r in runs if r.index in indices]
        if args.dry_run:  # the clash the run refuses (another experiment's folder)
            from manifold_lab.execution.ownership import check_owner

            check_owner(root, spec.name, spec.kind.name, spec.source, replace=args.replace)
        sources = data_sources(spec) if args.dry_run else []
        if args.run_index is not None and args.run_index >= len(runs):
            raise ValueError(f"--run-index {args.run_index} is out of range: the plan has runs 0..{len(runs) - 1}")
        _print_plan(spec, runs, root, header=args.dry_run)
        for line in sources:
            print(f"data: {line}")
        return 0
    warn_traps(spec)
    if args.no_reuse:
        spec = dataclasses.replace(spec, reuse=(), no_reuse=True)
    if args.launcher:
        summary = _launch(args, spec, root if args.out else None, reference=args.reference)
    else:
        summary = run_experiment(spec, out=root if args.out else None, jobs=args.jobs or spec.jobs,
                                 run_index=args.run_index, force=args.force, reference=args.reference,
                                 replace=args.replace, report=write_report, batch_runs=args.batch_runs)
    print(summary.line(spec.name))
    if args.launcher and not summary.waited:
        print(f"when the jobs are done: manifold-lab report {display_path(root)}")
    elif args.run_index is None:
        print(f"report: {display_path(root / 'report.md')}")
    _print_where(root, args)
    if summary.report_error:
        print(f"the kind's figures failed: {summary.report_error}", file=sys.stderr)
    return 1 if summary.failed or summary.report_error else 0
