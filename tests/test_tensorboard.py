"""TensorBoard event files of a training run, read back with TensorBoard's own reader."""

import json
import logging
import sys

import pytest

from manifold_lab.train import TrainConfig, train

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
plugin_data_pb2 = pytest.importorskip("tensorboard.plugins.hparams.plugin_data_pb2")

SMOKE = {
    "data": {"name": "digits", "image_size": 16, "channels": 3, "batch_size": 256, "subset": 60, "eval_subset": 20},
    "model": {"preset": "cifar_fast", "width_mult": 0.25},
    "optim": {"lr": 0.05},
    "train": {"epochs": 2, "threads": 1, "relu_stats_images": 16},
}


def read_events(folder):
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return acc


def test_training_writes_scalars_per_step_and_epoch_and_hparams_with_final_metrics(tmp_path):
    cfg = TrainConfig.model_validate(SMOKE)
    out = train(cfg, tmp_path, seed=3, progress=False)
    assert out["status"] == "done"
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    acc = read_events(tmp_path / "tensorboard")
    steps_per_epoch = len(acc.Scalars("train/loss_step")) // 2
    assert steps_per_epoch >= 1 and len(acc.Scalars("train/loss_step")) == 2 * steps_per_epoch
    assert [e.step for e in acc.Scalars("train/loss_step")] == list(range(1, 2 * steps_per_epoch + 1))
    assert [e.step for e in acc.Scalars("train/lr")] == list(range(1, 2 * steps_per_epoch + 1))
    # One value per epoch, at the global step where the epoch ended, equal to metrics.jsonl (float32).
    for tag, key in (("test/acc", "test_acc"), ("test/loss", "test_loss"), ("train/acc", "train_acc"),
                     ("train/loss", "train_loss"), ("perf/images_per_s", "images_per_s")):
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [steps_per_epoch, 2 * steps_per_epoch]
        assert [e.value for e in events] == pytest.approx([r[key] for r in rows], rel=1e-6)
    assert [e.value for e in acc.Scalars("epoch")] == [1.0, 2.0]
    assert acc.Scalars("hparam/test_acc")[-1].value == pytest.approx(out["test_acc"], rel=1e-6)
    assert acc.Scalars("hparam/best_test_acc")[-1].value == pytest.approx(out["best_test_acc"], rel=1e-6)

    # The hparams plugin: the run's hyper-parameters and the final metrics it declares.
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["model.width_mult"].number_value == 0.25
    assert hparams["model.bottleneck_act"].string_value == "identity"
    assert hparams["train.epochs"].number_value == 2 and hparams["seed"].number_value == 3
    assert hparams["optim.betas"].string_value == "[0.9, 0.999]"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} == {
        "hparam/test_acc", "hparam/best_test_acc", "hparam/test_loss", "hparam/train_acc", "hparam/train_loss"}


def test_without_tensorboard_one_info_line_and_no_event_files(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    log = logging.getLogger("test_tensorboard")
    with caplog.at_level(logging.INFO, logger="test_tensorboard"):
        out = train(TrainConfig.model_validate({**SMOKE, "train": {**SMOKE["train"], "epochs": 1}}), tmp_path,
                    seed=0, progress=False, log=log)
    assert out["status"] == "done"
    assert not (tmp_path / "tensorboard").exists()
    notes = [r.getMessage() for r in caplog.records if "tensorboard" in r.getMessage()]
    assert notes == ['tensorboard is not installed: no event files (pip install "manifold-lab[tensorboard]")']


def test_a_resumed_run_keeps_the_checkpointed_epochs_points(tmp_path, monkeypatch):
    """Killed after epoch 1's checkpoint, resumed: TensorBoard shows both epochs' points, once each
    (the purge starts at the first step computed again, not at the checkpointed epoch's last step)."""
    from manifold_lab.train import trainer

    cfg = TrainConfig.model_validate(SMOKE)
    real_save = trainer.save

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path, seed=3, progress=False)
    monkeypatch.setattr(trainer, "save", real_save)
    assert train(cfg, tmp_path, seed=3, progress=False)["status"] == "done"
    acc = read_events(tmp_path / "tensorboard")
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    points = acc.Scalars("test/acc")
    assert [e.value for e in points] == pytest.approx([r["test_acc"] for r in rows])
    steps = [e.step for e in acc.Scalars("train/loss_step")]
    assert steps == list(range(1, steps[-1] + 1))  # every step once
