"""Attacks on the submitit launcher (issue 25): each test performs one and checks the defence.

Slurm is faked by scripts on PATH (``test_launch.fake_slurm``: ``sbatch`` records the
script and answers a job id, ``squeue`` prints ``squeue.out`` when a test wrote one and
otherwise knows no job, ``sacct`` knows no job either).
"""

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kinds_for_tests import write_spec
from test_launch import EPOCHS_SPEC, checkpointed, env_with_kinds, epochs_spec, fake_slurm, ml, run_dirs

from manifold_lab.errors import UsageError
from manifold_lab.execution import provenance
from manifold_lab.spec.load import load_spec

pytest.importorskip("submitit")


class Canary:
    """Unpickling this creates the file ``path``: a planted pickle that runs code."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def plant(folder: Path, names: list[str], canary: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(pickle.dumps(Canary(canary)))


def start(cwd: Path, *args, env=None, **popen) -> subprocess.Popen:
    """``manifold-lab ARGS`` started in ``cwd`` (the test kinds loaded), its output captured as text."""
    return subprocess.Popen([sys.executable, "-m", "manifold_lab", *args], cwd=cwd, env=env or env_with_kinds(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def everything_in(root: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


@pytest.fixture
def launch_kind():
    import kinds_for_launch

    from manifold_lab.kinds import register

    register(kinds_for_launch.KIND)


# --------------------------------------------------------------------------- 1. code execution through submitit's files


@pytest.mark.slow
def test_a_planted_result_pickle_neither_runs_nor_counts_as_done(tmp_path):
    """A copied results folder holds submitit/<job>_0_result.pkl for the job ids sbatch will hand out."""
    bin_dir = fake_slurm(tmp_path)  # sbatch answers 4242, 4243...; nothing runs, squeue knows nothing
    epochs_spec(tmp_path, 1, 0.0, a="[1.0, 2.0]")
    canary = tmp_path / "canary"
    ids = range(4240, 4250)
    plant(tmp_path / "runs" / "e" / "submitit", [f"{j}_{t}_0_result.pkl" for j in ids for t in (0, 1)]
          + [f"{j}_0_result.pkl" for j in ids] + [f"{j}_submitted.pkl" for j in ids], canary)
    start = time.monotonic()
    out = ml("run", "s.yaml", "--launcher", "slurm", "--wait", "launcher.wait_grace_s=1", cwd=tmp_path,
             env=env_with_kinds(bin_dir))
    assert not canary.exists()
    assert out.returncode == 1, out.stderr
    assert "e: 2 runs: 2 submitted, 0 already done; 0 done, 2 failed" in out.stdout
    assert "Slurm does not list job 4242" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert time.monotonic() - start < 60  # it did not wait for ever
    assert "0 done, 0 failed, 2 not run" in (tmp_path / "runs" / "e" / "report.md").read_text()


@pytest.mark.slow
def test_jobs_started_at_once_load_only_the_submissions_own_task_pickles(tmp_path):
    """The same planted result pickles while the jobs run; and Slurm starts the tasks before submitit has moved
    its own pickles into place, so a planted <job>_submitted.pkl would be loaded by the job: each submission
    has a new folder of its own instead."""
    bin_dir = fake_slurm(tmp_path)
    epochs_spec(tmp_path, 1, 0.0, a="[1.0, 2.0]")
    canary = tmp_path / "canary"
    plant(tmp_path / "runs" / "e" / "submitit", [f"{j}_{name}.pkl" for j in range(4240, 4250)
                                                 for name in ("submitted", "0_0_result", "1_0_result")], canary)
    out = ml("run", "s.yaml", "--launcher", "slurm", "--wait", cwd=tmp_path,
             env={**env_with_kinds(bin_dir), "FAKE_SLURM_START": "1"})
    assert not canary.exists()
    assert out.returncode == 0 and "2 done, 0 failed" in out.stdout, out.stderr


def test_the_launcher_never_asks_submitit_for_a_result(tmp_path, monkeypatch):
    """The outcome of a job is read from the run folder, whatever submitit's result file says."""
    import submitit

    from manifold_lab.execution import launch as launch_module
    from manifold_lab.execution.store import ResultsStore
    from manifold_lab.spec.sweep import PlannedRun

    def refuse(*args, **kwargs):
        raise AssertionError("the launcher loaded a submitit result pickle")

    monkeypatch.setattr(submitit.core.core.Job, "results", refuse)
    monkeypatch.setattr(submitit.core.core.Job, "result", refuse)
    store = ResultsStore(tmp_path)
    run = PlannedRun(index=0, run_id="r0", point=0, params={}, sweep_values={}, seed=0)
    summary = launch_module.LaunchSummary(folder=tmp_path)
    launch_module._count(store, run, summary, "job 1")
    assert summary.done == 0 and "job 1 ended without finishing the run" in summary.failed[0][1]
    store.begin("r0", {})
    store.finish("r0", "done", {"x": 1.0}, None, 0.1)
    launch_module._count(store, run, summary, "job 1")
    assert summary.done == 1
    (tmp_path / "runs" / "r0" / "metrics.json").write_text('{"x": 2.0}')  # edited: its digest no longer matches
    launch_module._count(store, run, summary, "job 1")
    assert summary.done == 1 and "sha256" in summary.failed[-1][1]


