"""The networks the probe reads: a run folder or a checkpoint, trained or rebuilt at step 0.

A *source* is a run folder holding ``checkpoint.pt`` (as ``manifold-lab run`` /
``manifold-lab train`` write it) or the checkpoint file itself. The checkpoint
carries the resolved ``TrainConfig`` and the seed; the trained weights are its
EMA weights when the run kept an EMA (what the trainer evaluated), else its
model weights. The step-0 network is rebuilt exactly from the config and seed
(``manifold_lab.train.trainer.initial_model``, the trainer's own construction).

A checkpoint is data, not configuration: it may come from anyone. Its weights must be
floating point and fit the network its configuration builds (one ``UsageError`` line
otherwise), and of its data settings only what identifies the images is used: the dataset's
name, image size and channels. Where the data live, where they are cached and whether they
may be downloaded come from the user (``user_data``), never from the checkpoint.
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


def user_data(config, *, root: str | None = None, cache_dir: str | None = None):
    """The data settings to read a source's images with: the checkpoint's dataset name, image size
    and channels; the user's ``root`` and ``cache_dir`` (None: the standard search and cache); never a
    download. ``config`` is the source's ``TrainConfig``."""
    from manifold_lab.train.config import DataConfig

    d = config.data
    return DataConfig(name=d.name, image_size=d.image_size, channels=d.channels, root=root, cache_dir=cache_dir,
                      download=False, batch_size=d.batch_size, eval_batch_size=d.eval_batch_size)


def _check_weights(path: Path, config, weights: dict, num_classes: int, in_channels: int) -> None:
    """One ``UsageError`` line unless ``weights`` are floating tensors that fit ``config``'s network."""
    import torch

    from manifold_lab.train.trainer import build_model

    for key, value in weights.items():
        if not isinstance(value, torch.Tensor):
            raise UsageError(f"{path}: weight {key} is a {type(value).__name__}, not a tensor; not a manifold-lab "
                             f"checkpoint")
        if not key.endswith("num_batches_tracked") and not value.is_floating_point():
            raise UsageError(f"{path}: weight {key} is {value.dtype}, not floating point; not a manifold-lab "
                             f"checkpoint")
    model = build_model(config, num_classes, in_channels)
    expected = model.state_dict()
    missing, extra = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    if missing or extra:
        raise UsageError(f"{path}: its weights do not match the network its configuration builds "
                         f"({len(missing)} missing, e.g. {missing[:1]}; {len(extra)} unexpected, e.g. {extra[:1]})")
    for key, ref in expected.items():
        if tuple(weights[key].shape) != tuple(ref.shape):
            raise UsageError(f"{path}: weight {key} has shape {tuple(weights[key].shape)}, but the configuration "
                             f"builds {tuple(ref.shape)}")


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
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise UsageError(f"{path} is not a MobileNetV2 checkpoint of manifold-lab ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:200]})") from None
    _check_weights(path, config, weights, num_classes, in_channels)
    return Source(path=path, config=config, seed=int(state.get("seed", 0)), epoch=int(state.get("epoch", 0)),
                  num_classes=num_classes, in_channels=in_channels, weights=weights)
