"""What a report must not let a reader misread (issue 26): arms that learned nothing, one sign and
one unit for every difference, commands that run as printed."""

import csv
import hashlib
import json
import re
import shlex
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml
from kinds_for_tests import KIND, REPO, cli, write_spec
from pydantic import BaseModel, ConfigDict

from manifold_lab.execution.runner import run_experiment
from manifold_lab.execution.store import ResultsStore
from manifold_lab.kinds import Kind, register
from manifold_lab.reporting.aggregate import aggregate
from manifold_lab.reporting.report import CHANCE_MARGIN, learning_warnings, write_report
from manifold_lab.spec.load import load_spec
from manifold_lab.spec.sweep import plan


class ArmParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    acc: float = 0.6          # the run's test accuracy
    classes: int = 10
    losses: list[float] = [2.3, 1.5, 1.0]  # training loss per epoch
    rise_seeds: list[int] = []  # these seeds' losses are reversed (the loss rose)


def _metrics(params: ArmParams, seed: int) -> dict:
    return {"test_acc": params.acc + 0.001 * seed}


def _chance(params: ArmParams) -> dict:
    return {"test_acc": 1 / params.classes}


register(KIND)  # closed_form
register(Kind(name="arms_for_trust", description="a constructed accuracy and loss curve per run", params=ArmParams,
              run=lambda params, seed, ctx: _metrics(params, seed), chance=_chance))


def _construct(folder, spec) -> None:
    """The results folder of ``spec`` with every run recorded done, as the runner records it, without training:
    ``metrics.jsonl`` (the per-epoch training loss) and ``metrics.json`` through ``ResultsStore.finish``."""
    store = ResultsStore(folder)
    runs = plan(spec)
    store.write_plan(spec.resolved(), "manifold-lab run arms.yaml", [asdict(r) for r in runs])
    for r in runs:
        params = ArmParams.model_validate(r.params)
        losses = params.losses[::-1] if r.seed in params.rise_seeds else params.losses
        store.run_dir(r.run_id).mkdir(parents=True)
        (store.run_dir(r.run_id) / "metrics.jsonl").write_text(
            "".join(json.dumps({"epoch": i + 1, "train_loss": v}) + "\n" for i, v in enumerate(losses)))
        store.finish(r.run_id, "done", _metrics(params, r.seed), None, 0.0)


ARMS = """\
name: arms
kind: arms_for_trust
sweep:
  acc: [0.1, 0.6]
  seeds: [0, 1, 2]
contrast: {factor: acc, a: 0.1, b: 0.6, metric: test_acc}
"""


def _report(tmp_path, text=ARMS, overrides=()):
    spec = load_spec(write_spec(tmp_path / "arms.yaml", text), list(overrides))
    _construct(tmp_path / "out", spec)
    return write_report(tmp_path / "out")[0].read_text()


def test_an_arm_at_chance_or_with_a_rising_loss_is_flagged_above_the_answer(tmp_path):
    report = _report(tmp_path, overrides=["params.rise_seeds=[1]"])
    answer = report.split("## The answer\n", 1)[1]
    warning, rest = answer.split("**test_acc", 1)[0], answer  # the warning comes before the contrast
    assert warning.lstrip().startswith("> **Warning: some arms learned nothing**")
    assert "> - acc=0.1: test_acc 10.1% over 3 run(s) is at chance level (10.0%, 1 / classes" in warning
    assert "acc=0.6: test_acc" not in warning  # 60% learned something
    # every arm's loss rose in seed 1 only
    assert warning.count("the training loss rose (last epoch above the first) in 1 of 3 run(s)") == 2
    assert rest.index("> **Warning") < rest.index("| n |")


