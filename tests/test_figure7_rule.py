"""Figure 7 with a rule that can fail: thresholds per layer as data, margins measured the same way at step 0
and after training (running statistics; step 0 calibrated), a silenced network fails, a healthy one passes."""

import functools
import json

import pytest
import torch

from manifold_lab.models import mobilenet_v2
from manifold_lab.reproduction import claims as C
from manifold_lab.reproduction import verdict as V
from manifold_lab.reproduction.figure7 import STEP0_FILE, step0_records, thresholds
from manifold_lab.reproduction.records import done_runs
from manifold_lab.train.relu_stats import THRESHOLDS, layers_below_threshold, margins, relu_layers, relu_stats
from tests.test_claims import make_study

MODEL = {"model.preset": "cifar_fast", "model.width_mult": 0.5}


def network(silenced=()):
    """A width-0.5 cifar_fast network at init; the blocks in ``silenced`` get a BN shift of -100 after their
    expansion, which zeroes every channel of their expansion ReLU (and so of their depthwise ReLU)."""
    torch.manual_seed(0)
    model = mobilenet_v2("cifar_fast", width_mult=0.5, bottleneck_act="relu6")
    for i in silenced:
        torch.nn.init.constant_(model.features[i].bn1.bias, -100.0)
    return model


@functools.lru_cache(maxsize=None)
def records(silenced=()):
    """Figure 7 records of ``network(silenced)`` in eval mode after a calibration pass (as the trainer measures
    step 0); 16 x 16 images keep it fast."""
    g = torch.Generator().manual_seed(1)
    images, calibration = torch.randn(8, 3, 16, 16, generator=g), torch.randn(32, 3, 16, 16, generator=g)
    return relu_stats(network(silenced), images, bn="calibrated", calibration=calibration)


def study(tmp_path, final, seeds=None):
    """A Figure 6a folder whose networks (per arm ``seeds[act]`` seeds, 3 by default) all end with the records
    ``final``."""
    seeds = {"identity": 3, "relu6": 3, **(seeds or {})}
    runs = [({**MODEL, "model.bottleneck_act": act}, s, {"test_acc": 0.5},
             {"sample": {"per_class": 25, "bn": {"step0": "running statistics of a calibration pass"}},
              "step0": records(), "final": final})
            for act in ("identity", "relu6") for s in range(seeds[act])]
    make_study(tmp_path, "figure6a_linear_bottleneck_cifar10", "mobilenetv2",
               {"model.bottleneck_act": ["identity", "relu6"]}, runs)
    return C.row_claim(C.ROWS["figure7"], tmp_path)


def test_every_layer_has_a_threshold_with_its_reason():
    layers = relu_layers(network())
    assert {kind for kind, _ in layers.values()} == set(THRESHOLDS)
    assert all(len(why) > 40 for _, why in THRESHOLDS.values())  # a reason, not a label
    assert layers["features.0.act"] == ("stem", 3)
    assert layers["features.1.act2"] == ("block", 8)  # t = 1: min(k, k') = min(16, 8), not its 16 channels
    assert layers["features.2.act1"] == ("block", 8) == layers["features.2.act2"]  # C / t = 48 / 6
    assert layers["features.18.act"] == ("head", 160)


def test_a_network_with_silenced_channels_fails_the_rule_and_a_healthy_one_passes(tmp_path):
    healthy = records()
    below, layers = layers_below_threshold(healthy)
    assert layers == 35 and below <= 1  # at most the t = 1 block's depthwise ReLU, at margin about 1
    assert min(margins(healthy).values()) > 0.8 and sorted(margins(healthy).values())[1] > 2
    row = study(tmp_path / "healthy", healthy)
    assert row.verdict == V.SUPPORTED and "relu6 trained:" in row.ours and "linear step 0:" in row.ours
    # a BN shift of -100 after the expansion of three blocks with a shortcut (out = x + 0 keeps the rest alive):
    # their expansion and depthwise ReLUs keep nothing
    silenced = records((3, 5, 6))
    zero = [n for n, m in margins(silenced).items() if m == 0]
    assert zero == [f"features.{i}.act{j}" for i in (3, 5, 6) for j in (1, 2)]
    row = study(tmp_path / "silenced", silenced)
    assert row.verdict == V.CONTRADICTED
    assert "trained: 6, 6, 6 of 35 layers below (per seed)" in row.ours or \
        "trained: 7, 7, 7 of 35 layers below (per seed)" in row.ours
    assert "smallest margin 0.00-0.00" in row.ours