# --------------------------------------------------------------------------- 2. injection into the sbatch script


@pytest.mark.parametrize("section, message", [
    ("launcher:\n  partition: |\n    gpu\n    #SBATCH --wrap=touch owned\n", "control character '\\n'"),
    ("launcher: {partition: \"gpu\\rx\"}", "control character '\\r'"),
    ("launcher: {setup: [\"echo a\\necho b\"]}", "control character '\\n'"),
    ("launcher: {sbatch: {comment: \"a\\u2028b\"}}", "control character '\\u2028'"),
    ("launcher: {folder: \"x\\ty\"}", "control character '\\t'"),
    ("launcher: {sbatch: {output: /tmp/x}}", "would set --output, which the launcher writes itself"),
    ("launcher: {sbatch: {arr: 0-99}}", "would set --array"),
    ("launcher: {sbatch: {sig: INT@1}}", "would set --signal"),
    ("launcher: {sbatch: {e: err.txt}}", "would set --error"),
    ("launcher: {sbatch: {J: other}}", "would set -J"),
    ("launcher: {sbatch: {job_name: other}}", "would set --job-name"),
    ("launcher: {mem_gb: 0.0005}", "below 1 MB"),
    ("launcher: {sbatch: {mem: 0}}", "asks for no memory"),
    ("launcher: {sbatch: {mem_per_gpu: 0G}}", "asks for no memory"),
    ("launcher: {sbatch: {mem-per-cpu: 512K}}", "asks for no memory"),
])
def test_launcher_values_that_would_rewrite_the_script_are_refused(tmp_path, launch_kind, section, message):
    spec = write_spec(tmp_path / "s.yaml", EPOCHS_SPEC + section + "\n")
    with pytest.raises(UsageError) as info:
        load_spec(spec)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert re.search(r"s\.yaml:\d+:\d+: launcher\.", str(info.value))


def test_an_override_with_a_newline_is_refused_too(tmp_path, launch_kind):
    spec = write_spec(tmp_path / "s.yaml", EPOCHS_SPEC)
    with pytest.raises(UsageError, match="control character"):
        load_spec(spec, ['launcher.partition="gpu\\n#SBATCH --array=0-9999"'])
    ok = load_spec(spec, ["launcher.sbatch={account: lab, A: x, mem: 16G, exclusive: true}", "launcher.mem_gb=0.5"])
    assert ok.launcher.sbatch["mem"] == "16G" and ok.launcher.mem_gb == 0.5


@pytest.mark.slow
def test_a_block_scalar_partition_exits_2_and_submits_and_writes_nothing(tmp_path):
    bin_dir = fake_slurm(tmp_path)
    write_spec(tmp_path / "s.yaml", EPOCHS_SPEC + "launcher:\n  partition: |\n    gpu\n    #SBATCH --array=0-9999\n")
    out = ml("run", "s.yaml", "--launcher", "slurm", cwd=tmp_path, env=env_with_kinds(bin_dir))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "control character" in out.stderr
    assert not (tmp_path / "runs").exists() and not list(bin_dir.glob("sbatch.*.sh"))


# --------------------------------------------------------------------------- 5. --wait when Slurm knows nothing


@pytest.mark.slow
def test_wait_goes_on_while_squeue_lists_the_job_then_ends(tmp_path):
    bin_dir = fake_slurm(tmp_path)
    epochs_spec(tmp_path, 1, 0.0)
    (bin_dir / "squeue.out").write_text("4242|ml-e|PENDING\n")
    proc = start(tmp_path, "run", "s.yaml", "--launcher", "slurm", "--wait", "launcher.wait_grace_s=1",
                 env=env_with_kinds(bin_dir))
    calls = bin_dir / "squeue.calls"

    def polls():
        return calls.read_text().count("--jobs=4242") if calls.exists() else 0
    deadline = time.monotonic() + 90
    while polls() < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    # three polls (0.5 s, then 1 s, apart) span more than the 1 s grace: listed as queued, it still waits
    assert polls() >= 3 and proc.poll() is None
    (bin_dir / "squeue.out").unlink()  # the job is gone and did nothing
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "0 done, 1 failed" in stdout, stderr
    assert "--jobs=4242" in (bin_dir / "squeue.calls").read_text()