def test_arms_that_learned_are_not_flagged_and_the_margin_is_the_stated_one(tmp_path):
    """Mean accuracies just inside and just outside 1 / classes + CHANCE_MARGIN (seed s adds 0.001 s)."""
    inside, outside = 0.1 + CHANCE_MARGIN - 0.0015, 0.1 + CHANCE_MARGIN + 0.001
    report = _report(tmp_path, overrides=[f"sweep.acc=[{inside},{outside},0.6]", f"contrast.a={inside}",
                                          "sweep.seeds=[0,1]"])
    warned = learning_warnings(aggregate(tmp_path / "out"))
    assert [w.split(":")[0] for w in warned] == [f"acc={inside}"] and "at chance level" in warned[0]
    assert f"> - acc={inside}: test_acc" in report


def test_a_shrunk_cifar_study_at_chance_is_flagged(tmp_path):
    """Constructed from the committed Figure 6a records: every run set to 10.0% (2 epochs at 100 images
    per class did this), the answer's table then reads 0 [0, 0]."""
    src = REPO / "results" / "figure6a_linear_bottleneck_cifar10"
    folder = tmp_path / "fig6a"
    shutil.copytree(src, folder, ignore=shutil.ignore_patterns("figures", "*.png", "*.pt", "tensorboard"))
    assert learning_warnings(aggregate(folder)) == []  # the committed runs learned
    for metrics in (folder / "runs").glob("*/metrics.json"):
        data = json.dumps({**json.loads(metrics.read_text()), "test_acc": 0.1}).encode()
        metrics.write_bytes(data)
        status = metrics.parent / "status.json"  # the run's own record of what it wrote
        status.write_text(json.dumps({**json.loads(status.read_text()), "metrics_sha256": hashlib.sha256(data).hexdigest()}))
    warned = learning_warnings(aggregate(folder))
    assert [w.split(":")[0] for w in warned] == ["model.bottleneck_act=identity", "model.bottleneck_act=relu6"]
    assert all("test_acc 10.0% over 5 run(s) is at chance level (10.0%" in w for w in warned)


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


TOY = """\
name: toy_sign
kind: toy_bottleneck
params:
  model: {depth: 1, expand_ratio: 2}
  data: {n_train: 60, n_test: 80}
  train: {steps: 30, lr: 0.05}
sweep:
  model.bottleneck_act: [identity, relu6]
  model.width: [1, 2]
  seeds: [0, 1, 2]
contrast: {factor: model.bottleneck_act, a: relu6, b: identity, metric: test_accuracy}
"""


@pytest.mark.slow  # 12 toy networks, each in its own worker process: about 20 s on 2 cores
def test_the_answer_its_csv_and_the_figure_share_one_sign_and_unit(tmp_path, monkeypatch):
    """identity - relu6 in points everywhere: the headline, comparisons.csv, the toy's advantage figure
    and table, all equal to 100 x the per-seed accuracy differences of the run records."""
    import manifold_lab.io as io

    figures = {}
    real_savefig = io.savefig
    monkeypatch.setattr(io, "savefig", lambda fig, path, **kw: figures.setdefault(str(path), fig)
                        and real_savefig(fig, path, **kw))
    monkeypatch.setattr("matplotlib.pyplot.close", lambda fig=None: None)  # keep the figures to read them
    spec = load_spec(write_spec(tmp_path / "toy.yaml", TOY))
    run_experiment(spec, out=tmp_path / "out", report=write_report)
    out = tmp_path / "out"
    acc = {}
    for run in json.loads((out / "plan.json").read_text())["runs"]:
        v = run["sweep_values"]
        acc[v["model.bottleneck_act"], v["model.width"], run["seed"]] = json.loads(
            (out / "runs" / run["run_id"] / "metrics.json").read_text())["test_accuracy"]
    expected = {w: 100 * sum(acc["identity", w, s] - acc["relu6", w, s] for s in range(3)) / 3 for w in (1, 2)}
    assert any(abs(v) > 1 for v in expected.values())  # a real difference to get the sign of

    report = (out / "report.md").read_text()
    assert "**test_accuracy: identity - relu6** in percentage points" in report
    head = [line.split(" | ") for line in report.split("## The answer", 1)[1].splitlines()
            if re.match(r"^\| [12] \| 3 \|", line)]
    assert {int(r[0][2:]): float(r[4]) for r in head} == pytest.approx(expected, abs=0.01)  # num(): 4 digits

    rows = [r for r in _csv(out / "comparisons.csv") if r["factor"] == "model.bottleneck_act"
            and r["metric"] == "test_accuracy"]
    assert {(r["value_a"], r["value_b"]) for r in rows} == {("relu6", "identity")}
    assert {int(r["model.width"]): float(r["mean_diff"]) for r in rows} == pytest.approx(expected, rel=1e-9)
    assert {r["unit"] for r in rows} == {"percent, difference in points"}

    (fig,) = [f for p, f in figures.items() if p.endswith("score_vs_width.png")]
    (ax,) = [a for a in fig.axes if "advantage" in a.get_ylabel() and a.get_lines()[-1].get_label() ==
             "relu6 bottleneck"]
    assert "points" in ax.get_ylabel()
    line = ax.get_lines()[-1]
    assert dict(zip(line.get_xdata(), line.get_ydata())) == pytest.approx(expected, rel=1e-9)
    for width, value in expected.items():  # the kind's table, in points, same sign
        assert f"| {width} | relu6 | {value:+.4g} | [" in report


