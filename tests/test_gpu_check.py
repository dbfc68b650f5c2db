"""benchmarks/gpu_check.py: the clear skip without a GPU, and its plumbing on the CPU at toy sizes.

No speed is asserted: the CPU run only checks that every figure is computed and written.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

gpu_check = pytest.importorskip("benchmarks.gpu_check")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the check would run")
def test_without_cuda_one_clear_line_exit_0_and_nothing_written(tmp_path):
    out = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--out-dir", str(tmp_path / "gpu")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "no CUDA device: skipped\n"
    assert not (tmp_path / "gpu").exists()


def test_unknown_part_is_one_line_exit_2(tmp_path):
    out = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--only", "train_step,nope"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "expected some of train_step, epoch, packed, ddp" in out.stderr


@pytest.mark.slow
def test_cpu_plumbing_computes_and_writes_every_figure_of_the_step_and_epoch_parts(tmp_path, capsys):
    status = gpu_check.main(["--device", "cpu", "--quick", "--only", "train_step,epoch", "--workers", "0",
                             "--epoch-images", "32", "--out-dir", str(tmp_path)])
    assert status == 0
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["errors"] == {}
    variants = result["train_step"]["variants"]
    assert set(variants) == {"eager", "channels_last", "bf16", "channels_last_bf16"}  # --quick: no compile
    assert variants["eager"]["vs_eager"] == 1.0
    assert all(v["images_per_s"] > 0 for v in variants.values())
    epoch = result["epoch"]
    # 32 images, batch 8, drop_last: 4 batches of each loader
    assert epoch["images"] == 32 and epoch["source"].startswith("random uint8 images")
    assert epoch["device_vs_dataloader"] == pytest.approx(epoch["device_loader_images_per_s"]
                                                          / epoch["dataloader_images_per_s"])
    table = capsys.readouterr().out
    assert "| train_step | channels_last_bf16 (vs eager) |" in table and "| epoch | device loader:" in table


def test_the_quoted_gpu_table_is_the_committed_measurement():
    """benchmarks/README.md quotes the table of benchmarks/results/gpu_check/gpu_check.json, not typed figures."""
    root = Path(__file__).resolve().parents[1]
    result = json.loads((root / "benchmarks" / "results" / "gpu_check" / "gpu_check.json").read_text())
    assert result["device"] == "cuda" and not result["errors"]
    readme = (root / "benchmarks" / "README.md").read_text()
    rows = gpu_check.table(result).splitlines()[2:]
    assert len(rows) == 11 and "\n".join(rows) in readme
    assert f"### Measured: one {result['device_name']}, `--quick` ({result['date']})" in readme


@pytest.mark.slow
def test_cpu_plumbing_of_the_throughput_part(tmp_path):
    """Every family's variants are computed; per-network and total images/s and runs per hour agree."""
    status = gpu_check.main(["--device", "cpu", "--only", "throughput", "--stacks", "1,2", "--streams", "2",
                             "--repeats", "1", "--steps", "1", "--batch-size", "4", "--out-dir", str(tmp_path),
                             "--families", ",".join(gpu_check.FAMILIES)])
    assert status == 0
    tp = json.loads((tmp_path / "gpu_check.json").read_text())["throughput"]
    rows = tp["variants"]
    assert set(rows) == {"eager", "eager_channels_last", "eager_bf16", "graph", "graph_channels_last", "graph_bf16",
                         "streams_2", "stack_1_eager", "stack_1_eager_bf16", "stack_1_graph", "stack_1_graph_bf16",
                         "stack_2_eager", "stack_2_eager_bf16", "stack_2_graph", "stack_2_graph_bf16"}
    for name, row in rows.items():
        assert row["images_per_s_total"] == pytest.approx(row["networks"] * row["images_per_s_per_network"]), name
        assert row["runs_per_hour"]["figure6a_budget"] == pytest.approx(row["images_per_s_total"] * 3600 / 200_000)
    assert rows["stack_2_eager"]["networks"] == 2 and rows["eager"]["vs_eager_total"] == 1.0
    assert tp["flops_per_image_fwd_bwd"] > 0


def test_bad_families_is_one_line_exit_2():
    out = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--only", "throughput", "--families", "nope"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "expected some of layouts, graph, streams, stacks, stack_graphs" in out.stderr


def test_committed_seed_batch_measurement_meets_the_4x_goal():
    """The committed H200 measurement: K = 8 stacked members train >= 4x the images/s of one eager network."""
    rows = json.loads((ROOT / "benchmarks" / "results" / "gpu_check" / "throughput_stacks.json").read_text())
    rows = rows["throughput"]["variants"]
    assert rows["stack_8_eager"]["vs_eager_total"] >= 4
    ratio = f"{rows['stack_8_eager']['vs_eager_total']:.1f}x the images/s of one network with 8 members"
    assert ratio in (ROOT / "README.md").read_text()  # README quotes the measurement, not a typed figure
    exact = f"{rows['stack_8_eager']['vs_eager_total']:.2f}x the images per\nsecond of one"
    assert exact in (ROOT / "README.md").read_text()  # "On one GPU"
    pilot = json.loads((ROOT / "benchmarks" / "results" / "gpu_pilot" / "pilot.json").read_text())
    total = f"{round(len(pilot['seeds']) * pilot['images_per_s_per_network'], -3):,.0f} images per second in total"
    assert total in " ".join((ROOT / "README.md").read_text().split())


@pytest.mark.slow
def test_gpu_pilot_plumbing_on_the_cpu(tmp_path):
    from benchmarks import gpu_pilot

    assert gpu_pilot.plan_epochs(250, 4000) == 12  # the committed pilot's plan: 0.6 x 250 s x 4000 / 50,000
    data = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"
    if not data.exists():
        pytest.skip("the CIFAR-10 JPEG copy is not in ../shared/datasets")
    assert gpu_pilot.main(["--out-dir", str(tmp_path), "--seeds", "2", "--epochs", "1", "--device", "cpu",
                           "--subset", "100"]) == 0
    record = json.loads((tmp_path / "pilot.json").read_text())
    assert record["epochs"] == 1 and len(record["test_acc"]) == 2 and record["status"] == ["done", "done"]