# --------------------------------------------------------------------------- 6. silent wrong results


@pytest.mark.slow
def test_report_and_run_are_refused_during_a_local_launch_also_between_tasks(tmp_path):
    """The launcher holds the folder's lock from the plan to the report: tried every 20 ms, it is never free."""
    import fcntl

    epochs_spec(tmp_path, 3, 0.3, seeds="[0, 1, 2]")
    root = tmp_path / "runs" / "e"
    proc = start(tmp_path, "run", "s.yaml", "--launcher", "local")
    tried, others, refused = 0, [], []
    while proc.poll() is None:
        if (root / "plan.json").exists():
            with open(root / ".lock") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    tried += 1
                else:  # free only once the sweep and its report are over
                    assert "3 runs: 3 done" in (root / "report.md").read_text()
                    break
            if not others and (run_dirs(root)[0] / "metrics.json").exists():  # run 0 done, the next one starting
                # the launcher is frozen between its tasks while the others start, so a slow start cannot find
                # the sweep already over; frozen, it still holds the lock
                os.kill(proc.pid, signal.SIGSTOP)
                try:
                    others = [start(tmp_path, *args) for args in (["report", "runs/e"], ["run", "s.yaml"])]
                    refused = [(other.communicate(timeout=120)[1], other.returncode) for other in others]
                finally:
                    os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.02)
    assert proc.wait(timeout=120) == 0 and tried > 100
    assert len(refused) == 2
    for err, returncode in refused:
        assert returncode == 2 and "is locked by another runner" in err, err
    assert "3 runs: 3 done, 0 failed, 0 not run" in (root / "report.md").read_text()


def queued_setup(tmp_path: Path):
    """A first submission of 3 runs (job 4242), none started; returns (bin folder, env)."""
    bin_dir = fake_slurm(tmp_path)
    env = env_with_kinds(bin_dir)
    epochs_spec(tmp_path, 1, 0.0, seeds="[0, 1, 2]")
    out = ml("run", "s.yaml", "--launcher", "slurm", cwd=tmp_path, env=env)
    assert out.returncode == 0 and "submitted 3 runs as Slurm job array 4242" in out.stdout, out.stderr
    return bin_dir, env


@pytest.mark.slow
@pytest.mark.parametrize("listed, submitted", [
    ("4242_0|ml-e|PENDING\n4242_1|ml-e|RUNNING\n4242_2|ml-e|PENDING\n", 0),
    ("4242_1|ml-e|PENDING\n4242_2|ml-e|COMPLETED\n", 2),  # 2 ended without a result: resubmitted
    ("4242_0|ml-other|PENDING\n", 3),  # another experiment's job with that id: not ours
])
def test_resubmitting_skips_the_runs_an_earlier_array_still_has_queued(tmp_path, listed, submitted):
    bin_dir, env = queued_setup(tmp_path)
    (bin_dir / "squeue.out").write_text(listed)
    again = ml("run", "s.yaml", "--launcher", "slurm", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert (f"e: 3 runs: {submitted} submitted, 0 already done, {3 - submitted} still queued or running in an "
            "earlier job" if submitted < 3 else "e: 3 runs: 3 submitted, 0 already done") in again.stdout
    assert (bin_dir / "sbatch.4243.sh").exists() == (submitted > 0)


@pytest.mark.slow
def test_when_squeue_cannot_say_the_earlier_jobs_runs_are_not_submitted_twice(tmp_path):
    """squeue fails (the controller does not answer): the 3 runs job 4242 was given may still be queued, so a
    rerun submits none of them and says why, except a run whose folder shows it ended; the submissions of another
    experiment in the same log folder hold nothing; --force submits them."""
    bin_dir, env = queued_setup(tmp_path)
    (bin_dir / "squeue").write_text('#!/bin/sh\necho "slurm_load_jobs error: Unable to contact slurm controller" >&2\n'
                                    "exit 1\n")
    again = ml("run", "s.yaml", "--launcher", "slurm", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert "e: 3 runs: 0 submitted, 0 already done, 3 possibly still queued in an earlier job (squeue did not " \
           "answer)" in again.stdout
    assert "squeue cannot say whether job(s) 4242 of this experiment are still queued; their unfinished runs are " \
           "not submitted again" in again.stderr
    assert not (bin_dir / "sbatch.4243.sh").exists()
    # a run whose folder records its end (failed) is no longer queued: it alone is submitted again
    (run_id,) = [r["run_id"] for r in json.loads((tmp_path / "runs" / "e" / "plan.json").read_text())["runs"]
                 if r["seed"] == 1]
    run_dir = tmp_path / "runs" / "e" / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "status.json").write_text(json.dumps({"status": "failed", "error": "boom", "seconds": 1.0}))
    again = ml("run", "s.yaml", "--launcher", "slurm", cwd=tmp_path, env=env)
    assert "e: 3 runs: 1 submitted, 0 already done, 2 possibly still queued" in again.stdout, again.stderr
    log = tmp_path / "runs" / "e" / "submitit" / "submissions.jsonl"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r[1] for r in lines[-1]["runs"]] == [run_id] and lines[-1]["experiment"] == "e"
    # another experiment's submission in the same log folder does not hold this one's runs
    log.write_text("".join(json.dumps({**line, "experiment": "other"}) + "\n" for line in lines))
    again = ml("run", "s.yaml", "--launcher", "slurm", cwd=tmp_path, env=env)
    assert "e: 3 runs: 3 submitted" in again.stdout, again.stderr
    forced = ml("run", "s.yaml", "--launcher", "slurm", "--force", cwd=tmp_path, env=env)
    assert forced.returncode == 0 and "3 submitted" in forced.stdout, forced.stderr
    assert (bin_dir / "sbatch.4245.sh").exists()


