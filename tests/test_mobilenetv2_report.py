"""The mobilenetv2 kind's report tables, on synthetic run records."""

from types import SimpleNamespace

import numpy as np
import pytest

from manifold_lab.kinds.mobilenetv2 import PLATEAU_EPOCHS, _plateau_table


def run(seed, curve):
    return SimpleNamespace(seed=seed, metrics={"curve_test_acc": curve})


def test_plateau_table_gives_the_gain_over_the_last_epochs_per_seed():
    assert PLATEAU_EPOCHS == 3
    flat = [0.1, 0.3, 0.50, 0.50, 0.50, 0.50]      # gain 0 points
    rising = [0.1, 0.2, 0.30, 0.40, 0.50, 0.60]    # gain 60 - 30 = 30 points
    table = _plateau_table({"act=identity": [run(1, rising), run(0, flat)],
                            "act=relu6": [run(0, [0.5, 0.5])]})  # too short to judge: left out
    rows = [line for line in table.splitlines() if line.startswith("| act=")]
    assert rows == ["| act=identity | 2 | 55.0 | +15.00 [+0.00, +30.00] | +0.00, +30.00 |"]


def test_arms_table_shows_parameters_and_shortcuts_and_flags_old_runs():
    from manifold_lab.kinds.mobilenetv2 import _arms_table, _sample_text

    def rec(seed, metrics, shortcut):
        params = {"model": {"preset": "cifar_fast", "width_mult": 0.5, "shortcut": shortcut}}
        return SimpleNamespace(seed=seed, metrics=metrics, params=params,
                               param=lambda path: params["model"][path.split(".")[1]])

    new = rec(0, {"params": 1234, "shortcuts": 10}, "expansion")
    old = rec(1, {"params": 1234}, "expansion")
    rows = [x for x in _arms_table({"shortcut=expansion": [new, old],
                                    "shortcut=none": [rec(1, {"params": 1234}, "none")]}).splitlines()
            if x.startswith("| shortcut=")]
    # width 0.5: the old rule joined only blocks that both keep their shape, n - 2 per stage: 5
    assert rows == ["| shortcut=expansion | 1,234 | 10 (not recorded by some older runs); the older expansion rule "
                    "gave these runs 5 shortcuts (now as many as the bottleneck arm): rerun the study |",
                    "| shortcut=none | 1,234 | not recorded (an older run) |"]
    assert _sample_text({}, short=True) == "old sample"
    sample = {"images": 250, "per_class": 25, "histogram": {str(i): 25 for i in range(10)},
              "bn": {"step0": "batch statistics of the sample", "final": "running statistics (eval mode)"}}
    assert _sample_text({"sample": sample}).startswith("250 test images, 25 per class of 10; step 0: batch")


