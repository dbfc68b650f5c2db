"""Checkpoints for exact resume: written atomically, read with ``weights_only=True``.

A checkpoint is a dict of tensors and plain values::

    format        "manifold-lab-checkpoint-v1"
    epoch         epochs completed
    config        the resolved TrainConfig (dict) and the seed
    model, optimizer, scheduler, ema   state dicts (ema may be None)
    rng           torch CPU (and CUDA) generator states
    history       per-epoch metrics so far

Data order and augmentation are a pure function of (seed, epoch), so these
states are all that a restart at an epoch boundary needs to continue exactly.
"""

from __future__ import annotations

from pathlib import Path

import torch

from manifold_lab.errors import UsageError
from manifold_lab.io import atomic_path

FORMAT = "manifold-lab-checkpoint-v1"


def save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a Python file: a full disk is OSError ENOSPC,
        torch.save({"format": FORMAT, **state}, f)         # not torch's internal "file write failed"


def load_checkpoint(path: Path) -> dict:
    """The checkpoint at ``path``; ``UsageError`` for a corrupt or foreign file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise UsageError(
            f"checkpoint {path} is corrupt or not a manifold-lab checkpoint ({type(exc).__name__}); "
            f"delete it or train with --no-resume"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UsageError(f"checkpoint {path} is not a manifold-lab checkpoint (no format {FORMAT!r}); "
                         f"delete it or train with --no-resume")
    return state


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
