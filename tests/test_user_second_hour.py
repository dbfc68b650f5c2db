"""Issue 26, a user's second hour: shrinking a study, watching it, reading what the commands print.

Derived quantities refused at validation (naming what to change), overrides that get the full
parameter path or the sweep syntax suggested, per-epoch progress of every active run in a log,
Ctrl-C in one line, ``--print-config``, ``--dry-run`` refusing the folder clash, ``--list`` saying
where an interrupted run resumes, "ignored by git" only when true, ``train``'s provenance and lines.
"""

from __future__ import annotations

import argparse
import dataclasses
import io as textio
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
import yaml
from kinds_for_tests import KIND, REPO, cli, cli_env, write_spec

from manifold_lab.commands.run import _print_where, git_ignored
from manifold_lab.errors import UsageError
from manifold_lab.execution.progress import RunProgress
from manifold_lab.train.steps import Steps
from manifold_lab.execution.store import ResultsStore
from manifold_lab.execution.workers import run_in_workers
from manifold_lab.kinds import register
from manifold_lab.spec.load import load_spec
from manifold_lab.spec.sweep import plan

register(KIND)

FIG6A = "experiments/figure6a_linear_bottleneck_cifar10.yaml"
SPEC = """\
    name: h
    kind: closed_form
    params: {a: 2.0}
    sweep: {b: [0, 1], seeds: [0, 1]}
    """
#: The smallest MobileNetV2 runs of the suite (digits, a few images), two epochs.
TINY = ["params.train.epochs=2", "params.data.subset=8", "params.data.eval_subset=4",
        "params.train.relu_stats=false", "sweep.seeds=[0]"]


@pytest.fixture
def my_fig6a(tmp_path, monkeypatch):
    """Figure 6a copied out of the repository, as a user adapts it (includes found from the repository root)."""
    monkeypatch.chdir(REPO)
    return shutil.copy(REPO / FIG6A, tmp_path / "mine.yaml")


# --------------------------------------------------------------------------- 1: derived quantities


@pytest.mark.parametrize("overrides, names", [
    (["params.data.subset=20", "params.train.epochs=2"],
     ["train.clean_train_images=1000", "data.subset=20", "train.clean_train_images <= 200"]),
    (["params.data.eval_subset=10"], ["train.relu_stats_images=250", "data.eval_subset=10", "<= 100"]),
    (["params.data.subset=5", "params.train.clean_train_images=null"], ["data.batch_size=128", "batch_size <= 50"]),
])
def test_a_shrunk_study_is_refused_at_validation_naming_what_to_change(my_fig6a, overrides, names):
    with pytest.raises(UsageError) as info:
        load_spec(my_fig6a, overrides)
    assert all(name in str(info.value) for name in names), str(info.value)
    assert "\n" not in str(info.value)
    # Shrunk consistently, it validates.
    ok = load_spec(my_fig6a, ["params.data.subset=20", "params.train.clean_train_images=200",
                              "params.data.batch_size=64", "params.data.eval_subset=25", "params.train.epochs=2"])
    assert ok.params.data.subset == 20


# --------------------------------------------------------------------------- 4: overrides


@pytest.mark.parametrize("spec, override, expected", [
    ("experiments/toy_linear_bottleneck.yaml", "model.width=2", "did you mean params.model.width=2?"),
    (FIG6A, "model.width=2", "did you mean params.model.width_mult=2?"),
    (FIG6A, "model.width=1,2", "did you mean sweep.model.width_mult=[1,2]?"),
    (FIG6A, "params.model.width=2", "(did you mean 'params.model.width_mult'?)"),
    (FIG6A, "sweep.seeds=1,2,4", "write sweep.seeds=[1,2,4]"),
    (FIG6A, "params.train.epochs=1,2", "write sweep.train.epochs=[1,2]"),
])
def test_overrides_get_the_full_path_and_the_sweep_syntax_suggested(monkeypatch, spec, override, expected):
    monkeypatch.chdir(REPO)
    with pytest.raises(UsageError) as info:
        load_spec(spec, [override])
    assert expected in str(info.value) and f"override {override!r}" in str(info.value)
    # What the line says to write is accepted.
    fixed = expected.split("did you mean ")[-1].split("write ")[-1].strip("()'?")
    load_spec(spec, [fixed if "=" in fixed else f"{fixed}=1.0"])


def test_a_quoted_comma_is_a_text_not_a_sweep(monkeypatch):
    monkeypatch.chdir(REPO)
    assert load_spec(FIG6A, ["params.data.root='a,b'"]).params.data.root == "a,b"


# --------------------------------------------------------------------------- 2: progress of every active run


