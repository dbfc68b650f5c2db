"""The manifold experiment kinds: run() on tiny params, report(), and the quickstart end to end."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from manifold_lab.kinds import ReportContext, RunContext, RunRecord, get_kind

REPO = Path(__file__).resolve().parents[1]


def _run(kind_name, params, seed, tmp_path):
    kind = get_kind(kind_name)
    p = kind.params.model_validate(params)
    run_dir = tmp_path / "runs" / f"{kind_name}-{seed}-{len(list(tmp_path.glob('runs/*')))}"
    run_dir.mkdir(parents=True)
    metrics = kind.run(p, seed, RunContext(run_dir, seed, logging.getLogger("test")))
    return p, metrics, RunRecord(run_dir.name, p.model_dump(), seed, "done", metrics, run_dir)


def _finite_scalars(metrics, keys):
    missing = set(keys) - set(metrics)
    assert not missing, f"missing metric keys {sorted(missing)}"
    for k in keys:
        assert isinstance(metrics[k], (int, float)) and math.isfinite(metrics[k]), (k, metrics[k])


def _report(kind_name, records, sweep_keys, tmp_path):
    items = get_kind(kind_name).report(ReportContext("t", tmp_path, records, sweep_keys))
    assert items
    for item in items:
        if item.figure:
            assert (tmp_path / item.figure).stat().st_size > 1000
    return items


# --------------------------------------------------------------------------- toy_bottleneck

TOY_TINY = {"model": {"width": 2, "depth": 2, "expand_ratio": 3},
            "data": {"n_train": 60, "n_test": 50, "n_dims": 5}, "train": {"steps": 20}}


def test_toy_bottleneck_kind(tmp_path):
    records = []
    for task in ("classify", "regress"):
        for act in ("identity", "relu6"):
            params = {**TOY_TINY, "model": {**TOY_TINY["model"], "bottleneck_act": act},
                      "data": {**TOY_TINY["data"], "task": task}}
            for seed in (0, 1):
                _, m, rec = _run("toy_bottleneck", params, seed, tmp_path)
                score = ["test_accuracy", "test_error"] if task == "classify" else ["test_nmse"]
                blocks = [f"block{b}_{s}" for b in range(2)
                          for s in ("invertible_fraction", "active_mean", "active_min", "active_max")]
                _finite_scalars(m, score + blocks + ["final_train_loss", "params",
                                                     "invertible_fraction_min", "active_fraction_mean"])
                if task == "classify":
                    assert m["test_accuracy"] + m["test_error"] == pytest.approx(1.0)
                # Lemma-2 statistics: counts of 3*2 expansion units, threshold k = 2.
                assert 0 <= m["block0_active_min"] <= m["block0_active_mean"] <= m["block0_active_max"] <= 6
                assert m["invertible_fraction_min"] == min(m["block0_invertible_fraction"],
                                                           m["block1_invertible_fraction"])
                records.append(rec)
    items = _report("toy_bottleneck", records, ["data.task", "model.bottleneck_act"], tmp_path)
    table = next(i.markdown for i in items if i.markdown)
    assert table.count("\n") == 1 + 2 * 2  # header, rule, one row per (task, activation) at width 2


def test_toy_params_reject_bad_values():
    import pydantic

    params = get_kind("toy_bottleneck").params
    with pytest.raises(pydantic.ValidationError):
        params.model_validate({"model": {"width": 0}})
    with pytest.raises(pydantic.ValidationError):
        params.model_validate({"model": {"bottleneck_act": "gelu"}})
    with pytest.raises(pydantic.ValidationError):
        params.model_validate({"model": {"widht": 2}})
