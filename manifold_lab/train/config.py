"""The training configuration: one validated pydantic model, sectioned like the YAML.

    model:    MobileNetV2 preset and ablation switches (manifold_lab.models)
    data:     dataset, subset, batch sizes, augmentation (manifold_lab.data)
    optim:    optimizer (sgd | rmsprop | adamw), learning rate, weight decay
    schedule: learning-rate schedule per step (cosine | step | exponential | constant) + warm-up
    train:    epochs, label smoothing, EMA, clipping, bf16, channels_last, compile, device

Unknown keys are errors at every depth (``extra="forbid"``); every field has a
default, so a spec only writes what it changes.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from manifold_lab.activations import CHOICES, canonical_activation, check_act_blocks

#: An activation name (``manifold_lab.activations``: identity, relu, relu6, elu, softplus,
#: leaky_relu_<slope>), stored in its one spelling so one network has one run id.
Act = Annotated[str, AfterValidator(canonical_activation)]

#: Bounds shared with ``manifold-lab models`` (its --width and --resolution).
MAX_WIDTH_MULT = 4.0
MAX_IMAGE_SIZE = 1024


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Section):
    preset: Literal["imagenet", "cifar", "cifar_fast"] = Field(
        "cifar_fast", description="strides: imagenet (Table 2), cifar (kuangliu), cifar_fast (c=24 stage at stride 2)")
    width_mult: float = Field(1.0, gt=0, le=MAX_WIDTH_MULT, description="width multiplier")
    bottleneck_act: Act = Field("identity", description="activation after the projection; identity = linear bottleneck. "
                                           f"Activations: {CHOICES}")
    shortcut: Literal["bottleneck", "expansion", "none", "sandglass"] = Field(
        "bottleneck", description="where residuals go (Figure 6b); sandglass: MobileNeXt's block, shortcut between "
                                  "the wide tensors")
    sandglass_width_mult: float | None = Field(  # folded into width_mult, never stored: run ids stay as they were
        None, gt=0, le=MAX_WIDTH_MULT, exclude=True, description="with shortcut=sandglass: its width multiplier instead of "
        "width_mult (0.465 matches the width-0.5 cifar_fast arms' parameters within 2%); ignored otherwise")
    expand_ratio: int | None = Field(None, ge=1, le=32, description="override t of every expanding block")
    bottleneck_mult: float = Field(1.0, gt=0, le=1, description="narrow only the bottlenecks; expanded layers keep "
                                   "their width (t k fixed); 1 = the standard network")
    bottleneck_act_blocks: str = Field(
        "all", description="the blocks that get bottleneck_act (the others are linear): all, those that keep their "
                           "shape (with a bottleneck shortcut), the others, none, or block_N (features.N alone)")
    expand_act: Act = "relu6"
    depthwise_act: Act = "relu6"
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout before the classifier")

    @model_validator(mode="after")
    def _one_linear_network(self) -> "ModelConfig":
        """Every spelling of the linear-bottleneck network is stored as ``bottleneck_act = identity``,
        ``bottleneck_act_blocks = all``: ``relu6`` in no block, or ``identity`` in some blocks, builds
        the same modules with the same initialisation, so they get one run id and a study can reuse the
        runs of another (the penalty-location study's ``none`` arm is Figure 6a's linear arm)."""
        check_act_blocks(self.bottleneck_act_blocks)
        if self.bottleneck_act == "identity" or self.bottleneck_act_blocks == "none":
            object.__setattr__(self, "bottleneck_act", "identity")
            object.__setattr__(self, "bottleneck_act_blocks", "all")
        if self.shortcut == "sandglass" and self.bottleneck_act_blocks not in ("all", "none"):
            raise ValueError(f"bottleneck_act_blocks={self.bottleneck_act_blocks!r} selects blocks by the bottleneck "
                             "shortcut, which shortcut=sandglass does not have; use all or none")
        # the sandglass arm's own width becomes its width_mult; the other arms ignore it (one run id each)
        if self.shortcut == "sandglass" and self.sandglass_width_mult is not None:
            object.__setattr__(self, "width_mult", self.sandglass_width_mult)
        object.__setattr__(self, "sandglass_width_mult", None)
        return self


class DataConfig(_Section):
    name: Literal["cifar10", "cifar100", "cifar10_jpeg", "imagefolder", "digits"] = "digits"
    root: str | None = Field(None, description="data folder or archive; None searches $MANIFOLD_LAB_DATA and ../shared/datasets")
    subset: int | None = Field(None, ge=1, description="train images per class (None = all)")
    eval_subset: int | None = Field(None, ge=1, description="test images per class (None = all)")
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int | None = Field(None, ge=1)
    augment: bool = Field(True, description="random crop (pad 4) + horizontal flip")
    download: bool = False
    cache_dir: str | None = None
    num_workers: int = Field(4, ge=0, le=256, description="DataLoader workers (large ImageFolder images only)")
    image_size: int | None = Field(None, ge=8, le=MAX_IMAGE_SIZE, description="resize (digits: upscale 8x8 to this size)")
    channels: int | None = Field(None, ge=1, le=3, description="digits only: 1 or 3 channels")


class OptimConfig(_Section):
    name: Literal["sgd", "rmsprop", "adamw"] = "sgd"
    lr: float = Field(0.1, description="peak learning rate (per batch of batch_size x world size); a finite "
                      "number in (0, 100] (larger ones overflow within a step)")
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0)
    decay_bn_and_bias: bool = Field(False, description="apply weight decay to BN parameters and biases too")
    alpha: float = Field(0.9, gt=0, lt=1, description="rmsprop: decay of the squared-gradient average")
    eps: float = Field(1e-3, gt=0, description="rmsprop: TF-style epsilon, added inside the square root")
    betas: tuple[float, float] = Field((0.9, 0.999), description="adamw: decay rates of the moment averages, "
                                       "each in [0, 1)")

    @field_validator("lr")
    @classmethod
    def _lr_in_range(cls, lr: float) -> float:
        if not (math.isfinite(lr) and 0 < lr <= 100):
            raise ValueError(f"must be a finite number in (0, 100], got {lr}")
        return lr

    @model_validator(mode="after")
    def _betas_in_range(self) -> "OptimConfig":
        for i, beta in enumerate(self.betas):
            if not 0 <= beta < 1:
                raise ValueError(f"optim.betas[{i}]={beta} must be in [0, 1) (e.g. [0.9, 0.999])")
        return self


class ScheduleConfig(_Section):
    name: Literal["cosine", "step", "exponential", "constant"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up from 0")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine: final lr / peak lr")
    step_epochs: int = Field(30, ge=1, description="step: decay every this many epochs")
    gamma: float = Field(0.1, gt=0, le=1, description="step: factor per decay")
    decay: float = Field(0.98, gt=0, le=1, description="exponential: factor per epoch (the paper's 0.98)")


class TrainSection(_Section):
    epochs: int = Field(10, ge=1, le=10_000)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0, description="max global gradient norm")
    ema_decay: float | None = Field(None, gt=0, lt=1, description="EMA of weights (evaluated instead of the raw weights)")
    bf16: bool = Field(False, description="bf16 autocast where the device supports it")
    channels_last: bool = False
    compile: bool = Field(False, description="torch.compile the model")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None = torch's default)")
    deterministic: bool = Field(True, description="torch.use_deterministic_algorithms (warn only)")
    relu_stats: bool = Field(True, description="Figure 7 statistics and the information-loss probe summary "
                                               "at step 0 and at the end")
    relu_stats_images: int = Field(256, ge=1, description="test images for the Figure 7 statistics, class-balanced: "
                                   "relu_stats_images // classes per class")
    clean_train_images: int | None = Field(None, ge=1, description="training images (class-balanced, no augmentation) "
                                           "scored in eval mode after every epoch: clean train loss and accuracy; "
                                           "None = off")
    checkpoint: bool = Field(True, description="checkpoint every epoch for exact resume")


class TrainConfig(_Section):
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    train: TrainSection = TrainSection()
