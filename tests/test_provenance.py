"""Every run records its provenance; the report says what differs between runs."""

import json
import platform
import subprocess
from datetime import datetime

import numpy as np
import pytest
import scipy
from kinds_for_tests import KIND, REPO, cli, write_spec

from manifold_lab.execution import provenance
from manifold_lab.reporting.report import write_report
from manifold_lab.kinds import register

register(KIND)

SPEC = """\
name: p
kind: closed_form
sweep:
  b: [0, 1]
  seeds: [0, 1]
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prov")
    write_spec(tmp / "s.yaml", SPEC)
    out = cli("run", "s.yaml", "params.a=3", "--jobs", "2", cwd=tmp)
    assert out.returncode == 0, out.stderr
    return tmp / "runs" / "p"


def test_every_run_records_versions_commit_host_device_and_times(folder):
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("runs/*/provenance.json"))]
    assert len(records) == 4
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    for r in records:
        assert r["python"] == platform.python_version()
        assert r["packages"]["numpy"] == np.__version__ and r["packages"]["scipy"] == scipy.__version__
        assert set(r["packages"]) == {"torch", "numpy", "scipy", "scikit-learn", "pydantic", "manifold-lab"}
        assert r["commit"] == head and isinstance(r["dirty"], bool)
        assert r["host"] == platform.node() and r["cpu"] and r["cpu_count"] >= 1
        assert r["device"] == "cpu" and r["threads"]["OMP_NUM_THREADS"]  # set for --jobs workers
        # The parent's command line, also inside the worker processes.
        assert r["command"] == "manifold-lab run s.yaml params.a=3 --jobs 2"
        assert datetime.fromisoformat(r["started"]) <= datetime.fromisoformat(r["finished"])


def test_the_report_says_what_differs_between_runs(folder):
    report = (folder / "report.md").read_text()
    assert "Nothing differs between the recorded runs" in report
    path = sorted(folder.glob("runs/*/provenance.json"))[0]
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "host": "elsewhere", "packages": {**record["packages"], "torch": "0.0"}}))
    write_report(folder)
    report = (folder / "report.md").read_text()
    assert f"| host | {platform.node()} (3 runs); elsewhere (1 runs) |" in report
    assert f"| packages.torch | {record['packages']['torch']} (3 runs); 0.0 (1 runs) |" in report
    path.unlink()  # a run recorded before provenance existed
    write_report(folder)
    assert "1 run(s) have no `provenance.json`" in (folder / "report.md").read_text()


def test_differences_ignores_times_and_counts_missing_records():
    a = {"host": "x", "started": "1", "packages": {"torch": "2"}}
    b = {"host": "x", "started": "2", "packages": {"torch": "3"}}
    assert provenance.differences([a, b, None]) == ({"packages.torch": {"2": 1, "3": 1}}, 1)
    assert provenance.differences([a, a]) == ({}, 0)


def test_the_commit_is_read_when_the_run_starts(tmp_path, monkeypatch):
    """A commit made while a run trains must not be recorded as the code that ran (issue 22, section 5)."""
    import dataclasses

    from manifold_lab.execution.one_run import execute_run
    from manifold_lab.spec.sweep import PlannedRun

    state = {"commit": "started-here"}
    monkeypatch.setattr(provenance, "_git", lambda: (state["commit"], False))

    def run_then_commit(params, seed, ctx):
        state["commit"] = "committed-during-the-run"
        return {"y": 1.0}

    kind = dataclasses.replace(KIND, run=run_then_commit)
    run = PlannedRun(index=0, run_id="abc123def456", point=0, seed=0, sweep_values={}, params=KIND.params().model_dump())
    assert execute_run(kind, run, tmp_path, "t") == ("done", None)
    record = json.loads((tmp_path / "runs" / "abc123def456" / "provenance.json").read_text())
    assert record["commit"] == "started-here"


def test_device_auto_is_recorded_as_the_device_used():
    import torch

    record = provenance.collect({"train": {"device": "auto"}})
    assert record["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