def test_figure7_table_and_plot_use_todays_thresholds_and_step0_measured_as_trained(tmp_path, monkeypatch):
    """The report's Figure 7 reads as the claim table's row: records whose stored thresholds follow an older rule
    are judged by today's (the network rebuilt from the run's configuration), and a step 0 recorded with batch
    statistics is not counted: the table says so and names the command that measures it again."""
    import json
    from pathlib import Path

    import manifold_lab.io as io
    from manifold_lab.kinds import ReportContext
    from manifold_lab.kinds.mobilenetv2 import report
    from manifold_lab.reporting.aggregate import aggregate
    from manifold_lab.train.figure7 import STEP0_FILE
    from tests.test_claims import make_study

    def rec(name, channels, mean, threshold):
        return {"name": name, "channels": channels, "min": 0, "max": channels, "mean": mean,
                "threshold": threshold, "below_threshold": 0.0}

    # today's thresholds of a width-0.5 cifar_fast network: stem 3, features.1-2 8, features.3 16
    final = [rec("features.0.act", 16, 6, 16 / 6),   # margin 2 (6 / 3)
             rec("features.1.act2", 16, 9, 16),       # below by its stored threshold, 9 / 8 above by today's
             rec("features.2.act1", 48, 6, 4),        # above by its stored threshold, 6 / 8 below by today's
             rec("features.3.act1", 96, 12, 8),       # likewise: 12 / 16
             rec("features.3.act3", 16, 0, 16)]       # a bottleneck activation: not a Figure 7 layer
    batch_step0 = [rec(r["name"], r["channels"], 0, r["threshold"]) for r in final]  # every layer below
    model = {"model.preset": "cifar_fast", "model.width_mult": 0.5, "model.bottleneck_act": "relu6",
             "model.shortcut": "bottleneck"}
    sample = {"images": 250, "per_class": 25, "histogram": {str(i): 25 for i in range(10)},
              "bn": {"step0": "batch statistics of the sample", "final": "running statistics (eval mode)"}}
    make_study(tmp_path, "figure6a_linear_bottleneck_cifar10", "mobilenetv2", {"model.bottleneck_act": ["relu6"]},
               [(model, s, {"test_acc": 0.5, "curve_test_acc": [0.2, 0.5]},
                 {"sample": sample, "step0": batch_step0, "final": final}) for s in (0, 1)])
    folder = tmp_path / "figure6a_linear_bottleneck_cifar10"
    runs = [r for r in aggregate(folder).records if r is not None]
    calibrated = [rec(r["name"], r["channels"], 2 * r["mean"] + 10, r["threshold"]) for r in final]
    (runs[0].run_dir / STEP0_FILE).write_text(json.dumps({"step0": calibrated, "bn": "running statistics of a "
                                                          "calibration pass over 250 images"}))
    figures = {}

    def keep(fig, path, **kw):
        figures[Path(path).name] = fig
        return Path(path)

    monkeypatch.setattr(io, "savefig", keep)
    monkeypatch.setattr("matplotlib.pyplot.close", lambda fig=None: None)
    items = report(ReportContext(name="f", out_dir=tmp_path / "out", runs=runs,
                                 sweep_keys=["model.bottleneck_act"]))
    table = next(i for i in items if i.markdown and "| below at step 0 |" in i.markdown)
    rows = [line.split(" | ")[1:] for line in table.markdown.splitlines() if line.startswith("| bottleneck_act=")]
    assert rows == [["0", "4", "0", "2 (features.2.act1, features.3.act1)", "0.75", "0.94", "25 per class |"],
                    ["1", "4", "not measured the same way", "2 (features.2.act1, features.3.act1)", "0.75", "0.94",
                     "25 per class |"]]
    assert "today's threshold d of each layer" in table.title and "margin < 1" in table.title
    assert "running statistics of a calibration pass over 250 images (1 of 2 runs, recomputed into runs/<id>/" \
           f"{STEP0_FILE} by `python -m manifold_lab.reproduction.figure7 {tmp_path.name}/" \
           "figure6a_linear_bottleneck_cifar10`)" in table.title
    assert "1 of 2 runs have no step 0 measured as their trained network is" in table.title
    # the plot's dashed line: today's threshold / C, in both panels of the first seed, over the table's layers
    # (the bottleneck activation features.3.act3 is drawn in neither)
    for ax in figures["relu_stats.png"].axes:
        dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert list(dashed[0].get_ydata()) == [3 / 16, 8 / 16, 8 / 48, 16 / 96]