def test_damaged_lines_of_the_submission_log_are_skipped_not_raised(tmp_path):
    """A submissions.jsonl line that is JSON but not a record (a list, a number, runs not a list) is damaged."""
    from manifold_lab.execution.launch import _submissions

    good = {"launcher": "slurm", "job_id": "7", "runs": [[0, "abc"]]}
    lines = ["[1]", "3", "null", '{"launcher": "slurm", "job_id": "8", "runs": 5}', "{not json", json.dumps(good)]
    (tmp_path / "submissions.jsonl").write_text("\n".join(lines) + "\n")
    assert _submissions(tmp_path) == [good]


@pytest.mark.slow
def test_the_command_in_provenance_cannot_be_forged_by_the_environment(tmp_path):
    epochs_spec(tmp_path, 1, 0.0, a="[1.0, 2.0]")
    env = {**env_with_kinds(), provenance.COMMAND_ENV: "manifold-lab run forged.yaml"}
    for args in (["--jobs", "2"], ["--launcher", "local", "--force"]):
        out = ml("run", "s.yaml", *args, cwd=tmp_path, env=env)
        assert out.returncode == 0, out.stderr
        for run_dir in run_dirs(tmp_path / "runs" / "e"):
            command = json.loads((run_dir / "provenance.json").read_text())["command"]
            assert command == f"manifold-lab run s.yaml {' '.join(args)}", command
    spec = (tmp_path / "runs" / "e" / "spec.yaml").read_text()
    assert "forged" not in spec


def test_the_command_variable_is_read_only_in_a_runners_worker(monkeypatch):
    monkeypatch.setenv(provenance.COMMAND_ENV, "manifold-lab run forged.yaml")
    monkeypatch.setattr(sys, "argv", ["manifold-lab", "run", "x.yaml"])
    assert provenance.command() == "manifold-lab run x.yaml"


# --------------------------------------------------------------------------- 8. secrets typed on the command line


SECRET_OVERRIDES = ["launcher.sbatch.comment=token=s3cr3t-1", 'launcher.setup=["export API_KEY=s3cr3t-2"]',
                    "launcher.sbatch.account=lab"]