def _whole_ticks(ax) -> list[float]:
    ax.figure.canvas.draw()
    lo, hi = ax.get_xlim()
    return [t for t in ax.get_xticks() if lo <= t <= hi]


def test_integer_axes_have_whole_number_ticks(tmp_path, monkeypatch):
    """The report's plot against an integer factor, and the epoch axis of a 2-epoch MobileNetV2 study
    (matplotlib's default ticks there were 1.0, 1.2, ..., 2.0)."""
    import manifold_lab.io as io
    from manifold_lab.kinds import ReportContext, RunRecord
    from manifold_lab.kinds.mobilenetv2 import report as mobilenetv2_report

    figures = {}

    def keep(fig, path, **kw):
        figures[Path(path).name] = fig
        return Path(path)

    monkeypatch.setattr(io, "savefig", keep)
    monkeypatch.setattr("manifold_lab.reporting.report.savefig", keep)
    monkeypatch.setattr("matplotlib.pyplot.close", lambda fig=None: None)
    write_spec(tmp_path / "ints.yaml", ARMS.replace("acc: [0.1, 0.6]", "classes: [2, 3]").replace(
        "contrast: {factor: acc, a: 0.1, b: 0.6, metric: test_acc}\n", ""))
    _construct(tmp_path / "out", load_spec(tmp_path / "ints.yaml"))
    write_report(tmp_path / "out")
    shown = _whole_ticks(figures["test_acc_vs_classes.png"].axes[0])
    assert len(shown) >= 2 and all(float(t).is_integer() for t in shown)

    runs = [RunRecord(run_id=f"r{s}", params={"model": {"bottleneck_act": act, "shortcut": "bottleneck"}}, seed=s,
                      run_dir=tmp_path,
                      sweep_values={"model.bottleneck_act": act}, status="done",
                      metrics={"curve_test_acc": [0.2, 0.3 + s / 100]}, error=None)
             for act in ("identity", "relu6") for s in (0, 1)]
    mobilenetv2_report(ReportContext(name="two_epochs", out_dir=tmp_path, runs=runs,
                                     sweep_keys=["model.bottleneck_act"]))
    shown = _whole_ticks(figures["accuracy_vs_epoch.png"].axes[0])
    assert shown == [1.0, 2.0]


SPACED = """\
name: spaced
kind: closed_form
sweep:
  a: [1.0, 2.0]
  seeds: [0, 1]
"""


def test_the_recorded_command_names_the_folder_it_wrote(tmp_path, monkeypatch):
    from manifold_lab.execution.runner import command_line

    monkeypatch.chdir(tmp_path)
    spec = load_spec(write_spec(tmp_path / "spec dir" / "s.yaml", SPACED))
    assert shlex.split(command_line(spec, None)) == ["manifold-lab", "run", "spec dir/s.yaml", "--out", "runs/spaced"]
    assert shlex.split(command_line(spec, None, reference=True)) == ["manifold-lab", "run", "spec dir/s.yaml",
                                                                     "--reference"]


