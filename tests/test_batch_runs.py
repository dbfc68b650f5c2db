"""manifold-lab run --batch-runs K: compatible runs trained together, one folder per run (issue 23)."""

import json

import pytest
import yaml
from kinds_for_tests import KIND, cli, write_spec

from manifold_lab.execution.batch import group_runs
from manifold_lab.execution.runner import run_experiment
from manifold_lab.kinds import register
from manifold_lab.spec.load import load_spec
from manifold_lab.spec.sweep import plan

register(KIND)

SPEC = """\
name: b
kind: closed_form
params: {a: 2.0}
sweep:
  b: [0, 1]
  seeds: [0, 1, 2]
"""


def _spec(tmp_path, extra=""):
    return load_spec(write_spec(tmp_path / "b.yaml", SPEC + extra))


def test_groups_share_a_key_keep_plan_order_and_respect_the_size(tmp_path):
    runs = plan(_spec(tmp_path))
    groups = group_runs(KIND, runs, 2)
    # b=0 and b=1 never share a group (different parameters); at most two runs each; plan order kept
    assert [[(r.params["b"], r.seed) for r in g] for g in groups] == [
        [(0, 0), (0, 1)], [(0, 2)], [(1, 0), (1, 1)], [(1, 2)]]
    assert group_runs(KIND, runs, 1) == [[r] for r in runs]


def test_every_member_gets_its_own_complete_folder_with_the_group_in_its_provenance(tmp_path):
    spec = _spec(tmp_path)
    summary = run_experiment(spec, out=tmp_path / "out", batch_runs=3)
    assert summary.done == 6 and not summary.failed
    for run in plan(spec):
        folder = tmp_path / "out" / "runs" / run.run_id
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["y"] == 2.0 * (run.seed + 1) + run.params["b"]  # the closed form, per member
        assert (folder / "batched.txt").read_text() == "3\n"
        batch = json.loads((folder / "provenance.json").read_text())["batch"]
        assert batch["size"] == 3 and run.run_id in batch["run_ids"]
        assert json.loads((folder / "status.json").read_text())["status"] == "done"
    command = yaml.safe_load((tmp_path / "out" / "spec.yaml").read_text())["command"]
    assert "--batch-runs 3" in command


def test_a_group_that_fails_is_run_again_member_by_member(tmp_path):
    """A member raises inside its group: the group's members run again alone, and only that member fails.

    The test kind runs a group's members in turn, so seed 0 computed once in the group and once alone,
    seed 1 (the failing one) likewise, seed 2 only alone."""
    spec = load_spec(write_spec(tmp_path / "f.yaml", SPEC.replace("params: {a: 2.0}", "params: {a: 2.0, fail_seeds: [1]}")))
    summary = run_experiment(spec, out=tmp_path / "out", batch_runs=3)
    assert summary.done == 4 and sorted(r for r, _ in summary.failed) == sorted(
        r.run_id for r in plan(spec) if r.seed == 1)
    for run in plan(spec):
        folder = tmp_path / "out" / "runs" / run.run_id
        assert len((folder / "executions.txt").read_text().splitlines()) == {0: 2, 1: 2, 2: 1}[run.seed]
        assert "batch" not in json.loads((folder / "provenance.json").read_text())  # recorded as trained alone
    spec = load_spec(write_spec(tmp_path / "g.yaml", SPEC.replace("  b: [0, 1]\n", "  b: [-1]\n")))  # b = -1: the group fails
    summary = run_experiment(spec, out=tmp_path / "out_g", batch_runs=3)
    assert summary.done == 3
    for run in plan(spec):
        folder = tmp_path / "out_g" / "runs" / run.run_id
        assert len((folder / "executions.txt").read_text().splitlines()) == 1


def test_batch_runs_with_a_launcher_or_out_of_range_is_one_line_exit_2(tmp_path):
    write_spec(tmp_path / "b.yaml", SPEC)
    for args, message in ((["--batch-runs", "2", "--launcher", "local"], "cannot be combined with --launcher"),
                          (["--batch-runs", "0"], "--batch-runs")):
        out = cli("run", "b.yaml", *args, "--out", "o", cwd=tmp_path)
        assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


@pytest.mark.slow
def test_a_mobilenetv2_sweep_batched_writes_what_each_run_alone_writes(tmp_path):
    """The smoke Figure 6a (identity and relu6 on digits) with --batch-runs 2: the two runs train as one
    stacked network and each folder holds the files of a run trained alone. Shrunk to 20 train images (two
    steps of 10), 20 test images and 20 for the Figure 7 statistics: the files written do not depend on the sizes."""
    small = ("params.data.subset=2", "params.data.batch_size=10", "params.data.eval_subset=2",
             "params.train.relu_stats_images=20", "params.train.clean_train_images=20")
    out = cli("run", "experiments/smoke/figure6a.yaml", *small, "--batch-runs", "2", "--out", str(tmp_path / "o"),
              cwd=KIND_REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    alone = cli("run", "experiments/smoke/figure6a.yaml", *small, "--out", str(tmp_path / "a"), cwd=KIND_REPO,
                timeout=600)
    assert alone.returncode == 0, alone.stderr[-2000:]
    for run_dir in (tmp_path / "o" / "runs").iterdir():
        twin = tmp_path / "a" / "runs" / run_dir.name
        assert {p.name for p in run_dir.iterdir()} == {p.name for p in twin.iterdir()}
        assert json.loads((run_dir / "provenance.json").read_text())["batch"]["size"] == 2
        batched, single = (json.loads((d / "metrics.json").read_text()) for d in (run_dir, twin))
        assert set(batched) == set(single) and batched["params"] == single["params"]


from kinds_for_tests import REPO as KIND_REPO  # noqa: E402


def test_the_default_batches_on_a_cuda_device_only(tmp_path, monkeypatch):
    """--batch-runs defaults to GPU_BATCH_RUNS where the runs train on CUDA, 1 on the CPU or for kinds that cannot batch."""
    import torch

    from manifold_lab.execution.batch import GPU_BATCH_RUNS, default_batch_runs

    gpu = load_spec("experiments/smoke/figure6a.yaml", ["params.train.device=auto"])
    cpu = load_spec("experiments/smoke/figure6a.yaml", ["params.train.device=cpu"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_batch_runs(gpu) == GPU_BATCH_RUNS == 8 and default_batch_runs(cpu) == 1
    assert default_batch_runs(_spec(tmp_path)) == 1  # closed_form has no train.device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_batch_runs(gpu) == 1
