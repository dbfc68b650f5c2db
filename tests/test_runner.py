"""The runner: resume after a real SIGKILL, the lock, failures, --list / --run-index / --dry-run / --jobs."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
import yaml
from kinds_for_tests import KIND, cli, cli_env, files_under, write_spec

from manifold_lab.errors import UsageError
from manifold_lab.reporting.report import write_report
from manifold_lab.execution.runner import check_metrics, run_experiment
from manifold_lab.spec.load import load_spec
from manifold_lab.execution.store import ResultsStore
from manifold_lab.spec.sweep import plan
from manifold_lab.kinds import register

register(KIND)

SPEC = """\
name: r
kind: closed_form
params: {a: 2.0}
sweep:
  b: [0, 1]
  seeds: [0, 1, 2]
"""


def executions(run_dir):
    """How many times the run was computed (the test kind appends one line each time)."""
    path = run_dir / "executions.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def metrics_files(root):
    return sorted((root / "runs").glob("*/metrics.json"))


@pytest.mark.slow
def test_resume_after_sigkill_recomputes_nothing_completed(tmp_path):
    write_spec(tmp_path / "s.yaml", SPEC.replace("{a: 2.0}", "{a: 2.0, sleep: 0.25}").replace("[0, 1, 2]", "[0, 1, 2, 3]"))
    root = tmp_path / "runs" / "r"
    proc = subprocess.Popen([sys.executable, "-m", "manifold_lab", "run", "s.yaml"], cwd=tmp_path,
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(metrics_files(root)) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    completed = metrics_files(root)
    assert 3 <= len(completed) < 8, "the kill should land mid-sweep"
    stamps = {p: p.stat().st_mtime_ns for p in completed}
    # Nothing half-written: every file that exists parses; the interrupted run is "running".
    for p in root.rglob("*.json"):
        json.loads(p.read_text())
    statuses = [json.loads(p.read_text())["status"] for p in (root / "runs").glob("*/status.json")]
    assert statuses.count("running") <= 1

    out = cli("run", "s.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"8 runs: {8 - len(completed)} done, {len(completed)} skipped, 0 failed" in out.stdout
    assert len(metrics_files(root)) == 8
    for p, stamp in stamps.items():
        assert p.stat().st_mtime_ns == stamp  # not rewritten
        assert executions(p.parent) == 1  # computed once only
    assert sum(executions(d) for d in (root / "runs").iterdir()) <= 8 + 1  # at most the killed one twice
    assert (root / "report.md").exists()

    again = cli("run", "s.yaml", cwd=tmp_path)
    assert again.returncode == 0 and "8 runs: 0 done, 8 skipped, 0 failed" in again.stdout


def test_lock_stops_a_second_runner(tmp_path):
    write_spec(tmp_path / "s.yaml", SPEC)
    store = ResultsStore(tmp_path / "runs" / "r")
    with store.lock():
        out = cli("run", "s.yaml", cwd=tmp_path)
        assert out.returncode == 2
        (line,) = out.stderr.strip().splitlines()
        assert "is locked by another runner (pid " in line and str(os.getpid()) in line
        # Array tasks of a cluster job (--run-index) also wait for a whole-sweep runner.
        assert cli("run", "s.yaml", "--run-index", "0", cwd=tmp_path).returncode == 2
    assert not (store.root / "runs").exists()
    with store.lock(shared=True):  # another array task: --run-index runs coexist
        assert cli("run", "s.yaml", "--run-index", "1", cwd=tmp_path).returncode == 0
        assert cli("run", "s.yaml", cwd=tmp_path).returncode == 2
    assert len(metrics_files(store.root)) == 1


def test_failures_are_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_spec(tmp_path / "s.yaml", SPEC)
    spec = load_spec("s.yaml", ["params.nan_seeds=[1]", "params.fail_seeds=[2]", "sweep.b=[0]",
                                "sweep.seeds=[0,1,2,3]", "params.diverge_seeds=[3]"])
    summary = run_experiment(spec, report=write_report)
    assert (summary.done, summary.skipped, len(summary.failed)) == (1, 0, 3)
    store = ResultsStore(spec.output)
    records = {r.seed: store.record(r.__dict__) for r in plan(spec)}
    assert records[0].status == "done"
    assert records[1].status == "failed" and records[1].error.startswith("metric.y is nan")
    assert records[2].status == "failed" and records[2].error == "RuntimeError: asked to fail for seed 2"
    assert records[3].status == "diverged" and records[3].error == "loss became inf"
    assert "Traceback" in (records[2].run_dir / "run.log").read_text()
    assert not (records[1].run_dir / "metrics.json").exists()
    # Re-running redoes the failed ones (and they fail again), never the done one.
    summary = run_experiment(spec, report=write_report)
    assert (summary.done, summary.skipped, len(summary.failed)) == (0, 1, 3)
    assert [executions(records[s].run_dir) for s in range(4)] == [1, 2, 2, 2]


def test_exit_status_1_when_a_run_failed(tmp_path):
    write_spec(tmp_path / "s.yaml", SPEC)
    out = cli("run", "s.yaml", "params.fail_seeds=[1]", cwd=tmp_path)
    assert out.returncode == 1
    assert "6 runs: 4 done, 0 skipped, 2 failed" in out.stdout
    assert "RuntimeError: asked to fail for seed 1" in out.stderr


def test_check_metrics():
    assert check_metrics({"a": 1, "c": [1.0, 2.0]}) == ("done", {"a": 1, "c": [1.0, 2.0]}, None)
    status, _, error = check_metrics({"a": 1, "c": {"d": [0.0, float("inf")]}})
    assert status == "failed" and error.startswith("metric.c.d[1] is inf")
    assert check_metrics([1, 2])[0] == "failed"
    assert check_metrics({"status": "weird"})[0] == "failed"
    np = pytest.importorskip("numpy")
    assert check_metrics({"x": np.float32(0.5), "v": np.arange(3)}) == ("done", {"x": 0.5, "v": [0, 1, 2]}, None)


def test_list_and_dry_run_write_nothing(tmp_path):
    write_spec(tmp_path / "s.yaml", SPEC)
    before = files_under(tmp_path)
    listed = cli("run", "s.yaml", "--list", cwd=tmp_path)
    assert listed.returncode == 0
    lines = listed.stdout.strip().splitlines()
    assert len(lines) == 6
    assert [line.split()[0] for line in lines] == [str(i) for i in range(6)]
    assert all(line.split()[2] == "todo" for line in lines)
    dry = cli("run", "s.yaml", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0
    assert "2 grid point(s) x 3 seed(s) = 6 runs" in dry.stdout
    assert files_under(tmp_path) == before


@pytest.mark.slow
def test_run_index_runs_one_run_then_report_aggregates(tmp_path):
    write_spec(tmp_path / "s.yaml", SPEC)
    root = tmp_path / "runs" / "r"
    ids = [line.split()[1] for line in cli("run", "s.yaml", "--list", cwd=tmp_path).stdout.splitlines()]
    for i in (4, 1):
        out = cli("run", "s.yaml", "--run-index", i, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
    assert sorted(p.parent.name for p in metrics_files(root)) == sorted([ids[1], ids[4]])
    assert not (root / "report.md").exists()  # array tasks do not write the report
    listed = cli("run", "s.yaml", "--list", cwd=tmp_path).stdout.splitlines()
    assert [line.split()[2] for line in listed] == ["todo", "done", "todo", "todo", "done", "todo"]
    out = cli("report", root, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = (root / "report.md").read_text()
    assert "6 runs: 2 done, 0 failed, 4 not run" in report
    bad = cli("run", "s.yaml", "--run-index", 6, cwd=tmp_path)
    assert bad.returncode == 2 and "out of range" in bad.stderr


def test_runs_trains_only_that_part_of_the_plan_and_records_it(tmp_path, capsys, monkeypatch):
    """--runs 1-2,4 (a pre-registered part of a study): exactly runs 1, 2 and 4 are trained, the report covers
    them, and spec.yaml's command and the report's regenerate line carry --runs; bad selections are one line,
    exit 2, nothing written."""
    from manifold_lab.cli import main

    write_spec(tmp_path / "s.yaml", SPEC)
    root = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    for bad, message in (("5-3", "expected run indices and ranges like 0-48"), ("0-6", "run 6 is out of range: "
                         "the plan has runs 0..5"), ("a", "expected run indices")):
        assert main(["run", "s.yaml", "--runs", bad, "--out", str(root)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
        assert not root.exists()
    assert main(["run", "s.yaml", "--runs", "1-2,4", "--run-index", "1", "--out", str(root)]) == 2
    assert "give one" in capsys.readouterr().err and not root.exists()
    assert main(["run", "s.yaml", "--runs", "1-2,4", "--dry-run", "--out", str(root)]) == 0
    listed = capsys.readouterr().out
    assert "= 6 runs; --runs 1-2,4: 3 of them; 0 done, 3 to run" in listed
    assert [line.split()[0] for line in listed.splitlines()[2:]] == ["1", "2", "4"] and not root.exists()
    assert main(["run", "s.yaml", "--runs", "1-2,4", "--out", str(root)]) == 0
    assert "r: 6 runs: 3 done, 0 skipped, 0 failed, 3 left for later" in capsys.readouterr().out
    # --force on another part: the complete runs outside it are skipped, not left for later
    before = {p.parent.name: p.stat().st_mtime_ns for p in metrics_files(root)}
    assert main(["run", "s.yaml", "--runs", "0-1", "--force", "--out", str(root)]) == 0
    assert "r: 6 runs: 2 done, 2 skipped, 0 failed, 2 left for later" in capsys.readouterr().out
    ids = [r.run_id for r in plan(load_spec(tmp_path / "s.yaml"))]
    assert sorted(p.parent.name for p in metrics_files(root)) == sorted([ids[0], ids[1], ids[2], ids[4]])
    after = {p.parent.name: p.stat().st_mtime_ns for p in metrics_files(root)}
    assert [ids.index(i) for i in sorted(after, key=ids.index) if after[i] != before.get(i)] == [0, 1]  # redone
    command = "manifold-lab run s.yaml --runs 0-1 --out out"  # --force is no part of what regenerates it
    assert yaml.safe_load((root / "spec.yaml").read_text())["command"] == command
    report = (root / "report.md").read_text()
    assert "6 runs: 4 done, 0 failed, 2 not run" in report and f"    {command}\n" in report


@pytest.mark.slow
def test_jobs_2_gives_the_same_results_as_serial(tmp_path):
    write_spec(tmp_path / "s.yaml", SPEC)
    assert cli("run", "s.yaml", "--out", "serial", cwd=tmp_path).returncode == 0
    out = cli("run", "s.yaml", "--jobs", "2", "--out", "parallel", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "6 runs: 6 done, 0 skipped, 0 failed" in out.stdout
    serial = {p.parent.name: p.read_text() for p in metrics_files(tmp_path / "serial")}
    parallel = {p.parent.name: p.read_text() for p in metrics_files(tmp_path / "parallel")}
    assert len(serial) == 6 and serial == parallel
    assert (tmp_path / "parallel" / "summary.csv").read_text() == (tmp_path / "serial" / "summary.csv").read_text()
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()  # --out replaced the default


def test_force_redoes_completed_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = load_spec(write_spec(tmp_path / "s.yaml", SPEC), ["sweep.seeds=[0]"])
    run_experiment(spec, report=write_report)
    summary = run_experiment(spec, force=True, report=write_report)
    assert (summary.done, summary.skipped) == (2, 0)
    # Computed again in an emptied folder: nothing (a checkpoint, these counts) carried over.
    assert all(executions(d) == 1 for d in (spec.output / "runs").iterdir())
    with pytest.raises(UsageError, match="--jobs must be >= 1"):
        run_experiment(spec, jobs=0, report=write_report)


def test_reuse_copies_the_runs_another_experiment_completed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = load_spec(write_spec(tmp_path / "a.yaml", SPEC), ["sweep.b=[0]"])  # 3 runs with b = 0
    run_experiment(first, reference=True, report=write_report)  # into the reference folder results/r
    second = load_spec(write_spec(tmp_path / "s.yaml", SPEC.replace("name: r", "name: r2")),
                       ["reuse=[results/r]"])  # b = 0 and b = 1: 6 runs, 3 of them in results/r
    summary = run_experiment(second, report=write_report)
    assert (summary.done, summary.reused, summary.skipped) == (3, 3, 0)
    assert "3 reused" in summary.line("r2")
    copied = sorted(d.name for d in (first.reference / "runs").iterdir())
    for run_id in copied:
        target = second.output / "runs" / run_id
        assert executions(target) == 1  # copied, not computed again
        assert (target / "metrics.json").read_bytes() == (first.reference / "runs" / run_id / "metrics.json").read_bytes()
        assert json.loads((target / "status.json").read_text())["copied_from"] == "results/r"
    assert len(metrics_files(second.output)) == 6
    # A second invocation finds everything complete; --force recomputes rather than copies.
    assert (run_experiment(second, report=write_report).skipped,
            run_experiment(second, force=True, report=write_report).reused) == (6, 0)


def test_no_reuse_trains_every_run_here_under_the_same_run_ids(tmp_path, monkeypatch):
    """``--no-reuse`` keeps a whole study on one machine: nothing copied, the same plan."""
    monkeypatch.chdir(tmp_path)
    run_experiment(load_spec(write_spec(tmp_path / "a.yaml", SPEC), ["sweep.b=[0]"]), reference=True,
                   report=write_report)
    write_spec(tmp_path / "s.yaml", SPEC.replace("name: r", "name: r2"))
    out = cli("run", "s.yaml", "reuse=[results/r]", "--no-reuse", "--out", "here", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "6 runs: 6 done, 0 skipped, 0 failed" in out.stdout and "reused" not in out.stdout
    runs = sorted((tmp_path / "here" / "runs").iterdir())
    assert len(runs) == 6 and all(executions(d) == 1 for d in runs)
    assert not any("copied_from" in json.loads((d / "status.json").read_text()) for d in runs)
    assert {d.name for d in (tmp_path / "results" / "r" / "runs").iterdir()} < {d.name for d in runs}
    recorded = yaml.safe_load((tmp_path / "here" / "spec.yaml").read_text())
    assert "reuse" not in recorded  # what ran, and the command that redoes it
    assert shlex.split(recorded["command"]) == ["manifold-lab", "run", "s.yaml", "reuse=[results/r]", "--no-reuse",
                                                "--out", "here"]


def test_reuse_also_copies_from_the_users_own_runs(tmp_path, monkeypatch):
    """``reuse: [results/r]`` for a user's run into runs/r2 also looks in the user's runs/r."""
    monkeypatch.chdir(tmp_path)
    first = load_spec(write_spec(tmp_path / "a.yaml", SPEC), ["sweep.b=[1]", "sweep.seeds=[0]"])
    run_experiment(first, report=write_report)  # the user's folder runs/r; results/r does not exist
    assert str(first.output) == "runs/r" and not (tmp_path / "results").exists()
    second = load_spec(write_spec(tmp_path / "s.yaml", SPEC.replace("name: r", "name: r2")),
                       ["reuse=[results/r]", "sweep.seeds=[0]"])
    summary = run_experiment(second, report=write_report)
    assert (summary.done, summary.reused) == (1, 1)
    (run_id,) = [d.name for d in (first.output / "runs").iterdir()]
    assert json.loads((second.output / "runs" / run_id / "status.json").read_text())["copied_from"] == "runs/r"


def test_progress_lines_in_logs_count_runs_and_estimate_the_time_left(tmp_path):
    """Not on a terminal, every finished run prints one line: done of total, elapsed, time left."""
    write_spec(tmp_path / "s.yaml", SPEC)
    out = cli("run", "s.yaml", "params.fail_seeds=[2]", cwd=tmp_path)
    assert out.returncode == 1
    lines = [line for line in out.stderr.splitlines() if line.startswith("r: ")]
    assert lines[0] == "r: 6 of 6 runs to do (0 already complete)"
    progress = [line for line in lines if " runs (run " in line]
    assert [line.split()[1] for line in progress] == [f"{i}/6" for i in range(1, 7)]
    assert all("elapsed 0:00:" in line for line in progress)
    assert all(", about 0:" in line and line.endswith(" left") for line in progress[:-1])
    assert not progress[-1].endswith(" left")  # nothing left after the last run
    assert sum(" failed: " in line for line in lines) == 2  # seed 2 of both grid points, named with its id


def test_progress_on_a_terminal_is_a_bar_naming_the_current_run():
    import io

    from manifold_lab.execution.progress import RunProgress
    from manifold_lab.train.steps import clock

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    progress = RunProgress("r", total=4, already=1, stream=stream)
    progress.current(0, "run 1: seed=0 b=1")
    progress.current(1, "run 2: seed=0 b=2")
    progress.note(1, "run 2", {"unit": "epoch", "done": 3, "total": 20, "left": 85.0})
    text = stream.getvalue()  # both active runs on the bar, the second with its epoch and time left
    assert "run 1: seed=0 b=1 | run 2: epoch 3/20, about 0:01:25 left" in text
    progress.done("run 1 (abc)", "done", 0.5, key=0)
    progress.done("run 2 (def)", "failed", 0.5, "RuntimeError: boom", key=1)
    progress.close()
    text = stream.getvalue()
    assert "r:" in text and "3/4" in text and "run 1: seed=0 b=1" in text  # tqdm: done of total, current run
    assert "run 2 (def) failed: RuntimeError: boom" in text
    assert progress.estimate_left() is not None and clock(3725.4) == "1:02:05"