@pytest.mark.slow  # three processes: about 15 s on 2 shared cores
@pytest.mark.parametrize("out", ["out dir/x y"])
def test_every_printed_command_runs_as_printed_from_a_folder_with_a_space(tmp_path, out):
    home = tmp_path / "my study"
    write_spec(home / "spec dir" / "s.yaml", SPACED)
    done = cli("run", "spec dir/s.yaml", *(["--out", out] if out else []), cwd=home)
    assert done.returncode == 0, done.stderr
    folder = home / (out or "runs/spaced")
    recorded = yaml.safe_load((folder / "spec.yaml").read_text())["command"]
    assert shlex.split(recorded) == ["manifold-lab", "run", "spec dir/s.yaml", "--out", out or "runs/spaced"]
    printed = [line[4:] for line in (folder / "report.md").read_text().splitlines()
               if line.startswith("    manifold-lab ")]
    assert len(printed) == 2 and printed[0] == recorded
    for command in printed:
        words = shlex.split(command)
        again = cli(*words[1:], cwd=home)
        assert again.returncode == 0, (command, again.stderr)
        # the rerun of `run` trains nothing; `report` writes the report again
        assert ("4 runs: 0 done, 4 skipped" if words[1] == "run" else "report: ") in again.stdout, again.stdout
    assert sorted(p.name for p in home.iterdir()) == sorted(["spec dir", (out or "runs/").split("/")[0]])


def test_the_committed_figure6a_answer_is_the_claim_tables_difference():
    """The report's answer and results/README.md say the same thing: linear - relu6, in points."""
    report = (REPO / "results" / "figure6a_linear_bottleneck_cifar10" / "report.md").read_text()
    assert "**test_acc: identity - relu6** in percentage points" in report
    (row,) = [line for line in report.split("## The answer", 1)[1].splitlines() if line.startswith("| 5 |")]
    diff, interval = row.split(" | ")[3:5]
    low, high = (float(x) for x in interval.strip("[]").split(", "))
    assert diff.startswith("+") and interval.startswith("[+")
    claims = (REPO / "results" / "README.md").read_text()
    assert f"linear - relu6 = {float(diff):+.2f} points [{low:+.2f}, {high:+.2f}]" in claims


def test_a_kind_table_cut_to_a_page_links_the_file_that_holds_every_row(tmp_path):
    """A kind's per-run table longer than a page is cut in report.md, and the note names a file that holds
    every row (not summary.csv, which holds grid points, not the kind's rows)."""
    from dataclasses import replace

    from test_attacks_reading import forge

    from manifold_lab.kinds import ReportItem
    from manifold_lab.reporting import report as report_module

    rows = [f"| run {i} | {i * i} |" for i in range(report_module._KIND_TABLE_ROWS + 6)]
    table = "\n".join(["| run | value |", "|---|---|", *rows])
    kind = replace(KIND, report=lambda ctx: [ReportItem(title="Every run: its value", markdown=table)])
    root = forge(tmp_path / "r", ["relu"])
    write_report(root, kind=kind)
    text = (root / "report.md").read_text()
    assert rows[report_module._KIND_TABLE_ROWS - 1] in text and rows[report_module._KIND_TABLE_ROWS] not in text
    assert "(6 more rows: the whole table in [tables/every-run-its-value.md](tables/every-run-its-value.md))" in text
    whole = (root / "tables" / "every-run-its-value.md").read_text()
    assert all(row in whole.splitlines() for row in rows)
    # a table within a page is not cut and writes no file
    short = replace(KIND, report=lambda ctx: [ReportItem(title="Short", markdown="\n".join(table.splitlines()[:5]))])
    write_report(tmp_path / "r", kind=short)
    assert "more rows" not in (root / "report.md").read_text() and not (root / "tables" / "short.md").exists()
