"""Seed-batched training (manifold_lab.models.stacked, manifold_lab.train.batched) against separate training.

The equivalence runs in float64: a stacked network computes the same sums as its members in
another order (grouped against dense convolutions), and in float32 that rounding, amplified by
batch norm on ReLU6 channels with almost no batch variance (1 / sqrt(var + eps)), is as large
as a few steps of training. In float64 the linear (identity) member agrees to 1e-7 and the
ReLU6 members to 1e-3 after two epochs of three steps (about 6e-7 at this test's size: 5 digits
per class at 16x16, batches of 16; later epochs can amplify the rounding chaotically in so tiny a
network, so the resume checks use linear members); a member given another member's data,
initialisation or dropout masks differs by more than 1e-2 (``test_wrong_seed_is_detected``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from manifold_lab.models import mobilenet_v2
from manifold_lab.models.stacked import member_state, stack_models, stack_state
from manifold_lab.train.batched import check_members, train_batch
from manifold_lab.train.config import TrainConfig
from manifold_lab.train.trainer import train

ROOT = Path(__file__).resolve().parents[1]
#: Parameter agreement after two epochs in float64 (module docstring).
TOL_LINEAR, TOL_RELU6 = 1e-7, 1e-3
#: A resumed batch against the same batch never interrupted (the same sums in the same order).
TOL_RESUME = 1e-9


@pytest.fixture
def float64():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def config(act="identity", *, epochs=2, dropout=0.2, **train_kw) -> TrainConfig:
    return TrainConfig.model_validate({
        "model": {"preset": "cifar_fast", "width_mult": 0.25, "bottleneck_act": act, "dropout": dropout},
        "data": {"name": "digits", "batch_size": 16, "subset": 5, "eval_subset": 2, "image_size": 16, "channels": 3},
        "optim": {"lr": 0.01},
        "train": {"epochs": epochs, "device": "cpu", "threads": 1, "relu_stats": False, "relu_stats_images": 20,
                  "clean_train_images": 20, **train_kw}})


def _params(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]


def _max_diff(a: dict, b: dict) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def _tol(cfg: TrainConfig) -> float:
    return TOL_LINEAR if cfg.model.bottleneck_act == "identity" else TOL_RELU6


@pytest.mark.parametrize("shortcut", ["bottleneck", "expansion"])
def test_stacked_forward_is_the_members_forward(float64, shortcut):
    torch.manual_seed(0)
    members = [mobilenet_v2("cifar_fast", width_mult=0.25, bottleneck_act=a, shortcut=shortcut, dropout=0.0)
               for a in ("identity", "relu6", "relu")]
    stacked = stack_models(members)
    xs = [torch.randn(4, 3, 16, 16) for _ in members]
    for train_mode in (False, True):  # batch statistics in train mode are per channel, hence per member
        stacked.train(train_mode)
        out = stacked(torch.cat(xs, dim=1))
        assert out.shape == (4, 3, 10)
        for k, m in enumerate(members):
            m.train(train_mode)
            assert torch.allclose(out[:, k], m(xs[k]), rtol=0, atol=1e-12)
    # the grouped layers: groups = K for the stem and dense 1x1 convs, K C for depthwise ones
    assert stacked.features[0].conv.groups == 3 and stacked.features[0].conv.in_channels == 9
    block = stacked.features[2]
    assert block.conv_pw.groups == 3 and block.conv_dw.groups == 3 * members[0].features[2].hidden


def test_state_round_trip_and_shape_check():
    torch.manual_seed(1)
    members = [mobilenet_v2("cifar_fast", width_mult=0.25) for _ in range(3)]
    stacked = stack_models(members)
    flat = stacked.state_dict()
    for k, m in enumerate(members):
        ref = m.state_dict()
        got = member_state(flat, k, ref)
        assert all(torch.equal(got[key], ref[key]) for key in ref)
    assert set(stack_state([m.state_dict() for m in members])) == set(flat)
    with pytest.raises(ValueError, match="members differ"):
        stack_models([mobilenet_v2("cifar_fast", width_mult=0.25), mobilenet_v2("cifar_fast", width_mult=0.5)])


def test_incompatible_runs_are_refused():
    with pytest.raises(ValueError, match="optim.lr"):
        check_members([config(), TrainConfig.model_validate({**config().model_dump(), "optim": {"lr": 0.5}})])
    with pytest.raises(ValueError, match="grad_clip"):
        check_members([config(grad_clip=1.0), config(grad_clip=1.0)])
    check_members([config("identity"), config("relu6")])  # arms that differ in activations only


@pytest.mark.slow
def test_batch_equals_separate_training(float64, tmp_path):
    """Mixed arms (identity, relu6, relu6), dropout 0.2, two epochs: parameters, metrics and the
    checkpoint of each member as when each trains alone."""
    members = [(config("identity"), tmp_path / "a", 1), (config("relu6"), tmp_path / "b", 2),
               (config("relu6"), tmp_path / "c", 3)]
    together = train_batch(members, progress=False)
    for (cfg, run_dir, seed), out in zip(members, together):
        alone = train(cfg, tmp_path / f"alone{seed}", seed=seed, progress=False)
        assert out["status"] == alone["status"] == "done"
        assert _max_diff(_params(run_dir), _params(tmp_path / f"alone{seed}")) < _tol(cfg)
        for key in ("test_acc", "clean_train_acc", "epochs", "params", "shortcuts"):
            assert out[key] == alone[key], key
        for key in ("train_loss", "test_loss", "clean_train_loss"):
            assert out[key] == pytest.approx(alone[key], rel=1e-4), key
        assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
def test_wrong_seed_is_detected(float64, tmp_path):
    """The tolerance of the equivalence test is far below what a member trained on another seed gives."""
    train_batch([(config("relu6"), tmp_path / "a", 1)], progress=False)
    train(config("relu6"), tmp_path / "other", seed=2, progress=False)
    assert _max_diff(_params(tmp_path / "a"), _params(tmp_path / "other")) > 10 * TOL_RELU6


@pytest.mark.slow
def test_diverged_member_fails_alone_and_interrupted_batch_resumes(float64, tmp_path, monkeypatch):
    """A member made to diverge (a NaN weight in its checkpoint) ends ``diverged``; the others finish
    as when trained alone. An interruption between two members' checkpoints (one at epoch 1, the
    others fresh) resumes to the same parameters."""
    from manifold_lab.train import batched

    cfg2 = config("identity")  # linear members: the equivalence holds to 1e-7 (two epochs: one interrupted, one resumed)
    members = [(cfg2, tmp_path / "a", 1), (cfg2, tmp_path / "b", 2), (cfg2, tmp_path / "c", 3)]
    real_save, calls = batched.save, []

    def save_then_stop(*args, **kwargs):
        real_save(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt  # after member a's first checkpoint, before b's and c's

    monkeypatch.setattr(batched, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train_batch(members, progress=False)
    monkeypatch.setattr(batched, "save", real_save)
    assert not (tmp_path / "b" / "checkpoint.pt").exists()
    state = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1
    outs = train_batch(members, progress=False)
    assert [o["status"] for o in outs] == ["done"] * 3
    for cfg, run_dir, seed in members:  # as when each trains alone
        train(cfg, tmp_path / f"alone{seed}", seed=seed, progress=False)
        assert _max_diff(_params(run_dir), _params(tmp_path / f"alone{seed}")) < TOL_LINEAR

    # a member whose weights hold a NaN from the start diverges in epoch 1; its partner trains on
    real_prepare = batched.prepare

    def poisoned(cfg, run_dir, seed, *args, **kwargs):
        run = real_prepare(cfg, run_dir, seed, *args, **kwargs)
        if seed == 5:
            with torch.no_grad():
                run.model.classifier[1].weight[0, 0] = float("nan")
        return run

    monkeypatch.setattr(batched, "prepare", poisoned)
    outs = train_batch([(cfg2, tmp_path / "d", 2), (cfg2, tmp_path / "e", 5)], progress=False)
    assert [o["status"] for o in outs] == ["done", "diverged"]
    assert outs[0]["epochs"] == 2 and outs[1]["epochs"] == 0
    assert _max_diff(_params(tmp_path / "d"), _params(tmp_path / "alone2")) < TOL_LINEAR
    assert (tmp_path / "e" / "metrics.jsonl").read_text().strip() == '{"epoch": 1, "status": "diverged"}'


def _worker_script(root: Path, epochs: int) -> str:
    return textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(ROOT)!r})
        torch.set_default_dtype(torch.float64)
        from tests.test_batched import config
        from manifold_lab.train.batched import train_batch
        from pathlib import Path
        root = Path({str(root)!r})
        train_batch([(config("identity", epochs={epochs}), root / "a", 1),
                     (config("identity", epochs={epochs}), root / "b", 2)], progress=False)
    """)


