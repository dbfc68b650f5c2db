"""The mobilenetv2 kind's report tables, on synthetic run records."""

from types import SimpleNamespace

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
    # the plot's dashed line: today's threshold / C, in both panels of the first seed
    for ax in figures["relu_stats.png"].axes:
        dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert list(dashed[0].get_ydata()) == [3 / 16, 8 / 16, 8 / 48, 16 / 96, 16 / 16]
