"""Figure 7 measured the same way at step 0 and after training, for the committed runs.

A run's ``relu_stats.json`` holds Figure 7's statistics at the end (eval mode, running
statistics) and at step 0. Runs before issue 22 measured step 0 with the sample's
*batch* statistics, so their step-0 and final margins differ by the way of measuring.
Their trained checkpoints are not kept, but the step-0 network is rebuilt exactly from
the run's configuration and seed (``manifold_lab.train.trainer.initial_model``), so
``recompute`` measures step 0 again as the trainer now does
(``manifold_lab.train.relu_stats.step0_stats``: running statistics of a calibration pass
over class-balanced clean training images) and writes it to ``runs/<id>/STEP0_FILE``,
leaving ``relu_stats.json`` as recorded. It first recomputes the recorded batch-statistics
step 0 and refuses a run where that does not match (a different network or sample), so
the new record is of the same network and sample as the old one. A forward pass per run::

    python -m manifold_lab.reproduction.figure7 results/figure6a_linear_bottleneck_cifar10
"""

from __future__ import annotations

import sys
from pathlib import Path

from manifold_lab.errors import UsageError
from manifold_lab.kinds import RunRecord
from manifold_lab.reproduction.records import done_runs, relu_stats
from manifold_lab.train import figure7 as measured
from manifold_lab.train.figure7 import STEP0_COMMAND as COMMAND, STEP0_FILE

__all__ = ["COMMAND", "STEP0_FILE", "TOLERANCE", "recompute", "step0_records", "thresholds"]

#: The largest difference of a mean positive-channel count, as a share of the layer's channels, allowed between
#: the recorded batch-statistics step 0 and its recomputation: the float summation order differs between torch
#: builds and thread counts, and deep layers count near-zero values that flip (measured: up to 1e-4 of C; a
#: different network or sample differs by about 1e-1 of C at once in the first layers).
TOLERANCE = 1e-3


def step0_records(run: RunRecord) -> list[dict] | None:
    """The run's step-0 Figure 7 records measured as its final ones (``manifold_lab.train.figure7.step0_records``
    of its ``relu_stats.json``, a damaged one refused by ``records.relu_stats``)."""
    return measured.step0_records(run.run_dir, relu_stats(run))


def thresholds(run: RunRecord) -> dict[str, int]:
    """Today's thresholds of the run's network (``manifold_lab.train.figure7.thresholds`` of its model
    configuration)."""
    return measured.thresholds(run.params.get("model", {}))


def recompute(folder: str | Path) -> list[Path]:
    """Write ``STEP0_FILE`` for every done run of ``folder`` that has neither it nor a calibrated step 0
    (module docstring); returns the files written. CIFAR-10 (JPEG copy) must be where its config says."""
    import torch

    from manifold_lab import io
    from manifold_lab.data import build_loaders
    from manifold_lab.data.sample import balanced_sample
    from manifold_lab.train.config import TrainConfig
    from manifold_lab.train.relu_stats import relu_stats as measure, step0_stats
    from manifold_lab.train.trainer import initial_model

    folder = Path(folder)
    written = []
    for run in done_runs(folder):
        data = relu_stats(run)
        if data is None or "sample" not in data or step0_records(run) is not None:
            continue
        cfg = TrainConfig.model_validate(run.params)
        train_loader, test_loader, classes, channels = build_loaders(
            cfg.data.model_dump(), device="cpu", seed=run.seed, channels_last=cfg.train.channels_last)
        per_class = int(data["sample"]["per_class"])
        sample = balanced_sample(test_loader, per_class)[0]
        with torch.random.fork_rng(devices=[]):
            model = initial_model(cfg, run.seed, classes, channels).eval()
        if cfg.train.channels_last:
            model.to(memory_format=torch.channels_last)
        again = {r["name"]: r["mean"] for r in measure(model, sample, bn="batch")}
        off = max(abs(again[r["name"]] - r["mean"]) / r["channels"] for r in data["step0"])
        if off > TOLERANCE:
            raise UsageError(f"{run.run_dir}: the rebuilt step-0 network does not reproduce the recorded step 0 "
                             f"(a mean differs by {off:.2%} of its channels); rerun the run with the study's spec")
        records, how = step0_stats(model, sample, train_loader, per_class)
        path = run.run_dir / STEP0_FILE
        io.write_json(path, {"step0": records, "bn": how, "command": COMMAND.format(folder=folder.as_posix()),
                             "checked": f"recorded batch-statistics step 0 reproduced within {off:.1e} of each "
                             "layer's channels"})
        written.append(path)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "plan.json").exists():
        print("usage: python -m manifold_lab.reproduction.figure7 RESULTS_FOLDER (a study folder with plan.json)",
              file=sys.stderr)
        sys.exit(2)
    for p in recompute(sys.argv[1]):
        print(p)
