"""Trainer pieces with closed forms, divergence, bad configs and the smoke experiments."""

import json
import math
import subprocess
import sys

from pathlib import Path

import pytest
import torch

from manifold_lab.cli import main
from manifold_lab.models import mobilenet_v2
from manifold_lab.train import TrainConfig, train
from manifold_lab.train.config import OptimConfig, ScheduleConfig
from manifold_lab.train.optim import TFRMSprop, build_optimizer, lr_factor, param_groups

SMOKE = {
    "data": {"name": "digits", "image_size": 16, "channels": 3, "batch_size": 64},
    "model": {"preset": "cifar_fast", "width_mult": 0.25},
    "optim": {"lr": 0.05},
    "train": {"epochs": 2, "threads": 1, "relu_stats_images": 16},
}


ROOT = Path(__file__).resolve().parents[1]
#: 5 train and 3 test images per class of digits, in batches of 25
TINY_DATA = ["params.data.subset=5", "params.data.eval_subset=3", "params.data.batch_size=25"]


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "manifold_lab", *args], capture_output=True, text=True,
                          timeout=600, **kw)


def test_schedule_closed_forms():
    cos = ScheduleConfig(name="cosine")
    assert lr_factor(0, cos, 10, 4) == 1.0
    assert lr_factor(20, cos, 10, 4) == pytest.approx(0.5)  # half-way: (1 + cos(pi/2)) / 2
    assert lr_factor(40, cos, 10, 4) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(20, ScheduleConfig(name="cosine", min_lr_ratio=0.1), 10, 4) == pytest.approx(0.55)
    exp = ScheduleConfig(name="exponential", decay=0.98)
    assert lr_factor(3 * 10 + 7, exp, 10, 100) == pytest.approx(0.98**3)
    step = ScheduleConfig(name="step", step_epochs=2, gamma=0.1)
    assert [lr_factor(e * 10, step, 10, 10) for e in (0, 1, 2, 5)] == pytest.approx([1, 1, 0.1, 0.01])
    warm = ScheduleConfig(name="constant", warmup_epochs=2)
    assert [lr_factor(s, warm, 10, 10) for s in (0, 9, 19, 20)] == pytest.approx([0.05, 0.5, 1.0, 1.0])


def test_weight_decay_excludes_bn_and_bias():
    model = mobilenet_v2("cifar_fast", width_mult=0.25)
    decay, no_decay = param_groups(model, 5e-4, decay_bn_and_bias=False)
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    n_bn = sum(2 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert len(no_decay["params"]) == n_bn + 1  # every BN weight and bias, and the classifier bias
    assert no_decay["weight_decay"] == 0.0
    assert len(param_groups(model, 5e-4, decay_bn_and_bias=True)[1]["params"]) == 0
    assert isinstance(build_optimizer(model, OptimConfig(name="rmsprop")), TFRMSprop)


def test_tf_rmsprop_first_step():
    p = torch.nn.Parameter(torch.tensor([1.0]))
    opt = TFRMSprop([p], lr=0.1, alpha=0.9, eps=1e-3, momentum=0.9)
    p.grad = torch.tensor([2.0])
    opt.step()
    ms = 0.9 * 1.0 + 0.1 * 4.0  # TF starts the mean square at 1
    assert p.item() == pytest.approx(1.0 - 0.1 * 2.0 / math.sqrt(ms + 1e-3))


def test_smoke_training_learns_and_writes_files(tmp_path):
    cfg = TrainConfig.model_validate({**SMOKE, "train": {**SMOKE["train"], "epochs": 3, "clean_train_images": 50}})
    out = train(cfg, tmp_path, seed=0, progress=False)
    assert out["status"] == "done" and out["epochs"] == 3 and len(out["curve_test_acc"]) == 3
    assert out["test_acc"] > 0.15  # 10 classes: chance is 0.1
    assert out["curve_train_loss"][-1] < out["curve_train_loss"][0]
    assert out["shortcuts"] == 11  # width 0.25: the 10 of Table 2 plus the t = 1 block (8 -> 8 channels)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2, 3]
    # clean train accuracy: 5 images per class, so a multiple of 1/50, every epoch
    assert [round(50 * x["clean_train_acc"], 6) % 1 for x in lines] == [0, 0, 0]
    assert out["curve_clean_train_acc"] == [x["clean_train_acc"] for x in lines]
    stats = json.loads((tmp_path / "relu_stats.json").read_text())
    assert set(stats) == {"sample", "step0", "final"} and len(stats["step0"]) == len(stats["final"]) > 10
    # 16 images over 10 digit classes: 1 per class, every class once
    assert stats["sample"]["histogram"] == {str(c): 1 for c in range(10)} and stats["sample"]["images"] == 10
    rec = stats["step0"][0]
    assert 0 <= rec["min"] <= rec["mean"] <= rec["max"] <= rec["channels"]
    assert rec["name"] == "features.0.act" and rec["threshold"] == 3  # the stem sees 3 input channels


def test_nan_loss_is_diverged(tmp_path):
    cfg = TrainConfig.model_validate({**SMOKE, "optim": {"lr": 100}, "train": {**SMOKE["train"], "epochs": 3}})
    out = train(cfg, tmp_path, seed=0, progress=False)
    assert out["status"] == "diverged"
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["status"] == "diverged"


@pytest.mark.parametrize(
    "override, message",
    [
        ("params.model.width_mult=0", "width_mult"),
        ("params.model.bottleneck_act=gelu", "bottleneck_act"),
        ("params.model.shortcut=dense", "shortcut"),
        ("params.data.name=cifar10_jpeg", "cifar10"),
        ("params.data.image_size=8", "too small"),
    ],
)
def test_bad_config_one_line_exit_2(tmp_path, override, message):
    extra = ["params.data.root=" + str(tmp_path / "missing")] if "cifar10_jpeg" in override else []
    if "image_size=8" in override:
        extra = ["params.model.preset=imagenet"]
    res = cli("train", "experiments/smoke/figure6a.yaml", override, *extra, "--out", str(tmp_path / "o"))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in res.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", ["figure6a", "figure6b", "width_sweep", "imagenet", "bottleneck_width",
                                  "penalty_location", "budget_ladder"])
def test_smoke_experiments_run(tmp_path, name, capfd, monkeypatch):
    # every run of the experiment's sweep, each on 50 train and 30 test digits (one batch of 25 is still
    # two steps), in this process: the runs still train in the runner's worker processes
    monkeypatch.chdir(ROOT)
    extra = ["params.model.preset=cifar_fast", "params.train.bf16=false"] if name == "imagenet" else []
    extra += [*TINY_DATA, "params.train.relu_stats_images=10", "params.train.clean_train_images=10"]
    assert main(["run", f"experiments/smoke/{name}.yaml", *extra, "--out", str(tmp_path / name)]) == 0
    assert (tmp_path / name / "report.md").exists()
    out = capfd.readouterr()
    assert "0 failed" in out.out + out.err
