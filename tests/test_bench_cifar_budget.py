"""The CIFAR budget benchmark's plumbing: its options and a real --quick run of two arms.

No speed is asserted (the machine is shared): only that each arm ran its two runs through the
real command and that the ratios are computed against the baseline.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

bench = pytest.importorskip("benchmarks.bench_cifar_budget")


@pytest.mark.parametrize("argv, message", [
    (["--arms", "baseline,nope"], "unknown arm 'nope'; valid: baseline, compile, jobs2"),
    (["--arms", "jobs2"], "--arms must include the reference arm 'baseline'"),
    (["--epochs", "0"], "--epochs must be >= 1"),
])
def test_bad_options_are_one_line_exit_2(argv, message):
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_cifar_budget", *argv], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and message in out.stderr


def test_commands_differ_only_in_the_arm_switches(tmp_path):
    cmds = {arm: bench.command(bench.SPEC, tmp_path / arm, arm, None) for arm in bench.ARMS}
    assert cmds["compile"][-4:] == ["--jobs", "1", "--out", str(tmp_path / "compile")]
    assert "params.train.compile=true" in cmds["compile"] and "params.train.threads=1" in cmds["jobs2"]
    assert cmds["jobs2"][cmds["jobs2"].index("--jobs") + 1] == "2"
    assert all("sweep.seeds=[0, 1]" in c for c in cmds.values())
    assert cmds["batch2"][cmds["batch2"].index("--batch-runs") + 1] == "2" and "params.train.threads=2" in cmds["batch2"]

    def common(arm):  # the command without its arm's switches (threads, compile, --jobs N, --batch-runs N, --out)
        words = [w for w in cmds[arm] if not w.startswith(("params.train.threads=", "params.train.compile="))]
        for option in ("--jobs", "--batch-runs", "--out"):
            if option in words:
                i = words.index(option)
                del words[i:i + 2]
        return words
    assert all(common(arm) == common("baseline") for arm in bench.ARMS)
    assert len(common("baseline")) == 7  # python -m manifold_lab run SPEC sweep.model... sweep.seeds=...


@pytest.mark.slow
def test_quick_run_of_two_arms(tmp_path, monkeypatch):
    # each run shrunk to 20 train images (two steps of 10) and 20 test images: the plumbing is the same
    small = ("params.data.subset=2", "params.data.batch_size=10", "params.data.eval_subset=2",
             "params.train.relu_stats_images=20", "params.train.clean_train_images=20")
    for arm in ("baseline", "jobs2"):
        overrides, jobs, options = bench.ARMS[arm]
        monkeypatch.setitem(bench.ARMS, arm, ((*overrides, *small), jobs, options))
    out = tmp_path / "cifar_budget.json"
    result = bench.main(["--quick", "--arms", "baseline,jobs2", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert set(result["arms"]) == {"baseline", "jobs2"} and result["arms"]["baseline"]["vs_baseline"] == 1.0
    assert result["reference"] == "baseline"
    for arm in result["arms"].values():
        assert arm["runs"] == 2 and arm["runs_per_hour"] == pytest.approx(2 * 3600 / arm["wall_s"], rel=1e-3)
        # the record names the scratch folder, not the machine's temporary path
        assert "--out <scratch>/" in arm["command"] and tempfile.gettempdir() not in arm["command"]
    assert not list(Path(tempfile.gettempdir()).glob("bench_cifar_budget_*"))  # the scratch folder is gone


def test_the_quoted_batch_measurement_is_the_committed_one():
    """benchmarks/README.md quotes benchmarks/results/cifar_budget_batch.json (issue 23: batched vs --jobs 2)."""
    result = json.loads((ROOT / "benchmarks" / "results" / "cifar_budget_batch.json").read_text())
    arm = result["arms"]["batch2"]
    row = f"| `--batch-runs 2`, 2 threads | {arm['wall_s']:.1f} s | {arm['runs_per_hour']:.2f} | {arm['vs_jobs2']:.2f}x |"
    assert row in (ROOT / "benchmarks" / "README.md").read_text()
    assert result["best"] == "jobs2" and result["epochs"] is None  # the full budget; --jobs 2 stays the default
