"""A user's runs never change a tracked file; the reference results are written only with --reference.

Each test copies the repository's experiment files, presets and ``.gitignore`` into a
fresh git repository under ``tmp_path`` (the tests never write into this checkout),
commits them, runs the command there and asks ``git status --porcelain``.
"""

import shutil
import subprocess
import sys

import pytest
from kinds_for_tests import REPO, cli_env

OVERRIDES = ["params.n_matrices=4", "params.n_points=20", "sweep.m=[2,3]", "sweep.n=[2]"]


def git(*args, cwd):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture
def clone(tmp_path):
    """A git repository holding experiments/, configs/ and .gitignore, all committed, status clean."""
    repo = tmp_path / "clone"
    for folder in ("experiments", "configs"):
        shutil.copytree(REPO / folder, repo / folder)
    shutil.copy(REPO / ".gitignore", repo / ".gitignore")
    (repo / "results" / "quickstart_theorem").mkdir(parents=True)
    (repo / "results" / "quickstart_theorem" / "report.md").write_text("the committed reference report\n")
    git("init", "-q", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "clone", cwd=repo)
    assert git("status", "--porcelain", cwd=repo) == ""
    return repo


def manifold_lab(*args, cwd):
    return subprocess.run([sys.executable, "-m", "manifold_lab", *args], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=300)


def test_a_run_with_overrides_leaves_git_status_clean(clone):
    out = manifold_lab("run", "experiments/quickstart/theorem.yaml", *OVERRIDES, cwd=clone)
    assert out.returncode == 0, out.stderr
    assert "quickstart_theorem: 2 runs: 2 done" in out.stdout
    assert "results in runs/quickstart_theorem/ (ignored by git)" in out.stdout
    assert (clone / "runs" / "quickstart_theorem" / "report.md").exists()
    assert git("status", "--porcelain", "--ignored=no", cwd=clone) == ""
    assert (clone / "results" / "quickstart_theorem" / "report.md").read_text() == "the committed reference report\n"


def test_reference_refuses_overrides_and_out_and_writes_results_on_purpose(clone):
    before = git("status", "--porcelain", "--ignored", cwd=clone)
    refused = manifold_lab("run", "experiments/quickstart/theorem.yaml", *OVERRIDES, "--reference", cwd=clone)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "--reference" in refused.stderr and "overrides" in refused.stderr
    refused = manifold_lab("run", "experiments/quickstart/theorem.yaml", "--reference", "--out", "x", cwd=clone)
    assert refused.returncode == 2 and "--out" in refused.stderr
    assert git("status", "--porcelain", "--ignored", cwd=clone) == before  # nothing written

    # A small experiment file, committed, then regenerated on purpose.
    spec = clone / "experiments" / "tiny.yaml"
    spec.write_text("name: tiny\nkind: collapse_theorem\nparams: {n_matrices: 4, n_points: 20}\n"
                    "sweep: {m: [2, 3], seeds: [0]}\n")
    git("add", "-A", cwd=clone)
    git("commit", "-qm", "tiny", cwd=clone)
    out = manifold_lab("run", "experiments/tiny.yaml", "--reference", cwd=clone)
    assert out.returncode == 0, out.stderr
    assert "reference results written on purpose in results/tiny/" in out.stdout
    assert "manifold-lab run experiments/tiny.yaml --reference" in (clone / "results/tiny/report.md").read_text()
    assert "?? results/" in git("status", "--porcelain", cwd=clone)


@pytest.mark.slow
def test_train_and_a_mobilenetv2_sweep_with_overrides_leave_git_status_clean(clone):
    tiny = ["params.train.epochs=1", "params.data.subset=8", "params.data.eval_subset=4",
            "params.train.relu_stats_images=10", "sweep.seeds=[0]"]
    out = manifold_lab("run", "experiments/smoke/figure6a.yaml", *tiny, "params.schedule.warmup_epochs=1", cwd=clone)
    assert out.returncode == 0, out.stderr
    assert "smoke_figure6a: 2 runs: 2 done" in out.stdout
    # The 1-epoch-under-1-epoch-warm-up trap: one warning line, however many grid points share it.
    assert out.stderr.count("warning:") == 1 and "every step is in the linear warm-up" in out.stderr
    report = (clone / "runs" / "smoke_figure6a" / "report.md").read_text()
    assert "Smoke test on scikit-learn's digits" in report and "CIFAR" not in report.split("## The answer")[0]
    assert "_Run with overrides of the experiment file: `params.train.epochs=1" in report
    assert "too short to check a plateau" in report and "10 test images, 1 per class of 10" in report
    trained = manifold_lab("train", "experiments/smoke/figure6a.yaml", *tiny, cwd=clone)
    assert trained.returncode == 0, trained.stderr
    assert (clone / "runs" / "smoke_figure6a" / "train" / "point0_seed0" / "metrics.json").exists()
    assert git("status", "--porcelain", "--ignored=no", cwd=clone) == ""
