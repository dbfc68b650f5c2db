"""Issue 13, part 1: attacks on results folders, runs and signals, performed for real.

Each class of defect gets the attack of the issue and a variant of it:
links inside a results folder (class 1), workers orphaned by a killed runner
(5), concurrent writers (6), a wrong state taken as done (7), a run that
takes the sweep down (8), leftovers and leaks (9). Links point at canary
files outside the results folder that must stay byte-for-byte untouched;
processes are real subprocesses killed with real signals and looked up in
``/proc``.
"""

from __future__ import annotations

import fcntl
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kinds_for_tests import KIND, cli, cli_env, write_spec

from manifold_lab import io
from manifold_lab.errors import UsageError
from manifold_lab.reporting.report import write_report
from manifold_lab.execution.runner import execute_run, run_experiment
from manifold_lab.spec.load import load_spec
from manifold_lab.execution.store import ResultsStore, locked
from manifold_lab.spec.sweep import plan
from manifold_lab.kinds import register

register(KIND)

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="uses /proc (Linux)")

SPEC = """\
name: h
kind: closed_form
params: {a: 2.0}
sweep:
  b: [0, 1]
  seeds: [0, 1]
"""


def run_ids(root: Path) -> list[str]:
    return [r["run_id"] for r in json.loads((root / "plan.json").read_text())["runs"]]


def executions(run_dir: Path) -> int:
    path = run_dir / "executions.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def snapshot(path: Path) -> dict:
    """Everything about a canary file or folder that an attack could change."""
    if path.is_dir():
        return {str(p.relative_to(path)): snapshot(p) for p in sorted(path.rglob("*"))} | {".": path.stat().st_mode}
    st = path.stat()
    return {"bytes": path.read_bytes(), "mode": st.st_mode, "mtime": st.st_mtime_ns}


