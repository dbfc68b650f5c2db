"""TensorBoard event files of a training run (when the ``tensorboard`` package is installed).

``TensorBoardLog.open(run_dir, ...)`` returns a log writing to ``run_dir/tensorboard/``
through ``torch.utils.tensorboard.SummaryWriter``, or ``None`` (after one info line)
when ``tensorboard`` is not importable: the optional extra
``pip install "manifold-lab[tensorboard]"``. Only rank 0 writes.

Tags, all against the global step (optimizer steps since the start of training):

- every step: ``train/loss_step``, ``train/lr``;
- every epoch: ``train/loss``, ``train/acc``, ``test/loss``, ``test/acc``,
  ``perf/images_per_s``, ``epoch`` and, with ``train.clean_train_images``,
  ``clean_train/loss`` and ``clean_train/acc`` (the rows of ``metrics.jsonl``);
- at the end: the run's hyper-parameters (the flattened ``TrainConfig`` and the
  seed) with its final metrics ``hparam/test_acc``, ``hparam/best_test_acc``,
  ``hparam/test_loss``, ``hparam/train_acc``, ``hparam/train_loss`` through
  TensorBoard's hparams plugin (``torch.utils.tensorboard.summary.hparams``).

A resumed run opens the writer with ``purge_step`` = the first step it computes again (the
steps its checkpoint holds, plus one), so TensorBoard hides the events a killed run wrote after
its last checkpoint and keeps those of the checkpointed epochs, whose epoch scalars sit at their
last step.
Open a whole study: ``tensorboard --logdir results/<name>`` (each run is
``runs/<id>/tensorboard``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

FOLDER = "tensorboard"
EPOCH_TAGS = {"train_loss": "train/loss", "train_acc": "train/acc", "test_loss": "test/loss",
              "test_acc": "test/acc", "images_per_s": "perf/images_per_s",
              "clean_train_loss": "clean_train/loss", "clean_train_acc": "clean_train/acc"}
FINAL_METRICS = ("test_acc", "best_test_acc", "test_loss", "train_acc", "train_loss")


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; values other than bool/int/float/str become strings."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return out


class TensorBoardLog:
    """Scalars per step and per epoch, and the hparams summary at the end (see the module docstring)."""

    def __init__(self, writer) -> None:
        self.writer = writer

    @classmethod
    def open(cls, run_dir: str | Path, done_steps: int = 0, say=None) -> TensorBoardLog | None:
        """The log of ``run_dir``; ``done_steps``: the optimizer steps its checkpoint holds (events from
        step ``done_steps + 1`` on are purged: they are computed again)."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            if say is not None:
                say('tensorboard is not installed: no event files (pip install "manifold-lab[tensorboard]")')
            return None
        return cls(SummaryWriter(str(Path(run_dir) / FOLDER), purge_step=done_steps + 1))

    def step(self, step: int, loss: float, lr: float) -> None:
        self.writer.add_scalar("train/loss_step", loss, step)
        self.writer.add_scalar("train/lr", lr, step)

    def epoch(self, step: int, row: dict) -> None:
        """One row of ``metrics.jsonl`` at global step ``step``; flushed, so a kill keeps it."""
        for key, tag in EPOCH_TAGS.items():
            if key in row:
                self.writer.add_scalar(tag, row[key], step)
        self.writer.add_scalar("epoch", row["epoch"], step)
        self.writer.flush()

    def hparams(self, step: int, config: dict, seed: int, metrics: dict) -> None:
        """The run's hyper-parameters with its final metrics (the hparams plugin)."""
        from torch.utils.tensorboard.summary import hparams

        final = {f"hparam/{k}": float(metrics[k]) for k in FINAL_METRICS
                 if isinstance(metrics.get(k), (int, float)) and math.isfinite(metrics[k])}
        experiment, start, end = hparams({**flatten(config), "seed": seed}, final)
        file_writer = self.writer._get_file_writer()
        for summary in (experiment, start, end):
            file_writer.add_summary(summary)
        for tag, value in final.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
