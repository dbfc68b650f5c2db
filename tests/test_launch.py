"""The submitit launcher: the launcher: section, the sbatch submission, local jobs, requeue and resume.

Slurm is replaced at the last step only: a fake ``sbatch`` on PATH records the
submission file submitit wrote and answers with a job id, and the array tasks are
then executed as Slurm would start them (``python -m submitit.core._submit`` with
the SLURM_* variables), including a preemption (USR2) that submitit answers by
checkpointing and ``scontrol requeue`` (a fake recording the call).
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kinds_for_tests import REPO, cli_env, write_spec

from manifold_lab.errors import UsageError
from manifold_lab.execution.run_task import _gone
from manifold_lab.spec.load import load_spec

pytest.importorskip("submitit")

EPOCHS_SPEC = """\
name: e
kind: epochs
params: {epochs: 3, sleep: 0.0}
sweep:
  a: [1.0, 2.0]
  seeds: [0, 1]
"""

SLURM_SECTION = """\
launcher:
  partition: gpu
  timeout_min: 90
  gpus_per_run: 1
  cpus_per_run: 4
  mem_gb: 16
  array_parallelism: 3
  sbatch: {account: lab, qos: normal}
  setup: ["echo setting up"]
"""


def epochs_spec(tmp_path: Path, epochs: int, sleep: float, a: str = "[1.0]", seeds: str = "[0]") -> Path:
    """``s.yaml``: the epochs kind with ``epochs`` epochs of ``sleep`` s, swept over ``a`` and ``seeds``."""
    return write_spec(tmp_path / "s.yaml", EPOCHS_SPEC.replace("epochs: 3, sleep: 0.0", f"epochs: {epochs}, sleep: {sleep}")
                      .replace("[1.0, 2.0]", a).replace("[0, 1]", seeds))


def env_with_kinds(path_prefix: Path | None = None) -> dict:
    env = cli_env()
    env["MANIFOLD_LAB_EXTRA_KINDS"] = "tests.kinds_for_tests,tests.kinds_for_launch"
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env['PATH']}"
    return env


def ml(*args, cwd, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "manifold_lab", *map(str, args)], cwd=cwd,
                          env=env or env_with_kinds(), capture_output=True, text=True, timeout=timeout)


def fake_slurm(folder: Path) -> Path:
    """``sbatch`` (records the script, prints a job id), ``srun``, ``sacct``, ``scontrol`` (records its arguments)
    and ``squeue`` (records its arguments, prints ``squeue.out`` if a test wrote one: otherwise it knows no job).

    With ``FAKE_SLURM_START=1`` in the environment, ``sbatch`` also starts every task of the
    array at once in the background, as Slurm would with free nodes.
    """
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(
        '#!/bin/sh\nn=$(cat "$0.count" 2>/dev/null || echo 4241); n=$((n + 1)); echo $n > "$0.count"\n'
        'cp "$1" "$0.$n.sh"\n'
        'if [ -n "$FAKE_SLURM_START" ]; then\n'
        '  last=$(sed -n "s/^#SBATCH --array=0-\\([0-9]*\\).*/\\1/p" "$1")\n'
        '  folder=$(sed -n "s/.* -m submitit.core._submit //p" "$1" | tr -d "\'")\n'
        '  for i in $(seq 0 $last); do\n'
        '    SUBMITIT_EXECUTOR=slurm SLURM_JOB_ID=$((n + 100 + i)) SLURM_ARRAY_JOB_ID=$n SLURM_ARRAY_TASK_ID=$i \\\n'
        '    SLURM_NTASKS=1 SLURM_PROCID=0 SLURM_LOCALID=0 SLURM_NODEID=0 SLURM_JOB_NUM_NODES=1 \\\n'
        f'    {sys.executable} -u -m submitit.core._submit "$folder" > "$folder/${{n}}_${{i}}_0_log.out" 2>&1 &\n'
        '  done\n'
        'fi\n'
        'if [ -n "$FAKE_SLURM_REFUSE" ]; then echo "sbatch: error: invalid partition specified: $FAKE_SLURM_REFUSE" >&2; exit 1; fi\n'
        'echo "Submitted batch job $n"\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sacct").write_text("#!/bin/sh\necho 'JobID|State|NodeList'\n")  # knows no job yet
    (bin_dir / "scontrol").write_text('#!/bin/sh\necho "$@" >> "$0.calls"\n')
    (bin_dir / "squeue").write_text('#!/bin/sh\necho "$@" >> "$0.calls"\ncat "$0.out" 2>/dev/null\nexit 0\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return bin_dir


def run_array_task(folder: Path, array_id: str, task: int | None, cwd: Path, env: dict, **popen):
    """Start array task ``task`` of job ``array_id`` (``None``: the job is no array) as Slurm's srun would."""
    array = {} if task is None else {"SLURM_ARRAY_JOB_ID": array_id, "SLURM_ARRAY_TASK_ID": str(task)}
    job_id = array_id if task is None else str(int(array_id) + 100 + task)  # Slurm's own id of a task
    env = {**env, **array, "SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": job_id, "SLURM_NTASKS": "1",
           "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_JOB_NUM_NODES": "1"}
    return subprocess.Popen([sys.executable, "-u", "-m", "submitit.core._submit", str(folder)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def submission_folder(root: Path, job_id: str) -> Path:
    """The folder of submitit's files of job ``job_id`` (each submission has its own, in submissions.jsonl)."""
    lines = (root / "submitit" / "submissions.jsonl").read_text().splitlines()
    return root / "submitit" / next(r["folder"] for r in map(json.loads, lines) if r["job_id"] == job_id)


def computed(run_dir: Path) -> list[int]:
    path = run_dir / "epochs_computed.txt"
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def checkpointed(run_dir: Path) -> int:
    path = run_dir / "epoch_checkpoint.json"
    try:
        return json.loads(path.read_text())["epoch"]
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def assert_resumed(run_dir: Path, epochs: int, resumed_at: int) -> None:
    """Every epoch computed; those checkpointed before the interruption exactly once."""
    seen = computed(run_dir)
    assert 1 <= resumed_at < epochs
    assert json.loads((run_dir / "metrics.json").read_text())["resumed_at"] == resumed_at
    assert seen[:resumed_at] == list(range(1, resumed_at + 1)) and seen.count(resumed_at) == 1, seen
    assert sorted(set(seen)) == list(range(1, epochs + 1))
    assert len(seen) <= epochs + 1, seen  # at most the epoch cut short, twice


def run_dirs(root: Path) -> list[Path]:
    plan = json.loads((root / "plan.json").read_text())["runs"]
    return [root / "runs" / r["run_id"] for r in plan]


# --------------------------------------------------------------------------- the launcher: section


@pytest.mark.parametrize("section, message", [
    ("launcher: {partiton: gpu}", "unknown key 'launcher.partiton' (did you mean 'launcher.partition'?)"),
    ("launcher: {timeout_min: 0}", "launcher.timeout_min: Input should be greater than or equal to 1"),
    ("launcher: {gpus_per_run: two}", "launcher.gpus_per_run: Input should be a valid integer"),
    ("launcher: {sbatch: {'bad name': 1}}", "sbatch option 'bad name' is not an option name"),
])
def test_launcher_section_is_validated_in_one_line(tmp_path, section, message):
    spec = write_spec(tmp_path / "s.yaml", EPOCHS_SPEC + section + "\n")
    import kinds_for_launch
    from manifold_lab.kinds import register

    register(kinds_for_launch.KIND)
    with pytest.raises(UsageError) as info:
        load_spec(spec)
    assert message in str(info.value)
    assert re.search(r"s\.yaml:7:\d+: ", str(info.value))  # file:line:column (line 7: the launcher: line)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_launcher_errors_exit_2_and_write_nothing(tmp_path):
    write_spec(tmp_path / "s.yaml", EPOCHS_SPEC + "launcher: {partiton: gpu}\n")
    out = ml("run", "s.yaml", "--launcher", "slurm", cwd=tmp_path)
    assert out.returncode == 2 and "did you mean 'launcher.partition'?" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    write_spec(tmp_path / "s.yaml", EPOCHS_SPEC)
    no_slurm = {**env_with_kinds(), "PATH": str(Path(sys.executable).parent)}
    out = ml("run", "s.yaml", "--launcher", "slurm", cwd=tmp_path, env=no_slurm)
    assert out.returncode == 2 and "no Slurm on this machine" in out.stderr and "--launcher local" in out.stderr
    for args in (["--wait"], ["--launcher", "local", "--run-index", "0"], ["--launcher", "pbs"]):
        out = ml("run", "s.yaml", *args, cwd=tmp_path)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    out = ml("run", "s.yaml", "--launcher", "local", "launcher.gpus_per_run=2", cwd=tmp_path)
    assert out.returncode == 2 and "only kinds mobilenetv2" in out.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()  # nothing written
    env = {**env_with_kinds(fake_slurm(tmp_path)), "FAKE_SLURM_REFUSE": "nope"}
    out = ml("run", "s.yaml", "--launcher", "slurm", "launcher.partition=nope", cwd=tmp_path, env=env)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["manifold-lab run: error: sbatch refused the submission: sbatch: error: "
                                               "invalid partition specified: nope; check the launcher: settings "
                                               "(partition, account, time limit...)"]


# --------------------------------------------------------------------------- Slurm, up to the scheduler


@pytest.mark.slow
def test_slurm_array_submission_then_tasks_run_as_slurm_starts_them(tmp_path):
    bin_dir = fake_slurm(tmp_path)
    env = env_with_kinds(bin_dir)
    write_spec(tmp_path / "s.yaml", EPOCHS_SPEC + SLURM_SECTION)
    out = ml("run", "s.yaml", "--launcher", "slurm", "launcher.partition=a100", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert "submitted 4 runs as Slurm job array 4242 (at most 3 at a time)" in out.stdout
    assert "e: 4 runs: 4 submitted, 0 already done" in out.stdout
    assert "manifold-lab report runs/e" in out.stdout
    root = tmp_path / "runs" / "e"
    folder = submission_folder(root, "4242")
    assert f"logs: runs/e/submitit/{folder.name}/4242_<array index>_0_log.out (and .err)" in out.stdout

    script = (bin_dir / "sbatch.4242.sh").read_text()
    assert script == (folder / "4242_submission.sh").read_text()
    sbatch = set(re.findall(r"^#SBATCH (.*)$", script, flags=re.M))
    assert {"--array=0-3%3", "--partition=a100", "--time=90", "--gpus-per-node=1", "--cpus-per-task=4",
            "--mem=16GB", "--ntasks-per-node=1", "--nodes=1", "--account=lab", "--qos=normal",
            "--job-name=ml-e", "--signal=USR2@120"} <= sbatch
    assert f"--output={folder}/%A_%a_0_log.out" in sbatch
    assert "echo setting up" in script and "-m submitit.core._submit" in script
    submission = [json.loads(line) for line in (root / "submitit" / "submissions.jsonl").read_text().splitlines()]
    assert [s["job_id"] for s in submission] == ["4242"] and len(submission[0]["runs"]) == 4
    assert submission[0]["launcher_config"]["partition"] == "a100"

    # Slurm starts tasks 0 and 2; the others wait in the queue.
    for task in (0, 2):
        proc = run_array_task(folder, "4242", task, tmp_path, env)
        log = proc.communicate(timeout=120)[0]
        assert proc.returncode == 0, log
    dirs = run_dirs(root)
    assert [computed(d) for d in dirs] == [[1, 2, 3], [], [1, 2, 3], []]
    report = ml("report", "runs/e", cwd=tmp_path, env=env)
    assert report.returncode == 0, report.stderr
    assert "2 done, 0 failed, 2 not run" in (root / "report.md").read_text()

    # Rerunning the command submits only what is not done, as a new array of 2.
    again = ml("run", "s.yaml", "--launcher", "slurm", "launcher.partition=a100", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert "e: 4 runs: 2 submitted, 2 already done" in again.stdout
    assert "#SBATCH --array=0-1%2" in (bin_dir / "sbatch.4243.sh").read_text()
    for task in (0, 1):
        proc = run_array_task(submission_folder(root, "4243"), "4243", task, tmp_path, env)
        assert proc.wait(timeout=120) == 0
    assert [computed(d) for d in dirs] == [[1, 2, 3]] * 4
    # The first array's queued tasks start late: the runs are done, nothing is recomputed.
    proc = run_array_task(folder, "4242", 1, tmp_path, env)
    assert proc.wait(timeout=120) == 0
    assert [computed(d) for d in dirs] == [[1, 2, 3]] * 4
    last = ml("run", "s.yaml", "--launcher", "slurm", cwd=tmp_path, env=env)
    assert "e: 4 runs: 0 submitted, 4 already done" in last.stdout and not (bin_dir / "sbatch.4244.sh").exists()
    assert "report: runs/e/report.md" in last.stdout  # nothing pending: the report is written


@pytest.mark.slow
def test_slurm_wait_waits_for_the_array_then_writes_the_report(tmp_path):
    bin_dir = fake_slurm(tmp_path)
    env = {**env_with_kinds(bin_dir), "FAKE_SLURM_START": "1"}
    epochs_spec(tmp_path, 2, 0.2, a="[1.0, 2.0]", seeds="[0]")
    out = ml("run", "s.yaml", "--launcher", "slurm", "--wait", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert "submitted 2 runs as Slurm job array 4242 (at most 2 at a time)" in out.stdout
    assert "e: 2 runs: 2 submitted, 0 already done; 2 done, 0 failed" in out.stdout
    assert "report: runs/e/report.md" in out.stdout
    root = tmp_path / "runs" / "e"
    assert [computed(d) for d in run_dirs(root)] == [[1, 2], [1, 2]]
    assert "2 runs: 2 done, 0 failed, 0 not run" in (root / "report.md").read_text()
    assert len((root / "finals.csv").read_text().splitlines()) == 3


@pytest.mark.slow
def test_slurm_preemption_checkpoints_requeues_and_resumes(tmp_path):
    """USR2 mid-run: submitit calls checkpoint(), runs `scontrol requeue`; the requeued task resumes."""
    bin_dir = fake_slurm(tmp_path)
    env = env_with_kinds(bin_dir)
    epochs_spec(tmp_path, 6, 0.5, seeds="[0]")
    out = ml("run", "s.yaml", "--launcher", "slurm", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    root = tmp_path / "runs" / "e"
    folder, run_dir = submission_folder(root, "4242"), run_dirs(root)[0]
    assert "submitted 1 run as Slurm job 4242" in out.stdout and f"submitit/{folder.name}/4242_0_log.out" in out.stdout
    proc = run_array_task(folder, "4242", None, tmp_path, env)
    deadline = time.monotonic() + 60
    while checkpointed(run_dir) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR2)
    log = proc.communicate(timeout=60)[0]
    done_before = checkpointed(run_dir)
    assert "this job is preempted" in log and "Exiting gracefully after preemption" in log
    assert (bin_dir / "scontrol.calls").read_text().split() == ["requeue", "4242"]
    assert json.loads((run_dir / "status.json").read_text())["status"] == "running"
    # Slurm restarts the requeued task: it resumes after the last checkpointed epoch.
    proc = run_array_task(folder, "4242", None, tmp_path, env)
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, log
    assert_resumed(run_dir, 6, done_before)


# --------------------------------------------------------------------------- --launcher local


def start_local_until_checkpoint(tmp_path: Path, root: Path, epoch: int):
    """Start `run s.yaml --launcher local`; return (process, run 0's folder) once run 0 checkpointed ``epoch``."""
    proc = subprocess.Popen([sys.executable, "-m", "manifold_lab", "run", "s.yaml", "--launcher", "local"],
                            cwd=tmp_path, env=env_with_kinds(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if (root / "plan.json").exists() and checkpointed(run_dirs(root)[0]) >= epoch:
            return proc, run_dirs(root)[0]
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"run 0 did not checkpoint epoch {epoch} in 90 s: {proc.communicate()}")


@pytest.mark.slow
def test_local_launcher_runs_the_quickstart_toy_sweep_end_to_end(tmp_path):
    spec = REPO / "experiments" / "quickstart" / "toy.yaml"
    args = ["run", spec, "--launcher", "local", "--jobs", "2", "--out", "toy", "params.train.steps=20",
            "params.data.n_train=100", "params.data.n_test=100", "sweep.model.width=[2]", "sweep.seeds=[0]"]
    out = ml(*args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "quickstart_toy: 2 runs: 2 submitted, 0 already done; 2 done, 0 failed" in out.stdout
    assert len(re.findall(r"^run \d \(\w{12}\): local job \d+$", out.stdout, flags=re.M)) == 2
    root = tmp_path / "toy"
    metrics = [json.loads((d / "metrics.json").read_text()) for d in run_dirs(root)]
    assert len(metrics) == 2 and all(0.0 <= m["test_accuracy"] <= 1.0 for m in metrics)
    for d in run_dirs(root):  # provenance names the launcher's command, not submitit's task process
        assert json.loads((d / "provenance.json").read_text())["command"].startswith(
            f"manifold-lab run {spec} --launcher local --jobs 2 --out toy")
    # submitit's own files: one pickled task, one result and one log per job
    folder = root / "submitit"
    assert len(list(folder.glob("*/*_submitted.pkl"))) == 2 and len(list(folder.glob("*/*_0_result.pkl"))) == 2
    assert len(list(folder.glob("*/*_0_log.out"))) == 2
    report = (root / "report.md").read_text()
    assert "2 runs: 2 done, 0 failed, 0 not run" in report
    again = ml(*args, cwd=tmp_path)
    assert again.returncode == 0 and "2 runs: 0 submitted, 2 already done" in again.stdout


@pytest.mark.slow
def test_local_job_killed_mid_training_resumes_when_resubmitted(tmp_path):
    epochs_spec(tmp_path, 6, 0.4, seeds="[0, 1]")
    root = tmp_path / "runs" / "e"
    proc, first = start_local_until_checkpoint(tmp_path, root, 2)
    status = json.loads((first / "status.json").read_text())
    os.kill(status["pid"], signal.SIGKILL)  # the job's process, mid-training
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    assert re.search(r"e: 2 runs: 2 submitted, 0 already done; 1 done, 1 failed", stdout), stdout
    done_before = checkpointed(first)
    again = ml("run", "s.yaml", "--launcher", "local", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "e: 2 runs: 1 submitted, 1 already done; 1 done, 0 failed" in again.stdout
    assert_resumed(first, 6, done_before)
    assert computed(run_dirs(root)[1]) == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_local_job_preempted_is_requeued_by_submitit_and_resumes(tmp_path):
    """USR2 to the task process: submitit checkpoints and the local controller restarts the task."""
    epochs_spec(tmp_path, 5, 0.4, seeds="[0]")
    root = tmp_path / "runs" / "e"
    proc, run_dir = start_local_until_checkpoint(tmp_path, root, 2)
    os.kill(json.loads((run_dir / "status.json").read_text())["pid"], signal.SIGUSR2)
    done_before = checkpointed(run_dir)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "e: 1 runs: 1 submitted, 0 already done; 1 done, 0 failed" in stdout
    resumed_at = json.loads((run_dir / "metrics.json").read_text())["resumed_at"]
    assert resumed_at >= done_before >= 2
    assert_resumed(run_dir, 5, resumed_at)
    log = "".join(p.read_text() for p in (root / "submitit").glob("*/*_0_log.*"))
    assert "this job is preempted" in log and "Requeued job" in log


@pytest.mark.slow
def test_local_run_with_two_gpus_per_run_trains_as_two_ranks(tmp_path):
    """gpus_per_run: 2 gives one task per GPU with torchrun's variables; on CPU the ranks join over gloo."""
    import pickle

    spec = REPO / "experiments" / "smoke" / "figure6a.yaml"
    out = ml("run", spec, "--launcher", "local", "--out", "ddp", "launcher.gpus_per_run=2", "sweep.seeds=[0]",
             "sweep.model.bottleneck_act=[identity]", "params.train.epochs=1", "params.data.subset=40", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "smoke_figure6a: 1 runs: 1 submitted, 0 already done; 1 done, 0 failed" in out.stdout
    job = re.search(r"local job (\d+)", out.stdout).group(1)
    folder = submission_folder(tmp_path / "ddp", job)
    results = [pickle.loads((folder / f"{job}_{rank}_result.pkl").read_bytes()) for rank in (0, 1)]
    assert [r[0] for r in results] == ["success", "success"]
    assert [r[1]["status"] for r in results] == ["done", "rank"]  # rank 0 owns the run's files
    assert "global_rank=1(2)" in (folder / f"{job}_1_log.out").read_text()
    run_dir = run_dirs(tmp_path / "ddp")[0]
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 1
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1


def _alive(pid: int) -> bool:
    return not _gone(pid)  # a zombie counts as gone


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_local_launcher_stopped_or_killed_takes_its_jobs_with_it(tmp_path, sig):
    epochs_spec(tmp_path, 50, 0.4, seeds="[0]")
    root = tmp_path / "runs" / "e"
    proc, run_dir = start_local_until_checkpoint(tmp_path, root, 1)
    task = json.loads((run_dir / "status.json").read_text())["pid"]
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    controller = int(re.search(r"local job (\d+)", stdout).group(1))
    if sig == signal.SIGTERM:  # cleanly: the jobs are cancelled
        assert proc.returncode == 130 and "interrupted" in stderr
    else:  # no cleanup possible: the task's watchdog sees the launcher gone
        assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 30
    while (_alive(task) or _alive(controller)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(task) and not _alive(controller)
    stopped_at = checkpointed(run_dir)
    time.sleep(1.0)
    assert checkpointed(run_dir) == stopped_at < 50  # nothing trains on