def one_line(proc, *needles) -> str:
    """The single stderr line of a refused command (exit 2), checked to contain ``needles``."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if io.TEMPORARY.match(p.name))


# --------------------------------------------------------------------------- /proc


def proc_state(pid: int) -> str | None:
    """The state letter of ``pid`` (None when gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def alive(pid: int) -> bool:
    return proc_state(pid) not in (None, "Z", "X")  # a zombie has ended; only its entry is left


def descendants(pid: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def wait_for(condition, seconds: float = 60.0, proc=None) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the process ended first: {proc.communicate()}")
        if time.monotonic() > deadline:
            pytest.fail("condition not reached")
        time.sleep(0.05)


def running_runs(root: Path) -> int:
    count = 0
    for status in (root / "runs").glob("*/status.json"):
        try:
            count += json.loads(status.read_text())["status"] == "running"
        except (OSError, ValueError):
            pass
    return count


# --------------------------------------------------------------------------- 1: links


@pytest.fixture(scope="module")
def done_folder(tmp_path_factory):
    """A completed results folder of SPEC (4 runs), to copy for each attack."""
    base = tmp_path_factory.mktemp("done")
    write_spec(base / "s.yaml", SPEC)
    assert cli("run", "s.yaml", cwd=base).returncode == 0
    return base


def attacked_copy(done_folder: Path, tmp_path: Path) -> tuple[Path, Path, list[str]]:
    work = tmp_path / "work"
    shutil.copytree(done_folder, work)
    root = work / "runs" / "h"
    canary = tmp_path / "home"  # outside the results folder: a user's files
    canary.mkdir()
    (canary / ".bashrc").write_text("alias ll='ls -l'\n")
    (canary / "notes.txt").write_text("my notes\n")
    (canary / "metrics.json").write_text('{"y": 1}\n')
    return work, root, run_ids(root)


LINKS = {  # what is replaced by a link -> where the link points (inside the canary folder)
    ".lock": "notes.txt",
    "spec.yaml": "notes.txt",
    "runs/{id}": ".",
    "runs/{id}/run.log": "notes.txt",
    "runs/{id}/metrics.json": "metrics.json",
    "figures": ".",
}


@pytest.mark.parametrize("where", list(LINKS))
def test_a_link_inside_the_results_folder_is_refused_and_its_target_untouched(done_folder, tmp_path, where):
    work, root, ids = attacked_copy(done_folder, tmp_path)
    canary = tmp_path / "home"
    link = root / where.format(id=ids[1])
    if link.is_dir():
        shutil.rmtree(link)
    else:
        link.unlink()
    link.symlink_to((canary / LINKS[where]).resolve())
    before = snapshot(canary)
    results_before = sorted(p.name for p in (root / "runs").iterdir())

    line = one_line(cli("run", "s.yaml", cwd=work), "is a symbolic link", where.format(id=ids[1]))
    assert "remove the link" in line
    if where in ("runs/{id}", "figures"):  # the variant: `report` and `run --force` refuse it as well
        one_line(cli("report", "runs/h", cwd=work), "is a symbolic link")
        one_line(cli("run", "s.yaml", "--force", cwd=work), "is a symbolic link")
    assert snapshot(canary) == before  # .bashrc neither deleted, nor truncated, nor overwritten
    assert sorted(p.name for p in (root / "runs").iterdir()) == results_before


def test_hard_links_and_fifos_are_not_written_in_place(done_folder, tmp_path):
    """Variant: a second name of a user's file (a hard link) or a fifo where the runner writes in place."""
    work, root, ids = attacked_copy(done_folder, tmp_path)
    canary = tmp_path / "home" / "notes.txt"
    before = snapshot(canary)
    log = root / "runs" / ids[0] / "run.log"
    log.unlink()
    os.link(canary, log)
    (root / "runs" / ids[0] / "metrics.json").unlink()  # so that the run is done again
    out = cli("run", "s.yaml", cwd=work)
    assert out.returncode == 1 and "4 runs: 0 done, 3 skipped, 1 failed" in out.stdout
    assert "run.log has 2 hard links" in out.stderr and ids[0] in out.stderr
    lock = root / ".lock"
    lock.unlink()
    os.link(canary, lock)
    one_line(cli("report", "runs/h", cwd=work), ".lock has 3 hard links")  # canary, run.log, .lock
    assert snapshot(canary) == before
    lock.unlink()
    os.mkfifo(root / "runs" / ids[1] / "run.log.fifo")
    one_line(cli("run", "s.yaml", cwd=work), "run.log.fifo is not a regular file")


def test_a_link_planted_during_the_sweep_fails_only_its_run(tmp_path, monkeypatch):
    """Variant: the link appears after the runner checked the folder (a race); the write path refuses it."""
    monkeypatch.chdir(tmp_path)
    spec = load_spec(write_spec(tmp_path / "s.yaml", SPEC), ["params.sleep=1.5", "sweep.b=[0]"])
    canary = tmp_path / "home"
    canary.mkdir()
    (canary / ".bashrc").write_text("keep me\n")
    before = snapshot(canary)
    last = plan(spec)[-1].run_id
    root = tmp_path / "runs" / "h"

    def plant():
        wait_for(lambda: (root / "runs").is_dir(), 120)
        (root / "runs" / last).symlink_to(canary)

    planter = threading.Thread(target=plant)
    planter.start()
    with pytest.raises(UsageError, match=f"runs/{last} is a symbolic link"):  # the report refuses it
        run_experiment(spec, report=write_report)
    planter.join()
    first = plan(spec)[0].run_id
    assert json.loads((root / "runs" / first / "status.json").read_text())["status"] == "done"
    assert snapshot(canary) == before  # the run did not write into it


def test_each_write_path_refuses_a_link(tmp_path):
    """The helpers every writer goes through, one by one (no scan before them)."""
    canary = tmp_path / "canary.txt"
    canary.write_text("secret\n")
    before = snapshot(canary)
    root = tmp_path / "r"
    (root / "runs" / "abc").mkdir(parents=True)
    for name in ("x.json", ".lock", "run.log"):
        (root / "runs" / "abc" / name).symlink_to(canary)
    with pytest.raises(UsageError, match="x.json is a symbolic link"):
        io.write_json(root / "runs" / "abc" / "x.json", {"a": 1})
    with pytest.raises(UsageError, match=r"\.lock is a symbolic link"):
        with locked(root / "runs" / "abc" / ".lock"):
            pass
    with pytest.raises(UsageError, match="run.log is a symbolic link"):
        io.open_nofollow(root / "runs" / "abc" / "run.log", os.O_WRONLY | os.O_TRUNC)
    (root / "runs" / "abc" / ".lock").unlink()
    run = next(r for r in plan(load_spec(write_spec(tmp_path / "s.yaml", SPEC))))
    (root / "runs" / run.run_id).mkdir()
    (root / "runs" / run.run_id / "run.log").symlink_to(canary)
    with pytest.raises(UsageError, match="run.log is a symbolic link"):
        execute_run(KIND, run, root, "h")
    assert snapshot(canary) == before


def test_reuse_never_copies_through_a_link(done_folder, tmp_path):
    work, root, ids = attacked_copy(done_folder, tmp_path)
    secret = tmp_path / "secret.key"
    secret.write_text("PRIVATE KEY 0xdeadbeef\n")
    secret.chmod(0o600)
    log = root / "runs" / ids[0] / "run.log"
    log.unlink()
    log.symlink_to(secret)
    write_spec(work / "t.yaml", SPEC.replace("name: h", "name: t") + "reuse: [runs/h]\n")
    one_line(cli("run", "t.yaml", cwd=work), "is a symbolic link", "run.log")
    copied = [p for p in (work / "runs").rglob("*")
              if p.is_file() and not p.is_symlink() and b"deadbeef" in p.read_bytes()]
    assert copied == []
    # Variant: a whole run folder of the reused experiment is a link to a forged complete run.
    log.unlink()
    log.write_text("ok\n")
    forged = tmp_path / "forged"
    shutil.copytree(root / "runs" / ids[1], forged)
    shutil.rmtree(root / "runs" / ids[1])
    (root / "runs" / ids[1]).symlink_to(forged)
    one_line(cli("run", "t.yaml", cwd=work), "is a symbolic link", ids[1])
    assert not (work / "runs" / "t" / "runs").exists()


def test_train_refuses_a_link_in_its_folder(tmp_path):
    out = tmp_path / "train"
    out.mkdir()
    canary = tmp_path / "weights.pt"
    canary.write_bytes(b"my own checkpoint")
    before = snapshot(canary)
    (out / "checkpoint.pt").symlink_to(canary)
    res = subprocess.run([sys.executable, "-m", "manifold_lab", "train", "experiments/smoke/figure6a.yaml",
                          "--out", str(out)], capture_output=True, text=True, timeout=300, env=cli_env(),
                         cwd=Path(__file__).resolve().parents[1])
    one_line(res, "checkpoint.pt is a symbolic link")
    assert snapshot(canary) == before


# --------------------------------------------------------------------------- 5: orphans


def start_runner(work: Path, *args):
    return subprocess.Popen([sys.executable, "-m", "manifold_lab", "run", "s.yaml", *args], cwd=work,
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def workers_of(pid: int) -> set[int]:
    found = set()
    for child in descendants(pid):
        try:
            if b"multiprocessing" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.add(child)
        except OSError:
            pass
    return found


@pytest.mark.parametrize("jobs, sig", [(2, signal.SIGKILL), (2, signal.SIGTERM),
                                       pytest.param(1, signal.SIGINT, marks=pytest.mark.slow)])
def test_a_killed_runner_takes_its_workers_and_a_rerun_recovers_their_runs(tmp_path, jobs, sig):
    write_spec(tmp_path / "s.yaml", SPEC.replace("{a: 2.0}", "{a: 2.0, sleep: 4.0}"))
    root = tmp_path / "runs" / "h"
    proc = start_runner(tmp_path, "--jobs", str(jobs))
    wait_for(lambda: (root / "runs").is_dir() and running_runs(root) == jobs, proc=proc)
    workers = workers_of(proc.pid)
    assert len(workers) >= jobs  # the run workers (and multiprocessing's resource tracker)
    everything = descendants(proc.pid)
    proc.send_signal(sig)  # to the runner alone, as `kill` does
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 10  # "within a few seconds"
    while any(alive(p) for p in everything) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in everything if alive(p)] == []
    assert not (root / "report.md").exists()
    # An immediate rerun recovers the runs the workers held: all done, none "locked".
    out = cli("run", "s.yaml", "--jobs", str(jobs), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "4 runs: 4 done, 0 skipped, 0 failed" in out.stdout
    assert "4 done, 0 failed, 0 not run" in (root / "report.md").read_text()


def _hold_run_lock(path: Path, parent: int, seconds: float):
    """A process holding a run lock, naming ``parent`` as the runner that started it."""
    script = (
        "import fcntl, os, socket, sys, time\n"
        f"f = open({str(path)!r}, 'a+'); fcntl.flock(f, fcntl.LOCK_EX)\n"
        f"f.seek(0); f.truncate(); f.write(f'pid {{os.getpid()}} (parent {parent}) on {{socket.gethostname()}}\\n')\n"
        f"f.flush(); print('locked', flush=True); time.sleep({seconds})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_rerun_waits_for_a_dying_orphan_but_not_for_a_live_runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = load_spec(write_spec(tmp_path / "s.yaml", SPEC), ["sweep.b=[0]", "sweep.seeds=[0]"])
    (run,) = plan(spec)
    lock = tmp_path / "runs" / "h" / "runs" / run.run_id / ".lock"
    lock.parent.mkdir(parents=True)
    # An orphan: the runner that started it (pid 999999999) is gone; it ends a moment later.
    orphan = _hold_run_lock(lock, 999999999, 2.0)
    summary = run_experiment(spec, report=write_report)
    assert (summary.done, summary.failed) == (1, [])
    orphan.wait()
    # A live holder whose runner is alive (another array task): refused at once, its files untouched.
    io.write_json(lock.parent / "status.json", {"status": "running", "pid": 1})
    (lock.parent / "metrics.json").unlink()
    holder = _hold_run_lock(lock, os.getpid(), 60.0)
    try:
        summary = run_experiment(spec, report=write_report)
        assert summary.done == 0 and "is locked by another runner" in summary.failed[0][1]
        assert json.loads((lock.parent / "status.json").read_text()) == {"status": "running", "pid": 1}
    finally:
        holder.kill()
        holder.wait()


# --------------------------------------------------------------------------- 6: concurrency


def test_report_does_not_race_a_runner(tmp_path):
    write_spec(tmp_path / "s.yaml", SPEC.replace("{a: 2.0}", "{a: 2.0, sleep: 5.0}").replace("b: [0, 1]", "b: [0]"))
    root = tmp_path / "runs" / "h"
    proc = start_runner(tmp_path)
    wait_for(lambda: (root / "runs").is_dir() and running_runs(root) == 1, proc=proc)
    frozen = [proc.pid, *descendants(proc.pid)]  # frozen mid-run, so a slow `report` start cannot miss it
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        assert proc.poll() is None
        refused = cli("report", "runs/h", cwd=tmp_path)
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    one_line(refused, "is locked by another runner", "run report after")
    assert not (root / "report.md").exists()  # no stale report to land after the runner's
    assert proc.wait(timeout=120) == 0
    assert "2 runs: 2 done, 0 failed, 0 not run" in (root / "report.md").read_text()
    # Variant: array tasks (--run-index) hold the folder shared; report waits for them too.
    with ResultsStore(root).lock(shared=True):
        one_line(cli("report", "runs/h", cwd=tmp_path), "is locked")
    assert cli("report", "runs/h", cwd=tmp_path).returncode == 0


TRAIN = ["experiments/smoke/figure6a.yaml", "params.data.subset=20", "params.data.eval_subset=10",
         "params.data.batch_size=32", "params.train.relu_stats=false"]


def train_proc(out: Path, *extra, wrapper: str = ""):
    code = wrapper + "import runpy, sys; sys.argv = ['manifold_lab', *sys.argv[1:]]; " \
                     "runpy.run_module('manifold_lab', run_name='__main__')"
    return subprocess.Popen([sys.executable, "-c", code, "train", *TRAIN, *extra, "--out", str(out)],
                            cwd=Path(__file__).resolve().parents[1], env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_trainings_into_one_folder_the_second_refuses(tmp_path):
    out = tmp_path / "t"
    first = train_proc(out, "params.train.epochs=5")
    wait_for(lambda: (out / ".lock").exists() and str(first.pid) in (out / ".lock").read_text(), 300, first)
    # Freeze the first while it holds the lock: on a loaded machine it could otherwise finish before
    # the second has started, and the second would then meet its checkpoint instead of its lock.
    os.kill(first.pid, signal.SIGSTOP)
    try:
        with open(out / ".lock") as f, pytest.raises(BlockingIOError):
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # precondition: the lock is held right now
        second = train_proc(out, "params.train.epochs=1")
        stdout, stderr = second.communicate(timeout=300)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    one_line(subprocess.CompletedProcess([], second.returncode, stdout, stderr), "is locked by another runner",
             f"pid {first.pid}")
    assert first.wait(timeout=300) == 0, first.communicate()
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 5  # the first one's results stand


def test_a_second_train_refuses_while_the_folder_is_locked(tmp_path):
    """The quick variant: the folder's lock is held by this process (another train)."""
    out = tmp_path / "t"
    with locked(out / ".lock", what="train folder"):
        res = subprocess.run([sys.executable, "-m", "manifold_lab", "train", *TRAIN, "--out", str(out)],
                             cwd=Path(__file__).resolve().parents[1], env=cli_env(), capture_output=True,
                             text=True, timeout=300)
    one_line(res, "train folder", "is locked by another runner", str(os.getpid()))
    assert sorted(p.name for p in out.iterdir()) == [".lock"]


# --------------------------------------------------------------------------- 7: wrong state taken as done


def test_damaged_metrics_are_not_done_and_report_names_them(done_folder, tmp_path):
    work, root, ids = attacked_copy(done_folder, tmp_path)
    (root / "runs" / ids[0] / "metrics.json").write_text("{}\n")
    good = json.loads((root / "runs" / ids[1] / "metrics.json").read_text())
    (root / "runs" / ids[1] / "metrics.json").write_text(json.dumps({**good, "y": "lots"}))  # wrong type
    (root / "runs" / ids[2] / "metrics.json").write_text("[1, 2]")
    status = root / "runs" / ids[3] / "status.json"  # variant: a done-looking metrics.json, a failed status
    status.write_text(json.dumps({"status": "failed", "error": "x"}))
    out = cli("report", "runs/h", cwd=work)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 4 and "Traceback" not in out.stderr
    for run_id, problem in zip(ids, ["empty", "differs from what the run wrote", "holds a list", "status.json"]):
        (line,) = [x for x in lines if run_id in x]
        assert problem in line and "counted as not done" in line
    assert "4 runs: 0 done, 4 failed, 0 not run" in (root / "report.md").read_text()
    rerun = cli("run", "s.yaml", cwd=work)
    assert rerun.returncode == 0 and "4 runs: 4 done, 0 skipped, 0 failed" in rerun.stdout
    assert [executions(root / "runs" / i) for i in ids] == [2, 2, 2, 2]  # each computed once more


def test_a_legacy_record_of_wrong_types_is_named_when_the_kinds_report_fails(done_folder, tmp_path):
    """Variant: a run recorded before the digest existed (none in status.json), its metric of the wrong type."""
    work, root, ids = attacked_copy(done_folder, tmp_path)
    run_dir = root / "runs" / ids[2]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "metrics.json").write_text(json.dumps({**metrics, "y": "lots"}))
    status = json.loads((run_dir / "status.json").read_text())
    del status["metrics_sha256"]
    (run_dir / "status.json").write_text(json.dumps(status))
    out = cli("report", "runs/h", cwd=work)
    assert out.returncode == 1
    (line,) = out.stderr.strip().splitlines()
    assert "TypeError" in line and f"the metrics.json of run {ids[2]} differs" in line


@pytest.mark.slow
def test_force_retrains_from_scratch_not_from_the_checkpoint(tmp_path):
    extra = [f"--out={tmp_path / 'r'}", "sweep.seeds=[0]", "sweep.model.bottleneck_act=[identity]",
             "params.train.epochs=1"]
    args = ["run", *TRAIN, *extra]
    first = subprocess.run([sys.executable, "-m", "manifold_lab", *args], capture_output=True, text=True,
                           timeout=600, cwd=Path(__file__).resolve().parents[1])
    assert first.returncode == 0, first.stderr
    (run_dir,) = (tmp_path / "r" / "runs").iterdir()
    assert (run_dir / "checkpoint.pt").exists()
    again = subprocess.run([sys.executable, "-m", "manifold_lab", *args, "--force"], capture_output=True,
                           text=True, timeout=600, cwd=Path(__file__).resolve().parents[1])
    assert again.returncode == 0, again.stderr
    log = (run_dir / "run.log").read_text()
    assert "resumed from" not in log and '"epoch": 1' in log  # trained epoch 1 again


KILL_AT_LAST_LOG = (
    "import os, manifold_lab.train.trainer as t\n"
    "_write = t._write_history\n"
    "def _kill_before_last(run_dir, history):\n"
    "    if len(history) == 2: os.kill(os.getpid(), 9)  # after the last checkpoint, before its log line\n"
    "    _write(run_dir, history)\n"
    "t._write_history = _kill_before_last\n"
)


@pytest.mark.slow
def test_a_kill_between_the_last_checkpoint_and_the_log_is_repaired(tmp_path):
    out = tmp_path / "t"
    killed = train_proc(out, "params.train.epochs=2", wrapper=KILL_AT_LAST_LOG)
    killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1 and not (out / "metrics.json").exists()
    resumed = train_proc(out, "params.train.epochs=2")
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert json.loads((out / "metrics.json").read_text())["curve_test_acc"] == [r["test_acc"] for r in rows]


# --------------------------------------------------------------------------- 8: one run cannot take the sweep down


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_native_abort_fails_only_its_run(tmp_path, jobs):
    write_spec(tmp_path / "s.yaml", SPEC)
    root = tmp_path / "runs" / "h"
    out = cli("run", "s.yaml", "params.abort_seeds=[0]", "--jobs", str(jobs), cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    assert "4 runs: 2 done, 0 skipped, 2 failed" in out.stdout
    assert out.stderr.count("worker process died (killed by SIGABRT)") == 2
    statuses = sorted(json.loads(p.read_text())["status"] for p in (root / "runs").glob("*/status.json"))
    assert statuses == ["done", "done", "failed", "failed"]  # none left "running"
    assert "4 runs: 2 done, 2 failed, 0 not run" in (root / "report.md").read_text()


@pytest.mark.slow
def test_the_issues_absurd_thread_count_fails_only_its_run(tmp_path):
    """The example of the issue: torch dies natively on 10^8 threads; the run with 1 thread still runs."""
    out = subprocess.run([sys.executable, "-m", "manifold_lab", "run", *TRAIN, "params.train.epochs=1",
                          "sweep.train.threads=[100000000,1]", "sweep.seeds=[0]",
                          "sweep.model.bottleneck_act=[identity]", f"--out={tmp_path / 'r'}"],
                         capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 1, out.stderr
    assert "2 runs: 1 done, 0 skipped, 1 failed" in out.stdout and "worker process died (killed by" in out.stderr
    assert "2 runs: 1 done, 1 failed, 0 not run" in (tmp_path / "r" / "report.md").read_text()


# --------------------------------------------------------------------------- 9: leftovers and leaks

KILL_MID_WRITE = (
    "import os, sys\nfrom manifold_lab import io\n"
    "with io.atomic_path(sys.argv[1]) as tmp:\n"
    "    tmp.write_bytes(b'half a file')\n"
    "    os.kill(os.getpid(), 9)\n"
)


def kill_mid_write(path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", KILL_MID_WRITE, str(path)], env=cli_env())
    assert proc.returncode == -signal.SIGKILL


def test_temporaries_of_killed_writes_are_swept(done_folder, tmp_path):
    work, root, ids = attacked_copy(done_folder, tmp_path)
    for path in (root / "report.md", root / "figures" / "f.png", root / "runs" / ids[0] / "metrics.json"):
        kill_mid_write(path)
    assert len(leftovers(root)) == 3
    assert cli("report", "runs/h", cwd=work).returncode == 0
    assert leftovers(root) == []
    # Variant: the runner sweeps them too, and a download folder is swept once its writer is gone.
    kill_mid_write(root / "runs" / ids[1] / "status.json")
    assert cli("run", "s.yaml", cwd=work).returncode == 0 and leftovers(root) == []
    data = tmp_path / "data"
    kill_mid_write(data / "archive.tar.gz")
    (data / f".extract-{dead_pid()}-abc").mkdir()
    archive = tmp_path / "served.tar"
    import tarfile

    with tarfile.open(archive, "w") as tf:
        tf.add(done_folder / "s.yaml", arcname="s.yaml")
    from manifold_lab.data.download import download_and_extract, sha256_file

    download_and_extract(archive.as_uri(), data, sha256=sha256_file(archive), filename="archive.tar.gz")
    assert sorted(p.name for p in data.iterdir()) == ["archive.tar.gz", "s.yaml"]


def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_an_include_error_never_prints_the_included_file(tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$hunter2hash:19000:0:99999:7:::\napi_key: hunter2\n")
    write_spec(tmp_path / "s.yaml", f"name: x\nkind: closed_form\ninclude: [{secret}]\n")
    line = one_line(cli("run", "s.yaml", "--dry-run", cwd=tmp_path), "not a .yaml or .yml file")
    assert "hunter2" not in line and "root:" not in line
    # Variant: a .yaml link to the same file.
    (tmp_path / "preset.yaml").symlink_to(secret)
    write_spec(tmp_path / "s.yaml", "name: x\nkind: closed_form\ninclude: [preset.yaml]\n")
    line = one_line(cli("run", "s.yaml", "--dry-run", cwd=tmp_path), "not a .yaml or .yml file")
    assert "hunter2" not in line


class _Trickle(http.server.BaseHTTPRequestHandler):
    """Sends a large Content-Length, then one byte every 50 ms: each read is quick, the whole never ends."""

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Length", str(10**9))
        self.end_headers()
        try:
            while not self.server.stop.is_set():
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass

    def log_message(self, *args):
        pass


def test_a_trickling_download_ends_at_its_deadline(tmp_path):
    from manifold_lab.data.download import download

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.stop = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/cifar.tar.gz"
        with pytest.raises(UsageError, match=r"took longer than 1 s; nothing was written"):
            download(url, tmp_path / "cifar.tar.gz", sha256="0" * 64, timeout=30, deadline=1.0)
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
    assert list(tmp_path.iterdir()) == []  # neither the archive nor a temporary
