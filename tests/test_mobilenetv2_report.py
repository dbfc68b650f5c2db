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