@pytest.mark.slow
def test_sigkill_then_resume_restores_every_member(float64, tmp_path):
    """A real process killed with SIGKILL after its first epoch resumes every member exactly."""
    epochs = 2
    script = tmp_path / "worker.py"
    script.write_text(_worker_script(tmp_path / "killed", epochs))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        ckpts = [tmp_path / "killed" / m / "checkpoint.pt" for m in "ab"]
        while not all(p.exists() for p in ckpts):
            assert proc.poll() is None, "the worker ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    epochs_done = [torch.load(p, weights_only=True)["epoch"] for p in ckpts]
    assert min(epochs_done) < epochs, "the kill came after the end; nothing was resumed"
    subprocess.run([sys.executable, str(script)], env=env, check=True, timeout=300)
    train_batch([(config("identity", epochs=epochs), tmp_path / "whole" / "a", 1),
                 (config("identity", epochs=epochs), tmp_path / "whole" / "b", 2)], progress=False)
    for member in "ab":
        assert _max_diff(_params(tmp_path / "killed" / member), _params(tmp_path / "whole" / member)) < TOL_RESUME
        history = (tmp_path / "killed" / member / "metrics.jsonl").read_text().splitlines()
        assert [int(eval(line.replace("null", "None"))["epoch"]) for line in history] == list(range(1, epochs + 1))


@pytest.mark.slow
def test_ema_of_each_member_is_its_own(float64, tmp_path):
    """With an EMA of the weights (evaluated instead of them), each member's EMA and test loss are as alone."""
    cfg = config("identity", ema_decay=0.9)
    outs = train_batch([(cfg, tmp_path / "a", 1), (cfg, tmp_path / "b", 2)], progress=False)
    for seed, member, out in ((1, "a", outs[0]), (2, "b", outs[1])):
        alone = train(cfg, tmp_path / f"alone{seed}", seed=seed, progress=False)
        ema = [torch.load(d / "checkpoint.pt", weights_only=True)["ema"] for d in (tmp_path / member,
                                                                                 tmp_path / f"alone{seed}")]
        assert _max_diff(*ema) < TOL_LINEAR
        assert out["test_loss"] == pytest.approx(alone["test_loss"], rel=1e-9)
