"""The tidy tables curves.csv and finals.csv: exact contents on tiny studies."""

import csv

import kinds_for_launch
from kinds_for_tests import KIND as CLOSED_FORM
from kinds_for_tests import write_spec

from manifold_lab.reporting.report import write_report
from manifold_lab.execution.runner import run_experiment
from manifold_lab.spec.load import load_spec
from manifold_lab.spec.sweep import plan
from manifold_lab.reporting.tables import curve_rows
from manifold_lab.kinds import RunRecord, register

register(CLOSED_FORM)
register(kinds_for_launch.KIND)


def test_curves_and_finals_of_a_partly_run_sweep(tmp_path):
    spec = load_spec(write_spec(tmp_path / "e.yaml", """\
        name: e
        kind: epochs
        params: {epochs: 2}
        sweep:
          a: [1.0, 2.0]
          seeds: [0, 1]
        """))
    root = tmp_path / "out"
    ids = [r.run_id for r in plan(spec)]
    for index in (0, 1, 3):  # run 2 (a=2.0, seed 0) is not run
        run_experiment(spec, out=root, run_index=index)
    write_report(root)
    # loss = a / epoch, acc = epoch / 10 + seed (tests/kinds_for_launch.py)
    assert (root / "curves.csv").read_text() == "\n".join([
        "study,run_id,a,seed,epoch,metric,value",
        f"e,{ids[0]},1.0,0,1,loss,1.0", f"e,{ids[0]},1.0,0,1,acc,0.1",
        f"e,{ids[0]},1.0,0,2,loss,0.5", f"e,{ids[0]},1.0,0,2,acc,0.2",
        f"e,{ids[1]},1.0,1,1,loss,1.0", f"e,{ids[1]},1.0,1,1,acc,1.1",
        f"e,{ids[1]},1.0,1,2,loss,0.5", f"e,{ids[1]},1.0,1,2,acc,1.2",
        f"e,{ids[3]},2.0,1,1,loss,2.0", f"e,{ids[3]},2.0,1,1,acc,1.1",
        f"e,{ids[3]},2.0,1,2,loss,1.0", f"e,{ids[3]},2.0,1,2,acc,1.2",
    ]) + "\n"
    assert (root / "finals.csv").read_text() == "\n".join([
        "study,run_id,a,seed,status,epochs,loss,resumed_at,error",  # metrics in metrics.json's (sorted) order
        f"e,{ids[0]},1.0,0,done,2,0.5,0,",
        f"e,{ids[1]},1.0,1,done,2,0.5,0,",
        f"e,{ids[2]},2.0,0,not run,,,,",
        f"e,{ids[3]},2.0,1,done,2,1.0,0,",
    ]) + "\n"


def test_finals_hold_failed_runs_with_their_error_and_curves_only_a_header(tmp_path):
    spec = load_spec(write_spec(tmp_path / "r.yaml", """\
        name: r
        kind: closed_form
        params: {a: 3.0, fail_seeds: [1]}
        sweep:
          block.act: [relu, identity]
          seeds: [0, 1]
        """))
    root = tmp_path / "out"
    run_experiment(spec, out=root, report=write_report)
    ids = [r.run_id for r in plan(spec)]
    # y = a (seed + 1) + b, z = a^2 + seed, w = width * a; seed 1 fails
    rows = list(csv.reader((root / "finals.csv").open()))
    assert rows == [
        ["study", "run_id", "block.act", "seed", "status", "w", "y", "z", "error"],
        ["r", ids[0], "relu", "0", "done", "3.0", "3.0", "9.0", ""],
        ["r", ids[1], "relu", "1", "failed", "", "", "", "RuntimeError: asked to fail for seed 1"],
        ["r", ids[2], "identity", "0", "done", "3.0", "3.0", "9.0", ""],
        ["r", ids[3], "identity", "1", "failed", "", "", "", "RuntimeError: asked to fail for seed 1"],
    ]
    assert (root / "curves.csv").read_text() == "study,run_id,block.act,seed,epoch,metric,value\n"


def test_curves_fall_back_to_curve_lists_without_an_epoch_log(tmp_path):
    record = RunRecord(run_id="x", params={}, seed=0, status="done", run_dir=tmp_path,
                       metrics={"curve_test_acc": [0.25, 0.5], "curve_loss": [2.0, 1.0], "test_acc": 0.5,
                                "curve_label": ["a", "b"]})
    assert curve_rows(record) == [(1, "test_acc", 0.25), (1, "loss", 2.0), (2, "test_acc", 0.5), (2, "loss", 1.0)]
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "test_acc": 0.75, "lr": 0.1, "status": "x"}\n{"epo')
    assert curve_rows(record) == [(1, "test_acc", 0.75), (1, "lr", 0.1)]  # the log wins; a cut line is skipped
