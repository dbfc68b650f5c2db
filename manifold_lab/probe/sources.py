"""The networks the probe reads: a run folder or a checkpoint, trained or rebuilt at step 0.

A *source* is a run folder holding ``checkpoint.pt`` (as ``manifold-lab run`` /
``manifold-lab train`` write it) or the checkpoint file itself. The checkpoint
carries the resolved ``TrainConfig`` and the seed; the trained weights are its
EMA weights when the run kept an EMA (what the trainer evaluated), else its
model weights. The step-0 network is rebuilt exactly from the config and seed
(``manifold_lab.train.trainer.initial_model``, the trainer's own construction).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from manifold_lab.errors import UsageError

CHECKPOINT = "checkpoint.pt"


@dataclass
class Source:
    """A probed network's origin: ``path`` (the checkpoint), ``config`` (TrainConfig), ``seed``, ``epoch``."""

    path: Path
    config: object
    seed: int
    epoch: int
    num_classes: int
    in_channels: int
    weights: dict

    @property
    def label(self) -> str:
        m = self.config.model
        return f"{m.bottleneck_act} w{m.width_mult:g} {m.shortcut} seed{self.seed}"

    def trained(self):
        """The trained network (eval mode)."""
        model = self.initial()
        model.load_state_dict(self.weights)
        return model.eval()

    def initial(self):
        """The network at step 0 (eval mode), rebuilt from the config and seed."""
        from manifold_lab.train.trainer import initial_model

        return initial_model(self.config, self.seed, self.num_classes, self.in_channels).eval()


def checkpoint_path(source: str | Path) -> Path:
    """The checkpoint file of a run folder or checkpoint path; one-line ``UsageError`` otherwise."""
    path = Path(source)
    if path.is_symlink():
        raise UsageError(f"{source} is a symbolic link; give the run folder or checkpoint itself")
    if path.is_dir():
        path = path / CHECKPOINT
        if not path.exists():
            raise UsageError(f"{source} has no {CHECKPOINT}; give a run folder of a mobilenetv2 run or a checkpoint file")
    if not path.exists():
        raise UsageError(f"{source} does not exist; give a run folder (with {CHECKPOINT}) or a checkpoint file")
    if path.is_symlink() or not path.is_file():
        raise UsageError(f"{path} is not a regular file; expected a manifold-lab checkpoint")
    return path


def load_source(source: str | Path) -> Source:
    """Read a run folder or checkpoint (see the module docstring)."""
    from manifold_lab.train.checkpoint import load_checkpoint
    from manifold_lab.train.config import TrainConfig

    path = checkpoint_path(source)
    try:
        state = load_checkpoint(path)
    except UsageError as exc:  # its advice is about resuming a training; say what the probe needs
        raise UsageError(f"{path} is not a readable manifold-lab checkpoint ({str(exc).split('(')[-1].split(')')[0]}); "
                         f"give a run folder of a mobilenetv2 run or its checkpoint.pt") from None
    try:
        config = TrainConfig.model_validate(state["config"])
        weights = state["ema"] if state.get("ema") else state["model"]
        num_classes = int(weights["classifier.1.weight"].shape[0])
        in_channels = int(weights["features.0.conv.weight"].shape[1])
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{path} is not a MobileNetV2 checkpoint of manifold-lab ({type(exc).__name__}: {exc})") from None
    return Source(path=path, config=config, seed=int(state.get("seed", 0)), epoch=int(state.get("epoch", 0)),
                  num_classes=num_classes, in_channels=in_channels, weights=weights)