def test_every_arm_needs_its_own_seeds_not_the_arms_together(tmp_path):
    """6 trained networks, but 5 of relu6 and 1 linear: no verdict (the rule asks MIN_SEEDS of each arm)."""
    row = study(tmp_path / "lopsided", records(), {"identity": 1, "relu6": 5})
    assert row.verdict == "not enough runs yet (linear 1 of 3 trained networks)"
    row = study(tmp_path / "balanced", records(), {"identity": 3, "relu6": 5})
    assert row.verdict == V.SUPPORTED


def test_old_records_are_judged_by_todays_thresholds_and_step0_is_read_as_measured(tmp_path):
    rec = [{"name": "features.1.act2", "channels": 16, "mean": 9.0, "threshold": 16},  # the old t = 1 threshold
           {"name": "features.2.act1", "channels": 48, "mean": 20.0, "threshold": 8}]
    make_study(tmp_path, "figure6a_linear_bottleneck_cifar10", "mobilenetv2", {"model.bottleneck_act": ["relu6"]},
               [({**MODEL, "model.bottleneck_act": "relu6"}, 0, {"test_acc": 0.5},
                 {"sample": {"bn": {"step0": "batch statistics of the sample"}}, "step0": rec, "final": rec})])
    run = done_runs(tmp_path / "figure6a_linear_bottleneck_cifar10")[0]
    assert layers_below_threshold(rec) == (1, 2)  # by the record's own threshold
    assert layers_below_threshold(rec, thresholds(run)) == (0, 2)  # 9 / 8: above by today's
    assert step0_records(run) is None  # batch statistics: not measured as the trained network is
    (run.run_dir / STEP0_FILE).write_text(json.dumps({"step0": rec}))
    assert step0_records(run) == rec


def test_calibrated_statistics_are_the_running_ones_after_the_pass_and_leave_the_model_alone():
    model = network()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(2)
    images, calibration = torch.randn(4, 3, 16, 16, generator=g), torch.randn(16, 3, 16, 16, generator=g)
    got = relu_stats(model, images, bn="calibrated", calibration=calibration)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and model.training
    # by hand: reset, cumulative average over the calibration images, then eval mode
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(calibration)
    assert [r["mean"] for r in relu_stats(model, images, bn="running")] == pytest.approx([r["mean"] for r in got])
    with pytest.raises(ValueError, match="needs calibration images"):
        relu_stats(model, images, bn="calibrated")


@pytest.mark.slow
def test_the_trainer_measures_step0_calibrated_without_changing_training(tmp_path):
    from manifold_lab.train import TrainConfig, train
    from tests.test_train import SMOKE

    smoke = {**SMOKE, "train": {**SMOKE["train"], "epochs": 1}}
    out = train(TrainConfig.model_validate(smoke), tmp_path / "a", seed=0, progress=False)
    stats = json.loads((tmp_path / "a" / "relu_stats.json").read_text())
    assert stats["sample"]["bn"]["step0"].startswith("running statistics of a calibration pass over 10 ")
    assert stats["sample"]["bn"]["final"] == "running statistics (eval mode)"
    off = train(TrainConfig.model_validate({**smoke, "train": {**smoke["train"], "relu_stats": False}}),
                tmp_path / "b", seed=0, progress=False)
    assert off["test_acc"] == out["test_acc"] and off["curve_train_loss"] == out["curve_train_loss"]
