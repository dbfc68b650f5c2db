"""A real 2-process DistributedDataParallel job (gloo on CPU) through torchrun."""

import importlib.util
import json
import os
import signal
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "manifold_lab", "train", "experiments/smoke/figure6a.yaml", "params.train.epochs=2",
           "params.data.subset=20", "params.data.eval_subset=11", "params.data.batch_size=16", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both workers: no orphans left behind
        proc.communicate()
        pytest.fail("the 2-process job did not finish in 300 s")
    res = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "done" and metrics["epochs"] == 2
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    # 11 test images per class, 10 classes, split over 2 ranks with padding: each counted once
    assert len(rows) == 2
    acc = rows[-1]["test_acc"] * 110
    assert abs(acc - round(acc)) < 1e-6
    # only rank 0 wrote: exactly one set of files (beside the train folder's .lock), printed once
    tensorboard = importlib.util.find_spec("tensorboard") is not None  # event files from rank 0 only
    assert sorted(p.name for p in out.iterdir() if p.name != ".lock") == [
        "checkpoint.pt", "metrics.json", "metrics.jsonl", "probe.json", "provenance.json", "relu_stats.json"] + ["tensorboard"] * tensorboard
    assert len(list(out.glob("tensorboard/events.out.tfevents.*"))) == (1 if tensorboard else 0)
    assert res.stdout.count('"status": "done"') == 1