def _epochs(n: int) -> int:
    steps = Steps(n)
    for epoch in range(1, n + 1):
        steps(epoch)
    return n


def test_workers_report_each_runs_epochs_to_the_runner_while_it_runs():
    notes, results = [], []
    run_in_workers(_epochs, [(3,), (2,)], 2, lambda i, ok, value: results.append((i, ok, value)),
                   on_note=lambda i, note: notes.append((i, note["done"], note["total"])))
    assert sorted(results) == [(0, True, 3), (1, True, 2)]
    assert sorted(notes) == [(0, 1, 3), (0, 2, 3), (0, 3, 3), (1, 1, 2), (1, 2, 2)]


def test_in_a_log_each_run_gets_a_line_per_epoch_at_most_every_few_seconds():
    stream = textio.StringIO()
    progress = RunProgress("fig", total=2, already=0, stream=stream)
    for done in (1, 2, 3):  # the same second: the first and the last epoch only
        progress.note(0, "run 0", {"unit": "epoch", "done": done, "total": 3, "left": 30.0 * (3 - done)})
    progress.note(1, "run 1", {"unit": "epoch", "done": 1, "total": 3, "left": 100.0})
    lines = stream.getvalue().splitlines()[1:]
    assert lines == ["fig: run 0: epoch 1/3, about 0:01:00 left", "fig: run 0: epoch 3/3",
                     "fig: run 1: epoch 1/3, about 0:01:40 left"]
    # Outside a worker (manifold-lab train in a pipe), the run prints its own lines; a resumed run's time left
    # counts only the epochs trained here.
    out = textio.StringIO()
    steps = Steps(20, start=7, stream=out)
    steps(8)
    assert out.getvalue().startswith("train: epoch 8/20, about 0:00:0") and out.getvalue().endswith(" left\n")
    quiet = textio.StringIO()
    Steps(2, stream=quiet, quiet=True)(1)
    assert quiet.getvalue() == ""


