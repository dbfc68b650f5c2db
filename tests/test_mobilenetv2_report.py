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