@pytest.mark.slow
def test_a_secret_in_an_override_is_recorded_nowhere_local(tmp_path):
    epochs_spec(tmp_path, 1, 0.0)
    out = ml("run", "s.yaml", "--launcher", "local", *SECRET_OVERRIDES, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    root = tmp_path / "runs" / "e"
    assert "s3cr3t" not in everything_in(root)
    for name in ("spec.yaml", "report.md", "submitit/submissions.jsonl"):
        assert "REDACTED" in (root / name).read_text(), name
    recorded = json.loads((run_dirs(root)[0] / "provenance.json").read_text())["command"]
    assert "token=REDACTED" in recorded and "API_KEY=REDACTED" in recorded and "account=lab" in recorded


@pytest.mark.slow
def test_a_secret_in_an_override_stays_only_in_the_job_script_slurm(tmp_path):
    bin_dir = fake_slurm(tmp_path)
    epochs_spec(tmp_path, 1, 0.0)
    out = ml("run", "s.yaml", "--launcher", "slurm", *SECRET_OVERRIDES, cwd=tmp_path, env=env_with_kinds(bin_dir))
    assert out.returncode == 0, out.stderr
    root = tmp_path / "runs" / "e"
    script = next(root.glob("submitit/*/4242_submission.sh"))
    assert "export API_KEY=s3cr3t-2" in script.read_text()  # what Slurm runs
    script.unlink()
    assert "s3cr3t" not in everything_in(root)


@pytest.mark.parametrize("text, expected", [
    ("run s.yaml launcher.sbatch.comment=token=abc", "run s.yaml launcher.sbatch.comment=token=REDACTED"),
    ("'launcher.setup=[\"export API_KEY=abc\"]'", "'launcher.setup=[\"export API_KEY=REDACTED\"]'"),
    ("password: hunter2, MY_SECRET='a b' x", "password: REDACTED, MY_SECRET=REDACTED x"),
    ("Authorization: Bearer abc.def", "Authorization: REDACTED"),
    ("curl https://me:hunter2@example.org/x", "curl https://me:REDACTED@example.org/x"),
    ("ghp_" + "a" * 36 + " AKIA" + "B" * 16, "REDACTED REDACTED"),
    ("params.train.tokenizer=bpe author=me --out secrets_dir", "params.train.tokenizer=bpe author=me --out secrets_dir"),
    ("python x.py --password hunter2 --api-key 'a b' -v", "python x.py --password REDACTED --api-key REDACTED -v"),
    ("tool --token --verbose", "tool --token --verbose"),  # a flag after the name is no value
])
def test_redact_replaces_credentials_and_leaves_the_rest(text, expected):
    assert provenance.redact(text) == expected


def test_redact_walks_mappings_and_lists():
    data = {"sbatch": {"api_token": "abc", "comment": "secret=x", "nodes": 2}, "setup": ["export HF_TOKEN=x"]}
    assert provenance.redact(data) == {"sbatch": {"api_token": "REDACTED", "comment": "secret=REDACTED", "nodes": 2},
                                       "setup": ["export HF_TOKEN=REDACTED"]}


# --------------------------------------------------------------------------- 9. clean failure


@pytest.mark.slow
def test_ctrl_c_during_a_local_launch_prints_one_line_and_the_runs_resume(tmp_path):
    epochs_spec(tmp_path, 6, 0.4, seeds="[0]")
    root = tmp_path / "runs" / "e"
    proc = start(tmp_path, "run", "s.yaml", "--launcher", "local", start_new_session=True)
    deadline = time.monotonic() + 90
    while not ((root / "plan.json").exists() and checkpointed(run_dirs(root)[0]) >= 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (root / "plan.json").exists() and checkpointed(run_dirs(root)[0]) >= 2, "no checkpoint of epoch 2 in 90 s"
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does: the whole process group
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and stderr.strip().splitlines() == ["manifold-lab run: interrupted"], stderr
    stopped = checkpointed(run_dirs(root)[0])
    assert 2 <= stopped < 6
    again = ml("run", "s.yaml", "--launcher", "local", cwd=tmp_path)
    assert again.returncode == 0 and "1 done, 0 failed" in again.stdout, again.stderr
    assert json.loads((run_dirs(root)[0] / "metrics.json").read_text())["resumed_at"] >= stopped


@pytest.mark.slow
@pytest.mark.parametrize("launcher, args, env_extra, message", [
    ("slurm", ["launcher.partition=nope"], {"FAKE_SLURM_REFUSE": "nope"}, "sbatch refused the submission"),
    ("local", ["launcher.folder=afile/sub"], {}, "launcher.folder: cannot make a submission folder"),
])
def test_a_refused_launcher_setting_leaves_no_folder(tmp_path, launcher, args, env_extra, message):
    bin_dir = fake_slurm(tmp_path)
    (tmp_path / "afile").write_text("a file, not a folder")
    epochs_spec(tmp_path, 1, 0.0)
    out = ml("run", "s.yaml", "--launcher", launcher, *args, cwd=tmp_path, env={**env_with_kinds(bin_dir), **env_extra})
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and message in out.stderr, out.stderr
    assert not (tmp_path / "runs").exists()
