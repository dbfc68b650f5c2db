"""The ``launcher:`` section of a spec: how ``--launcher slurm`` / ``local`` submits each run.

Part of the experiment's language, validated with the rest of the spec before
anything runs; ``manifold_lab.execution.launch`` reads it. Every key is optional
and also settable as an override (``launcher.partition=gpu``); the keys are
described in ``manifold_lab.execution.launch``.
"""

from __future__ import annotations

import pydantic

__all__ = ["LauncherConfig"]


class LauncherConfig(pydantic.BaseModel):
    """The ``launcher:`` section of a spec (its keys: ``manifold_lab.execution.launch``)."""

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
