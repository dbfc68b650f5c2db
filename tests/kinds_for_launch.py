"""A test kind that "trains" for epochs with a checkpoint, for the launcher's resume tests.

``epochs`` runs ``params.epochs`` epochs of ``params.sleep`` seconds each. After every
epoch it appends the epoch number to ``epochs_computed.txt`` and then writes
``epoch_checkpoint.json`` and ``metrics.jsonl`` (atomically; the per-epoch log
``{"epoch": e, "loss": a / e, "acc": e / 10 + seed}`` of epochs 1..e, as the trainer
writes it); a new execution starts after the last checkpointed epoch, as the
trainer does with ``checkpoint.pt``. A test counts the
lines of ``epochs_computed.txt`` to see which epochs were computed, and how often.
Loaded by subprocesses through ``MANIFOLD_LAB_EXTRA_KINDS=tests.kinds_for_launch``.
"""

from __future__ import annotations

import json
import time

from pydantic import BaseModel, ConfigDict, Field

from manifold_lab import io
from manifold_lab.kinds import Kind, RunContext

COMPUTED = "epochs_computed.txt"
CHECKPOINT = "epoch_checkpoint.json"


class EpochParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(3, ge=1)
    sleep: float = Field(0.0, ge=0)
    a: float = 1.0


def run(params: EpochParams, seed: int, ctx: RunContext) -> dict:
    path = ctx.run_dir / CHECKPOINT
    start = json.loads(path.read_text())["epoch"] if path.exists() else 0
    ctx.log.info("starting at epoch %d", start)
    for epoch in range(start, params.epochs):
        time.sleep(params.sleep)
        with open(ctx.run_dir / COMPUTED, "a") as f:
            f.write(f"{epoch + 1}\n")
        io.write_json(path, {"epoch": epoch + 1})
        io.write_text(ctx.run_dir / "metrics.jsonl", "".join(
            json.dumps({"epoch": e, "loss": params.a / e, "acc": e / 10 + seed}) + "\n" for e in range(1, epoch + 2)))
    return {"loss": params.a / params.epochs, "epochs": params.epochs, "resumed_at": start}


KIND = Kind(
    name="epochs",
    description="sleeps through checkpointed epochs, counting them (launcher tests)",
    params=EpochParams,
    run=run,
)