@pytest.mark.slow
def test_two_jobs_in_a_pipe_print_the_epochs_of_each_run(tmp_path):
    out = cli("run", REPO / "experiments/smoke/figure6a.yaml", *TINY, "--jobs", "2", "--out", tmp_path / "o",
              cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr
    for run in (0, 1):
        assert f"smoke_figure6a: run {run}: epoch 1/2, about " in out.stderr
        assert f"smoke_figure6a: run {run}: epoch 2/2\n" in out.stderr
    assert "\r" not in out.stderr  # no bar in a pipe


# --------------------------------------------------------------------------- Ctrl-C


@pytest.mark.slow
def test_ctrl_c_with_two_jobs_prints_one_line_and_list_says_where_the_runs_resume(tmp_path):
    out = tmp_path / "o"
    command = ["run", str(REPO / "experiments/smoke/figure6a.yaml"), *TINY, "params.train.epochs=50", "--jobs", "2",
               "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "manifold_lab", *command], cwd=REPO, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines, training = [], set()
    while len(training) < 2:  # both workers import torch and train: two runs report an epoch
        lines.append(proc.stderr.readline())
        assert lines[-1], "".join(lines)
        training |= set(re.findall(r": (run \d+): epoch \d+/50", lines[-1]))
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    stderr = "".join(lines) + proc.communicate(timeout=120)[1]
    assert proc.returncode == 130
    assert stderr.splitlines()[-1] == "manifold-lab run: interrupted"
    # No worker traceback (BrokenPipeError), no "leaked semaphore" warning of the resource tracker.
    assert "Traceback" not in stderr and "Error" not in stderr and "Warning" not in stderr, stderr
    listed = cli(*command, "--list", cwd=REPO)
    assert listed.stdout.count("resumes at epoch ") == 2 and "/50" in listed.stdout, listed.stdout


# --------------------------------------------------------------------------- 9: what the commands print


def test_print_config_prints_the_resolved_experiment_and_writes_nothing(tmp_path):
    write_spec(tmp_path / "s.yaml", SPEC)
    out = cli("run", "s.yaml", "params.block.act=relu", "sweep.b=[3]", "--print-config", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    config = yaml.safe_load(out.stdout)
    assert config["params"]["a"] == 2.0 and config["params"]["block"] == {"width": 1.0, "act": "relu"}
    assert config["sweep"] == {"b": [3], "seeds": [0, 1]}
    assert config["overrides"] == ["params.block.act=relu", "sweep.b=[3]"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


def test_dry_run_refuses_the_folder_of_another_spec_file_as_the_run_does(tmp_path):
    write_spec(tmp_path / "s.yaml", SPEC)
    write_spec(tmp_path / "other.yaml", SPEC)
    (tmp_path / "runs" / "h").mkdir(parents=True)
    (tmp_path / "runs" / "h" / "spec.yaml").write_text(yaml.safe_dump(
        {"name": "h", "kind": "closed_form", "command": "manifold-lab run other.yaml"}))
    refused = cli("run", "s.yaml", "--dry-run", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "holds the results of experiment 'h' from the spec file other.yaml" in refused.stderr
    assert cli("run", "s.yaml", "--dry-run", "--replace", cwd=tmp_path).returncode == 0


def test_dry_run_checks_that_the_data_exist(tmp_path):
    """Issue 25, class 7: a run whose data is absent fails at --dry-run (the paths searched, how to get it), not
    when it starts; data that will be downloaded or is present is named in one line."""
    empty = tmp_path / "nodata"
    empty.mkdir()
    smoke = REPO / "experiments" / "smoke" / "figure6a.yaml"
    base = ("run", smoke, "--dry-run", "--out", tmp_path / "out")
    for name, missing in (("cifar10_jpeg", "CIFAR-10 JPEG copy not found"),
                          ("cifar10", "cifar10 (cifar-10-python.tar.gz) not found"),
                          ("imagefolder", "image folder not found")):
        root = empty / "x" if name == "imagefolder" else empty
        refused = cli(*base, f"params.data.name={name}", f"params.data.root={root}", cwd=REPO)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
        assert missing in refused.stderr and str(empty) in refused.stderr
    assert not (tmp_path / "out").exists()
    later = cli(*base, "params.data.name=cifar10", f"params.data.root={empty}", "params.data.download=true", cwd=REPO)
    assert later.returncode == 0 and "data: cifar10: not here yet; the first run downloads it" in later.stdout
    (empty / "cifar-10-batches-py").mkdir()
    found = cli(*base, "params.data.name=cifar10", f"params.data.root={empty}", cwd=REPO)
    assert found.returncode == 0 and f"data: cifar10: {empty / 'cifar-10-batches-py'}" in found.stdout
    digits = cli(*base, cwd=REPO)
    assert digits.returncode == 0 and digits.stdout.rstrip().endswith("data: digits: bundled with scikit-learn")


def test_list_says_where_an_interrupted_run_resumes_without_reading_its_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    spec = load_spec("experiments/smoke/figure6a.yaml", ["params.train.epochs=20", "sweep.seeds=[0]"])
    store = ResultsStore(tmp_path)
    first = dataclasses.asdict(plan(spec)[0])
    run_dir = store.run_dir(first["run_id"])
    run_dir.mkdir(parents=True)
    (run_dir / "status.json").write_text(json.dumps({"status": "running", "pid": 2**22 + 12345}))  # gone
    assert store.pending_state(first) == "todo"  # no checkpoint: it starts over
    (run_dir / "checkpoint.pt").write_bytes(b"not read")
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e}) + "\n" for e in range(1, 8)))
    assert store.pending_state(first) == "resumes at epoch 8/20"
    (run_dir / "status.json").write_text(json.dumps({"status": "running", "pid": os.getpid()}))
    assert store.pending_state(first) == "running"


def test_ignored_by_git_is_said_only_when_git_ignores_the_folder(tmp_path, capsys):
    repo = tmp_path / "repo"
    (repo / "runs" / "x").mkdir(parents=True)
    (repo / "kept" / "x").mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / ".gitignore").write_text("/runs/\n")
    outside = tmp_path / "plain" / "runs" / "x"
    outside.mkdir(parents=True)
    assert (git_ignored(repo / "runs" / "x"), git_ignored(repo / "kept" / "x"), git_ignored(outside)) == \
        (True, False, None)
    args = argparse.Namespace(reference=False, out=None)
    for folder, said in ((repo / "runs" / "x", "(ignored by git)"),
                         (repo / "kept" / "x", f"({repo / 'kept' / 'x'}; not ignored by git"),
                         (outside, f"({outside})")):
        _print_where(folder, args)
        line = capsys.readouterr().out
        assert said in line and ("ignored by git)" in line) == (said == "(ignored by git)"), line


@pytest.mark.slow
def test_train_writes_provenance_and_prints_lines_not_bars_in_a_pipe(tmp_path):
    out = cli("train", REPO / "experiments/smoke/figure6a.yaml", *TINY, "--out", tmp_path / "t", cwd=REPO,
              timeout=600)
    assert out.returncode == 0, out.stderr
    record = json.loads((tmp_path / "t" / "provenance.json").read_text())
    assert record["device"] == "cpu" and record["command"].startswith("manifold-lab train ")
    assert record["started"] <= record["finished"]
    assert "train: epoch 1/2, about " in out.stderr and "train: epoch 2/2\n" in out.stderr
    assert "\r" not in out.stderr and "batch/s" not in out.stderr
