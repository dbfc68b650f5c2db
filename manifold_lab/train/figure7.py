"""Figure 7 of a recorded run measured by today's rule, for every reader of its records.

A run's ``relu_stats.json`` carries the threshold of the rule it was written under
(before issue 11 ``C / 6``, before issue 22 the t = 1 block's ``C``) and, before issue
22, a step 0 measured with the sample's batch statistics, which is not comparable with
the trained network's running statistics. ``thresholds`` gives today's thresholds of
the run's network (``relu_stats.relu_thresholds`` of the network rebuilt from its model
configuration, no weights); ``step0_records`` the step 0 measured as the trained network
is (running statistics after a calibration pass): from ``relu_stats.json`` when the
trainer measured it so, else from ``STEP0_FILE``, which ``STEP0_COMMAND`` writes for the
older runs (``manifold_lab.reproduction.figure7``). The claim table and the per-study
report both read Figure 7 through these.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from manifold_lab import io
from manifold_lab.errors import UsageError

__all__ = ["STEP0_COMMAND", "STEP0_FILE", "step0_measured", "step0_records", "thresholds"]

STEP0_FILE = "relu_stats_step0.json"
STEP0_COMMAND = "python -m manifold_lab.reproduction.figure7 {folder}"


@lru_cache(maxsize=None)
def _thresholds(model_params: str) -> dict[str, int]:
    from manifold_lab.train.config import TrainConfig
    from manifold_lab.train.relu_stats import relu_thresholds
    from manifold_lab.train.trainer import build_model

    return relu_thresholds(build_model(TrainConfig.model_validate({"model": json.loads(model_params)}), 10, 3))


def thresholds(model: dict) -> dict[str, int]:
    """``relu_thresholds`` of the network of the model configuration ``model`` (a run's ``params["model"]``),
    rebuilt without weights: today's thresholds for records that carry an older rule's."""
    return _thresholds(json.dumps(model or {}, sort_keys=True))


def step0_measured(run_dir: Path, data: dict | None) -> tuple[list[dict], str] | None:
    """``(records, how they were measured)`` of the run's step 0 measured as its final records are (running
    statistics after a calibration pass): from ``data`` (its loaded ``relu_stats.json``) when the trainer
    measured them so, else from ``run_dir / STEP0_FILE``; None otherwise. A damaged ``STEP0_FILE`` is one
    UsageError line naming it and ``STEP0_COMMAND``."""
    how = str((((data or {}).get("sample") or {}).get("bn") or {}).get("step0", ""))
    if how.startswith("running statistics"):
        return (data or {}).get("step0"), how
    path = Path(run_dir) / STEP0_FILE
    if not path.exists():
        return None
    try:
        got = json.loads(io.read_text(path, what=f"a run's {STEP0_FILE}"))
        records = got["step0"]
        if not isinstance(records, list):
            raise ValueError(f"'step0' is a {type(records).__name__}, not a list of layers")
        return records, str(got.get("bn") or "running statistics after a calibration pass")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        what = f"missing key {exc}" if isinstance(exc, KeyError) else " ".join(str(exc).split())
        raise UsageError(f"{path} is damaged or empty ({what}); regenerate it with "
                         f"{STEP0_COMMAND.format(folder=Path(run_dir).parent.parent)}") from None


def step0_records(run_dir: Path, data: dict | None) -> list[dict] | None:
    """The records of ``step0_measured`` (None when the run has no step 0 measured as its final records are)."""
    found = step0_measured(run_dir, data)
    return found[0] if found else None
