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
