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
      wait_grace_s: 120         # --wait: how long to go on reading the run folders once Slurm lists the job no more

Every value is one line: a control character (a newline of a YAML block scalar, a
tab, a carriage return) would become a line of the sbatch script, so it is refused.
``sbatch`` may not set the directives the launcher owns (``OWNED_DIRECTIVES``, or an
abbreviation sbatch would read as one), nor a memory of 0 (Slurm's "all the node's memory").
"""

from __future__ import annotations

import re
import unicodedata

import pydantic

__all__ = ["OWNED_DIRECTIVES", "LauncherConfig"]

#: sbatch directives the launcher writes itself: the array and its throttle, the log paths, the
#: requeue signal, the job name (by which a rerun finds its queued jobs).
OWNED_DIRECTIVES = ("array", "output", "error", "signal", "job-name", "J")
_MEMORY_OPTIONS = ("mem", "mem-per-cpu", "mem-per-gpu")
_MB = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 ** 2}


def _control_character(value) -> str | None:
    """The first control or line-separator character in the strings of ``value`` (keys too, nested), as ``repr``."""
    if isinstance(value, str):
        return next((repr(c) for c in value if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)
    items = [*value, *value.values()] if isinstance(value, dict) else value if isinstance(value, list) else []
    return next(filter(None, map(_control_character, items)), None)


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
    wait_grace_s: int = pydantic.Field(120, ge=0, le=86400)

    @pydantic.field_validator("*")
    @classmethod
    def _one_line(cls, value):
        found = _control_character(value)
        if found:
            raise ValueError(f"holds the control character {found}; a launcher value is one line of the sbatch "
                             "script (several setup commands: one list item each)")
        return value

    @pydantic.field_validator("mem_gb")
    @classmethod
    def _some_memory(cls, value: float | None) -> float | None:
        if value is not None and int(value * 1024) < 1:  # submitit writes int(mem_gb * 1024) MB
            raise ValueError("is below 1 MB, which sbatch would read as --mem=0: all the node's memory")
        return value

    @pydantic.field_validator("sbatch")
    @classmethod
    def _sbatch_names(cls, value: dict) -> dict:
        for key, option in value.items():
            if not key or not all(c.isalnum() or c in "-_" for c in key):
                raise ValueError(f"sbatch option {key!r} is not an option name (letters, digits, - and _)")
            name = key.replace("_", "-")
            owned = [o for o in OWNED_DIRECTIVES if o == name or (len(o) > 1 and o.startswith(name))]
            if owned:
                dashes = "--" if len(owned[0]) > 1 else "-"
                raise ValueError(f"sbatch option {key!r} would set {dashes}{owned[0]}, which the launcher writes "
                                 f"itself ({', '.join(OWNED_DIRECTIVES)}); use the launcher: keys instead")
            size = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([KMGT]?)B?\s*", str(option), flags=re.I)
            if name in _MEMORY_OPTIONS and size and float(size[1]) * _MB[size[2].upper()] < 1:
                raise ValueError(f"sbatch option {key}={option!r} asks for no memory, which Slurm reads as all "
                                 "the node's memory; give a size (e.g. 16G) or use launcher.mem_gb")
        return value
