"""Exact resume after a real SIGKILL, and clear errors for bad checkpoints."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

SPEC = "experiments/smoke/figure6a.yaml"
TINY = ["params.train.epochs=4", "params.data.subset=20", "params.data.eval_subset=10", "params.data.batch_size=32",
        "params.train.relu_stats=false"]


def train_cmd(out, *extra):
    return [sys.executable, "-m", "manifold_lab", "train", SPEC, *TINY, *extra, "--out", str(out)]


def final(out):
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_killed_and_resumed_run_equals_uninterrupted(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    subprocess.run(train_cmd(straight), check=True, capture_output=True, timeout=600)

    proc = subprocess.Popen(train_cmd(resumed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    metrics = resumed / "metrics.jsonl"
    while time.time() < deadline:  # kill once two epochs are checkpointed
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            break
        if proc.poll() is not None:
            pytest.fail("training ended before it could be killed")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (resumed / "metrics.json").exists()
    epochs_done = len(metrics.read_text().splitlines())
    assert 2 <= epochs_done < 4
    res = subprocess.run(train_cmd(resumed), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    # No temporary file left behind (.lock: the train folder's lock, see test_hardening_runner).
    assert not [p for p in resumed.iterdir() if p.name.startswith(".") and p.name != ".lock"]
    a, b = final(straight), final(resumed)
    assert a["curve_test_acc"] == b["curve_test_acc"] and a["curve_train_loss"] == b["curve_train_loss"]
    assert a["test_loss"] == b["test_loss"]


def test_checkpoint_errors_are_one_line(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint at all")
    res = subprocess.run(train_cmd(out), capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "corrupt or not a manifold-lab checkpoint" in res.stderr
    torch.save({"state_dict": torch.zeros(1)}, out / "checkpoint.pt")  # a foreign but loadable file
    res = subprocess.run(train_cmd(out), capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "is not a manifold-lab checkpoint" in res.stderr


def test_checkpoint_loads_weights_only(tmp_path):
    from manifold_lab.train.checkpoint import load_checkpoint

    out = tmp_path / "run"
    subprocess.run(train_cmd(out, "params.train.epochs=1"), check=True, capture_output=True, timeout=300)
    state = torch.load(out / "checkpoint.pt", weights_only=True)  # raises if anything but tensors/plain data
    assert state["epoch"] == 1 and load_checkpoint(out / "checkpoint.pt")["format"] == state["format"]
