"""Training MobileNetV2 (``manifold-lab train`` and the ``mobilenetv2`` experiment kind).

Modules: ``config`` (TrainConfig), ``optim`` (optimizers, schedules), ``ema``,
``checkpoint``, ``distributed`` (torchrun / DDP), ``relu_stats`` (Figure 7),
``trainer`` (the loop).
"""

from manifold_lab.train.config import TrainConfig

__all__ = ["TrainConfig", "train"]


def __getattr__(name: str):
    """``train`` is imported on first use: reading a configuration does not load torch."""
    if name == "train":
        from manifold_lab.train.trainer import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
