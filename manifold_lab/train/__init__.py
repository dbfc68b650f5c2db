"""Training MobileNetV2 (``manifold-lab train`` and the ``mobilenetv2`` experiment kind).

Modules: ``config`` (TrainConfig), ``optim`` (optimizers, schedules), ``ema``,
``checkpoint``, ``distributed`` (torchrun / DDP), ``relu_stats`` (Figure 7),
``trainer`` (the loop).
"""

from manifold_lab.train.config import TrainConfig
from manifold_lab.train.trainer import train

__all__ = ["TrainConfig", "train"]
