"""The benchmark suite's plumbing (``python -m benchmarks``): options, summary JSON, table.

Nothing here is timed: the suite runs one benchmark on a few thousand points, and
the summary is built from fake results; no speed is asserted.
"""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

suite = pytest.importorskip("benchmarks.__main__")

MACHINE_KEYS = {"cpu", "cores", "torch", "numpy", "load_average_1min"}
HEADLINE_KEYS = {"status", "figure", "ratio", "target", "met", "figures"}

FAKE = {
    "collapsed": {"ratio": 0.9, "target": "<= 3"},
    "train_step": {
        "model_vs_plain": 0.8, "model_target": ">= 1.0", "epoch_vs_bare_step": None, "epoch_target": "<= 1.10",
        "variants": {"channels_last": {"compile": False, "vs_eager": 2.0, "warmup_s": 0.5},
                     "compile": {"compile": True, "vs_eager": 1.2, "warmup_s": 60.0},
                     "bf16": {"compile": False, "error": "no bf16"}},
    },
    "memory_efficient": {"rows": [
        {"t_prime": "standard", "measured_peak_mb": 10.0, "time_ratio": 1.0},
        {"t_prime": 1, "measured_peak_mb": 7.0, "time_ratio": 1.0},
        {"t_prime": 2, "measured_peak_mb": 4.0, "time_ratio": 1.1},
        {"t_prime": 3, "measured_peak_mb": 3.5, "time_ratio": 1.3},
    ]},
    "augment": {"ratios": {"device_vs_per_sample_array": 12.0, "device_vs_per_sample_jpeg": 18.0}, "target_ratio": 5.0},
    "quickstart": {"ratio": 30.0, "quickstart_median_s": 60.0},
    "probe": {"ratio": 25.0, "probe_median_s": 75.0},
}


def _bench(*args):
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("only", ["nope", "collapsed,nope", ""])
def test_unknown_only_name_is_one_line_exit_2(only):
    out = _bench("--only", only)
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    assert all(name in lines[0] for name in suite.BENCHMARKS)


def test_summary_of_fake_results_has_headlines_targets_and_machine():
    machine = {"cpu": "test cpu", "cores": 2, "torch": "x", "numpy": "y", "load_average_1min": 0.5}
    summary = suite.summarize({**FAKE, "augment": {"status": "skipped", "reason": "no data"}}, machine)
    assert set(summary["benchmarks"]) == set(suite.BENCHMARKS)
    assert summary["machine"] == machine
    b = summary["benchmarks"]
    for name in ("collapsed", "train_step", "memory_efficient", "quickstart"):
        assert HEADLINE_KEYS <= set(b[name])
    assert b["augment"] == {"status": "skipped", "reason": "no data"}
    assert (b["collapsed"]["ratio"], b["collapsed"]["met"]) == (0.9, True)
    assert (b["probe"]["ratio"], b["probe"]["target"], b["probe"]["met"]) == (75.0, "<= 60", False)
    assert (b["train_step"]["target"], b["train_step"]["met"]) == (">= 1.0", False)
    assert b["memory_efficient"]["ratio"] == pytest.approx(0.4) and b["memory_efficient"]["met"] is None
    figures = {f["figure"]: f for f in b["train_step"]["figures"]}
    assert figures["data + augmentation + step / bare step, time"]["met"] is None  # not measured
    assert figures["bf16 / eager, images/s"]["value"] is None
    assert figures["compile: compile warm-up (first step)"]["value"] == 60.0
    table = suite.format_table(summary)
    assert table.splitlines()[0] == "| benchmark | figure | value | target | met? |"
    assert "augment | skipped: no data" in table
    json.dumps(summary)  # serialisable as it is


def test_summary_of_real_augment_result_shape():
    row = suite.summarize({"augment": FAKE["augment"]}, {})["benchmarks"]["augment"]
    assert (row["ratio"], row["target"], row["met"]) == (12.0, ">= 5", True)


def test_only_collapsed_writes_summary_json(tmp_path, monkeypatch, capsys):
    tiny = dataclasses.replace(suite.BENCHMARKS["collapsed"], args=("--points", "2000", "--repeats", "1"))
    monkeypatch.setitem(suite.BENCHMARKS, "collapsed", tiny)
    assert suite.main(["--only", "collapsed", "--out-dir", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert MACHINE_KEYS <= set(summary["machine"])
    assert list(summary["benchmarks"]) == ["collapsed"]
    assert HEADLINE_KEYS <= set(summary["benchmarks"]["collapsed"])
    assert summary["benchmarks"]["collapsed"]["target"] == "<= 3"
    assert json.loads((tmp_path / "collapsed.json").read_text())["points"] == 2000
    assert "| collapsed | collapsed_fraction / bare ReLU map, time |" in capsys.readouterr().out