def test_one_block_study_gets_the_penalty_per_block_figure_and_table(tmp_path):
    """A study sweeping model.bottleneck_act_blocks over block_N against none: per block with a paired seed, the
    mean of acc(none)_s - acc(block_N)_s in points, the shortcut of features.N in the built network, the mean
    branch loss 1 - r2_branch_linear of features.N from the block_N runs' probe.json; a study without block_N arms
    gets neither the figure nor the table."""
    import json

    from manifold_lab.reporting.report import write_report
    from tests.test_claims import make_study

    net = {"model.preset": "cifar_fast", "model.width_mult": 0.5, "model.shortcut": "bottleneck"}
    acc = {("none", 0): 0.70, ("none", 1): 0.72, ("none", 2): None,  # none's seed 2 failed
           **{(n, s): 0.70 - 0.01 * n + 0.002 * s * (n % 2) for n in (2, 3, 4, 5) for s in range(3)},
           ("7", 2): 0.5}  # block_7 only where none failed: no paired seed, left out
    r2 = {2: 0.9, 3: 0.6, 4: 0.8, 5: 0.7}
    runs, probes = [], []
    for (arm, s), a in acc.items():
        values = {**net, "model.bottleneck_act": "identity" if arm == "none" else "relu6",
                  "model.bottleneck_act_blocks": "none" if arm == "none" else f"block_{arm}"}
        runs.append((values, s, {"test_acc": a, "curve_test_acc": [0.3, a]} if a else None, None))
        records = [{"name": f"features.{m}", "r2_branch_linear": r2.get(arm, 1.0) if m == arm else 1.0}
                   for m in range(1, 18)]
        probes.append(None if arm in ("none", "7") or (arm, s) == (3, 1) else  # block_3 seed 1: no probe.json
                      {"final": {"records": records}})
    make_study(tmp_path, "one_block", "mobilenetv2",
               {"model.bottleneck_act_blocks": ["none", "block_2", "block_3", "block_4", "block_5", "block_7"]}, runs)
    for i, probe in enumerate(probes):
        if probe:
            (tmp_path / "one_block" / "runs" / f"one_{i:08d}" / "probe.json").write_text(json.dumps(probe))
    path, error = write_report(tmp_path / "one_block")
    assert error is None and (tmp_path / "one_block" / "figures" / "block_penalty.png").is_file()
    text = path.read_text()
    assert "figures/block_penalty.png" in text
    table = text.split("### Penalty per block (one block at a time)")[1].split("\n\n")[1]
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| block_")]
    assert [r[0] for r in rows] == ["| block_2", "| block_3", "| block_4", "| block_5"]  # not block_7
    assert [r[1] for r in rows] == ["no", "yes", "no", "yes"]  # features[N].use_res_connect at width 0.5
    assert [r[2] for r in rows] == ["2"] * 4  # seeds 0 and 1
    for (n, *_), row in zip([(2,), (3,), (4,), (5,)], rows):
        want = np.mean([100 * (acc[("none", s)] - acc[(n, s)]) for s in (0, 1)])
        assert float(row[3].split(" [")[0]) == pytest.approx(want, abs=0.005)
        assert row[4] == f"{1 - r2[n]:.3f} |"  # block_3: its seed 0 alone has a probe.json, the same value
    # bottleneck_act identity / relu6 only: no block_N arm, no figure, no table
    make_study(tmp_path, "act", "mobilenetv2", {"model.bottleneck_act": ["identity", "relu6"]},
               [({**net, "model.bottleneck_act": act}, s, {"test_acc": 0.6, "curve_test_acc": [0.3, 0.6]}, None)
                for act in ("identity", "relu6") for s in range(3)])
    path, error = write_report(tmp_path / "act")
    assert error is None and not (tmp_path / "act" / "figures" / "block_penalty.png").exists()
    assert "block_penalty" not in path.read_text() and "Penalty per block" not in path.read_text()


def test_arms_are_named_by_the_sweep_values_not_by_the_params_they_are_stored_as(tmp_path):
    """The sweep value "none" of bottleneck_act_blocks is stored as the linear network's params (blocks "all"), as is
    the value "all" of a relu6 network's: the report's tables keep the two arms apart, by the values the sweep
    states (they were one arm of 4 runs)."""
    import json

    from manifold_lab.reporting.report import write_report
    from tests.test_claims import make_study

    net = {"model.preset": "cifar_fast", "model.width_mult": 0.5, "model.shortcut": "bottleneck"}
    runs = [({**net, "model.bottleneck_act": act, "model.bottleneck_act_blocks": "all"}, s,
             {"test_acc": acc, "curve_test_acc": [0.3, 0.4, 0.5, acc]}, None)
            for act, acc in (("identity", 0.7), ("relu6", 0.6)) for s in range(2)]
    make_study(tmp_path, "where", "mobilenetv2", {"model.bottleneck_act_blocks": ["none", "all"]}, runs)
    plan = json.loads((tmp_path / "where" / "plan.json").read_text())
    for run in plan["runs"]:  # as the runner stores it: the sweep's own value beside the normalised params
        if run["params"]["model"]["bottleneck_act"] == "identity":
            run["sweep_values"]["model.bottleneck_act_blocks"] = "none"
    (tmp_path / "where" / "plan.json").write_text(json.dumps(plan))
    path, error = write_report(tmp_path / "where")
    plateau = [part for part in path.read_text().split("### ")[1:] if part.startswith("Has training plateaued?")][0]
    rows = {line.split(" | ")[0]: line.split(" | ")[1] for line in plateau.splitlines()
            if line.startswith("| bottleneck_act_blocks=")}
    assert error is None and rows == {"| bottleneck_act_blocks=all": "2", "| bottleneck_act_blocks=none": "2"}
