"""The ``launcher:`` section of a spec: how ``--launcher slurm`` / ``local`` submits each run.

Part of the experiment's language, validated with the rest of the spec before
anything runs; ``manifold_lab.execution.launch`` reads it. Every key is optional
and also settable on the command line as an override (``launcher.partition=gpu``)::

    launcher:
      partition: gpu            # sbatch --partition
      timeout_min: 240          # time limit of one run, minutes (default 60; local: none unless set)
      gpus_per_run: 1           # GPUs of one run (> 1: DistributedDataParallel, mobilenetv2 only)
      cpus_per_run: 8           # CPU cores of one run
      mem_gb: 32                # memory of one run
      array_parallelism: 16     # array tasks running at a time (sbatch --array=0-N%16)
      max_requeues: 3           # requeues after a timeout
      sbatch: {account: my_lab, qos: normal}   # any other sbatch option
      setup: ["source .venv/bin/activate"]     # shell lines run before each task
      folder: null              # logs and submitit's files (default <results>/submitit)
"""

from __future__ import annotations

import pydantic

__all__ = ["LauncherConfig"]


class LauncherConfig(pydantic.BaseModel):
    """The ``launcher:`` section of a spec (see the module docstring)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    partition: str | None = None
    timeout_min: int = pydantic.Field(60, ge=1, le=525600)
    gpus_per_run: int = pydantic.Field(0, ge=0, le=64)
    cpus_per_run: int | None = pydantic.Field(None, ge=1, le=1024)
    mem_gb: float | None = pydantic.Field(None, gt=0, le=65536)
    array_parallelism: int | None = pydantic.Field(None, ge=1, le=100000)
    max_requeues: int = pydantic.Field(3, ge=0, le=100)
    signal_delay_s: int = pydantic.Field(120, ge=1, le=3600)
    sbatch: dict[str, str | int | float | bool] = {}
    setup: list[str] = []
    folder: str | None = None

    @pydantic.field_validator("sbatch")
    @classmethod
    def _sbatch_names(cls, value: dict) -> dict:
        for key in value:
            if not key or not all(c.isalnum() or c in "-_" for c in key):
                raise ValueError(f"sbatch option {key!r} is not an option name (letters, digits, - and _)")
        return value
