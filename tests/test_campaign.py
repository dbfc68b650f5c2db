"""``manifold-lab campaign``: a suite's experiments within a wall time, stopped cleanly, continued later."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
from pathlib import Path

import pytest

from manifold_lab.cli import main
from manifold_lab.execution import campaign, gates
from manifold_lab.execution.campaign import parse_duration, stop_reason

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text, seconds", [("50m", 3000), ("90s", 90), ("2h", 7200), ("1h30m", 5400),
                                           ("0.5m", 30)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


#: experiment A trains on 5 and tests on 3 digits per class (batches of 25); B keeps all the digits: its
#: epochs must outlast the watcher's poll (POLL_S) for the stop at its first epoch boundary
TINY_DATA = "{subset: 5, eval_subset: 3, batch_size: 25}"
TINY_TRAIN = "{relu_stats_images: 10, clean_train_images: 10}"


def write_campaign(tmp_path: Path, epochs_b: int = 1, sweep_a: str = "model.bottleneck_act: [identity]",
                   gates: str = "") -> Path:
    """Experiments A (``sweep_a``) and B in a campaign file; ``gates``: its ``gates:`` value, if any."""
    (tmp_path / "a.yaml").write_text(f"include: [{ROOT}/experiments/smoke/figure6a.yaml]\nname: camp_a\n"
                                     f"params: {{data: {TINY_DATA}, train: {TINY_TRAIN}}}\n"
                                     f"sweep: {{{sweep_a}}}\ncontrast: null\n")
    (tmp_path / "b.yaml").write_text(f"include: [{ROOT}/experiments/smoke/figure6b.yaml]\nname: camp_b\n"
                                     f"params: {{train: {{epochs: {epochs_b}}}}}\n"
                                     "sweep: {model.shortcut: [sandglass]}\ncontrast: null\n")
    path = tmp_path / "camp.yaml"
    path.write_text("name: camp\ndescription: two tiny experiments\nsuite: [a.yaml, b.yaml]\n"
                    + (f"gates: {gates}\n" if gates else ""))
    return path


def exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own errors
        return exc.code


@pytest.mark.parametrize("argv, message", [
    (["nope.yaml", "--stop-after", "5m"], "campaign file nope.yaml does not exist"),
    (["experiments/figure6a_linear_bottleneck_cifar10.yaml", "--stop-after", "5m"], "is not a campaign"),
    (["experiments/quickstart.yaml", "--stop-after", "5x"], "expected a duration like 50m, 90s, 2h or 1h30m"),
    (["experiments/quickstart.yaml", "--stop-after", "0m"], "must be longer than 0 s"),
    (["experiments/quickstart.yaml"], "the following arguments are required: --stop-after"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert exit_code(["campaign", *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err
    assert not (tmp_path / "out").exists()


def test_stop_rule_at_epoch_boundaries():
    # every member has checkpointed epoch 2 of 5; the last epoch took 40 s, so the next needs 50 s
    assert stop_reason([[40.0, 40.0], [40.0, 40.0]], 5, left=60) is None
    assert "stopped after epoch 2 of 5" in stop_reason([[40.0, 40.0], [40.0, 40.0]], 5, left=45)
    assert stop_reason([[40.0, 40.0], [40.0]], 5, left=45) is None  # a member is mid-save: not a boundary
    assert stop_reason([[40.0] * 5], 5, left=1) is None  # the last epoch is done: the run finishes
    assert "wall time ran out" in stop_reason([[40.0]], 5, left=0)


def test_throughput_table_is_the_committed_measurements():
    bench = ROOT / "benchmarks" / "results"
    pilot = json.loads((bench / "gpu_pilot" / "pilot.json").read_text())
    assert len(pilot["seeds"]) == 8 and campaign.THROUGHPUT["cuda"][8] == pytest.approx(
        pilot["images_per_s_per_network"], rel=1e-4)
    stacks = json.loads((bench / "gpu_check" / "throughput_stacks.json").read_text())["throughput"]["variants"]
    for k, rate in campaign.THROUGHPUT["cuda"].items():
        ratio = stacks[f"stack_{k}_eager"]["images_per_s_per_network"] / stacks["stack_8_eager"]["images_per_s_per_network"]
        assert rate / campaign.THROUGHPUT["cuda"][8] == pytest.approx(ratio, rel=2e-3)
    base = json.loads((bench / "cifar_budget.json").read_text())["arms"]["baseline"]
    assert campaign.THROUGHPUT["cpu"][1] == pytest.approx(base["runs_per_hour"] * 5 * 10000 / 3600, rel=1e-3)
    batch = json.loads((bench / "cifar_budget_batch.json").read_text())["arms"]["batch2"]
    assert campaign.THROUGHPUT["cpu"][2] == pytest.approx(batch["runs_per_hour"] * 20 * 10000 / 3600 / 2, rel=1e-3)


def _rows(md: str) -> dict[str, list[str]]:
    return {cells[0]: cells[1:] for line in md.splitlines() if line.startswith("| [camp_")
            for cells in [[c.strip() for c in line.strip("|").split("|")]]}


@pytest.mark.slow
def test_campaign_stops_and_continues(tmp_path, monkeypatch, capsys):
    """Three invocations: the first stops after experiment A (B's estimate does not fit), the second starts B
    and stops it at its first epoch boundary, the third resumes B from its checkpoint and completes."""
    path, out = write_campaign(tmp_path, epochs_b=3), tmp_path / "out"
    # estimates on this machine's measured images/s are noise for digits; fix them: one epoch of B is
    # 100 s (A's, on fewer digits, less), and no overhead
    smoke = {"data": {"name": "digits", "subset": None, "eval_subset": None}, "train": {"clean_train_images": 50}}
    rate = campaign.epoch_images(smoke) / 100
    monkeypatch.setattr(campaign, "THROUGHPUT", {"cpu": {1: rate}, "cuda": {1: rate}})
    monkeypatch.setattr(campaign, "GROUP_OVERHEAD_S", 0.0)
    # 1: A (100 s) fits in 10 min - 30 s; B (300 s) does not fit in what is left but fits in 10 min: not started
    monkeypatch.setattr(campaign, "MARGIN_S", 330.0)
    assert main(["campaign", str(path), "--stop-after", "10m", "--out", str(out)]) == 0
    md = (out / "campaign.md").read_text()
    assert "stopped before camp_b run 0" in capsys.readouterr().out
    assert _rows(md)["[camp_a](camp_a/report.md)"][1:4] == ["1", "1", "0"]
    assert _rows(md)["[camp_b](camp_b/report.md)"][1:4] == ["1", "0", "1"]
    assert not (out / "camp_b" / "runs").exists() or not any((out / "camp_b" / "runs").iterdir())
    # 2: B starts; after its first epoch the next one is taken to need far more than is left: stopped there
    monkeypatch.setattr(campaign, "MARGIN_S", 30.0)
    monkeypatch.setattr(campaign, "EPOCH_SAFETY", 1e9)
    # started in the background without job control (`... &` in a script): SIGINT inherited ignored, which the
    # watcher's stop must not depend on; the ignored disposition is back afterwards
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert main(["campaign", str(path), "--stop-after", "30m", "--out", str(out)]) == 0
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert "stopped after epoch 1 of 3" in capsys.readouterr().out
    (run_dir,) = (out / "camp_b" / "runs").iterdir()
    first = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(first) == 1 and (run_dir / "checkpoint.pt").is_file() and not (run_dir / "metrics.json").exists()
    md = (out / "campaign.md").read_text()
    assert _rows(md)["[camp_b](camp_b/report.md)"][1:4] == ["1", "0", "1"] and "(1/3 epochs)" in md
    # 3: resumed from the checkpoint: epoch 1 is not trained again
    monkeypatch.setattr(campaign, "EPOCH_SAFETY", 1.25)
    assert main(["campaign", str(path), "--stop-after", "30m", "--out", str(out)]) == 0
    assert "complete" in capsys.readouterr().out
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3 and lines[0] == first[0] and (run_dir / "metrics.json").is_file()
    md = (out / "campaign.md").read_text()
    assert _rows(md)["[camp_a](camp_a/report.md)"][1:4] == ["1", "1", "0"]
    assert _rows(md)["[camp_b](camp_b/report.md)"][1:4] == ["1", "1", "0"]
    ledger = json.loads((out / "campaign.json").read_text())["invocations"]
    assert [len(i["groups"]) for i in ledger] == [1, 1, 1]
    outcomes = [g["outcome"] for i in ledger for g in i["groups"]]
    assert outcomes[0] == outcomes[2] == "done" and outcomes[1].startswith("stopped after epoch 1 of 3")
    spent_b = float(_rows(md)["[camp_b](camp_b/report.md)"][5])
    assert spent_b == pytest.approx(sum(json.loads(x)["seconds"] for x in lines) / 60, abs=0.051)


# --------------------------------------------------------------------------- gates
#: part A has two arms of two seeds; the gate's arm (identity) is the pilot
TWO_ARMS = "model.bottleneck_act: [identity, relu6], seeds: [0, 1]"
GATE = "{after: camp_a, arm: {model.bottleneck_act: identity}, metric: test_acc, at_least: %s, why: 'revise the recipe | a pipe'}"
GATE_B = "{after: camp_b, arm: {model.shortcut: sandglass}, metric: test_acc, at_least: 0}"


@pytest.mark.parametrize("gates, message", [
    ("{after: camp_a}", "'gates' must be a list of mappings {after, arm, metric, at_least, why}"),
    ("[{after: nope, arm: {model.bottleneck_act: identity}, metric: test_acc, at_least: 0.9}]",
     "gates[0].after must be the name of one of the suite's parts (camp_a, camp_b), got 'nope'"),
    ("[{after: camp_a, arm: {}, metric: test_acc, at_least: 0.9}]", "gates[0].arm must be a non-empty mapping"),
    ("[{after: camp_a, arm: identity, metric: test_acc, at_least: 0.9}]", "gates[0].arm must be a non-empty mapping"),
    ("[{after: camp_a, arm: {model.bottleneck: identity}, metric: test_acc, at_least: 0.9}]",
     "camp_a has no parameter 'model.bottleneck' (did you mean 'model.bottleneck_act'?)"),
    ("[{after: camp_a, arm: {modle.bottleneck_act: identity}, metric: test_acc, at_least: 0.9}]",
     "camp_a has no parameter 'modle.bottleneck_act' (did you mean 'model'?); valid there: model, data, optim"),
    ("[{after: camp_a, arm: {model.bottleneck_act: relu}, metric: test_acc, at_least: 0.9}]",
     "arm model.bottleneck_act=relu matches none of camp_a's 4 planned runs (their values: "
     "model.bottleneck_act: identity, relu6)"),
    ("[{after: camp_a, arm: {model.bottleneck_act: identity}, metric: '', at_least: 0.9}]",
     "gates[0].metric must be a non-empty string"),
    ("[{after: camp_a, arm: {model.bottleneck_act: identity}, metric: test_acc, at_least: .inf}]",
     "gates[0].at_least must be a finite number, got inf"),
    ("[{after: camp_a, arm: {model.bottleneck_act: identity}, metric: test_acc, at_least: high}]",
     "gates[0].at_least must be a finite number, got 'high'"),
    ("[{after: camp_a, arm: {model.bottleneck_act: identity}, metric: test_acc, at_leats: 0.9}]",
     "gates[0]: unknown key 'at_leats' (did you mean 'at_least'?); a gate has after, arm, metric, at_least, why"),
    ("[{after: camp_a, arm: {model.bottleneck_act: identity}, at_least: 0.9}]", "gates[0] needs after, arm, metric, "
     "at_least (why optional); missing: metric"),
    ("[{after: camp_a, arm: {model.bottleneck_act: identity}, metric: test_acc, at_least: 0.9, why: [a]}]",
     "gates[0].why must be text"),
])
def test_bad_gate_is_one_line_and_exit_2(gates, message, capsys, tmp_path):
    path = write_campaign(tmp_path, sweep_a=TWO_ARMS, gates=gates)
    assert exit_code(["campaign", str(path), "--stop-after", "5m", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and "camp.yaml" in err
    assert not (tmp_path / "out").exists()


def test_gate_state_on_constructed_runs(tmp_path):
    from manifold_lab.execution.store import ResultsStore
    from manifold_lab.spec.suite import load_suite
    from manifold_lab.spec.sweep import plan

    suite = load_suite(write_campaign(tmp_path, sweep_a=TWO_ARMS, gates=f"[{GATE % 0.5}]"))
    (gate,), spec, out = suite.gates, suite.parts[0], tmp_path / "out" / "camp_a"
    assert gate.arm == (("model.bottleneck_act", "identity"),) and gate.why == "revise the recipe | a pipe"
    pilot = [r for r in plan(spec) if r.params["model"]["bottleneck_act"] == "identity"]
    other = [r for r in plan(spec) if r not in pilot]
    assert [r.seed for r in pilot] == [0, 1] and len(other) == 2
    store = ResultsStore(out)

    def finish(run, status, metrics):
        store.begin(run.run_id, {})
        store.finish(run.run_id, status, metrics, None if status == "done" else "boom", 1.0)

    def state():
        return gates.gate_state(gate, spec, out)

    assert (state().state, state().done, state().total) == ("pending", 0, 2)
    assert state().run_ids == {r.run_id for r in pilot}
    for run in other:  # the other arm's runs do not count
        finish(run, "done", {"test_acc": 0.0})
    finish(pilot[0], "done", {"test_acc": 0.4})
    finish(pilot[1], "failed", {})  # an error: retried by the next invocation, the gate waits
    assert (state().state, state().done) == ("pending", 1)
    assert gates.gate_line(gate, state()) == ("waiting at the gate after camp_a: 1 of 2 runs of "
                                                 "model.bottleneck_act=identity done")
    finish(pilot[1], "diverged", {})  # the recipe's failure: the gate fails
    assert (state().state, state().problem) == ("failed", "1 of 2 runs diverged")
    finish(pilot[1], "done", {"test_acc": 0.5})
    assert (state().state, state().mean) == ("failed", pytest.approx(0.45))
    assert gates.gate_line(gate, state()) == ("stopped at the gate after camp_a: model.bottleneck_act=identity "
                                                 "mean test_acc 0.4500 < 0.5 over 2 runs; revise the recipe | a pipe")
    finish(pilot[1], "done", {"test_acc": 0.6})
    assert (state().state, state().mean) == ("passed", pytest.approx(0.5))
    finish(pilot[1], "done", {"accuracy": 0.6})  # the metric is missing: no mean, failed
    assert state().state == "failed" and "has no number test_acc (its numbers: accuracy)" in state().problem


def stop_at_the_gate(tmp_path: Path, capsys) -> tuple[Path, Path, float]:
    """The pilot (A's identity arm, its 2 seeds trained together) trains; no accuracy reaches 1.01: the campaign
    stops at the gate (status 1) before A's relu6 arm and B, and again at once the next time. Returns the campaign
    file, its folder and the pilot's mean test accuracy (from the runs' metrics.json)."""
    path, out = write_campaign(tmp_path, sweep_a=TWO_ARMS, gates=f"[{GATE % 1.01}]"), tmp_path / "out"
    argv = ["campaign", str(path), "--stop-after", "10m", "--out", str(out), "--batch-runs", "2"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    printed = captured.out
    # the progress counts this invocation's runs: the pilot's 2, not the 2 left for later as "complete"
    assert "camp_a: 2 of 2 runs to do (0 already complete)" in captured.err
    runs = {d.name: json.loads((d / "metrics.json").read_text()) for d in (out / "camp_a" / "runs").iterdir()}
    plan_a = json.loads((out / "camp_a" / "plan.json").read_text())["runs"]
    assert set(runs) == {r["run_id"] for r in plan_a if r["params"]["model"]["bottleneck_act"] == "identity"}
    assert not (out / "camp_b" / "runs").exists() or not any((out / "camp_b" / "runs").iterdir())
    mean = sum(m["test_acc"] for m in runs.values()) / 2
    line = f"stopped at the gate after camp_a: model.bottleneck_act=identity mean test_acc {mean:.4f} < 1.01 over 2 runs"
    assert f"{line}; revise the recipe" in printed
    md = (out / "campaign.md").read_text()
    assert (f"model.bottleneck_act=identity, mean test_acc >= 1.01 over its 2 runs: **failed**, mean test_acc "
            f"{mean:.4f} over 2 runs. Why: revise the recipe") in md.split("## Gates")[1].split("## Invocations")[0]
    invocations = md.split("## Invocations")[1].split("## Throughput")[0]
    assert line in invocations and "revise the recipe \\| a pipe" in invocations
    # a pipe in the why stays in its cell: every row of the table has the header's 7 cells
    assert {len(re.split(r"(?<!\\)\|", row)) - 2 for row in invocations.splitlines() if row.startswith("|")} == {7}
    assert _rows(md)["[camp_a](camp_a/report.md)"][1:4] == ["4", "2", "2"]
    # the next invocation: nothing starts, the same line
    assert main(argv) == 1
    assert line in capsys.readouterr().out and len(list((out / "camp_a" / "runs").iterdir())) == 2
    return path, out, mean


def test_campaign_stops_at_a_failing_gate(tmp_path, capsys):
    stop_at_the_gate(tmp_path, capsys)


@pytest.mark.slow
def test_campaign_passes_a_lowered_gate(tmp_path, capsys):
    """After the stop, the gate lowered to 0: the next invocation passes it and completes everything."""
    path, out, mean = stop_at_the_gate(tmp_path, capsys)
    write_campaign(tmp_path, sweep_a=TWO_ARMS, gates=f"[{GATE % 0.0}]")
    assert main(["campaign", str(path), "--stop-after", "10m", "--out", str(out), "--batch-runs", "2"]) == 0
    assert "complete: every run of every experiment is done" in capsys.readouterr().out
    md = (out / "campaign.md").read_text()
    assert _rows(md)["[camp_a](camp_a/report.md)"][1:4] == ["4", "4", "0"]
    assert _rows(md)["[camp_b](camp_b/report.md)"][1:4] == ["1", "1", "0"]
    assert f"mean test_acc >= 0 over its 2 runs: **passed**, mean test_acc {mean:.4f} over 2 runs" in md


# --------------------------------------------------------------------------- gates in `manifold-lab run SUITE`
def test_run_suite_trains_the_pilot_first_then_stops_at_a_failing_gate(tmp_path, capsys):
    """`manifold-lab run` of the suite honours its gates as the campaign does: the pilot's 2 runs alone, then
    the stop line (exit status 1) before A's relu6 arm and B (B's folder untouched, though B has a gate of its
    own); lowered to 0, the next call runs the rest."""
    path, out = write_campaign(tmp_path, sweep_a=TWO_ARMS, gates=f"[{GATE % 1.01}, {GATE_B}]"), tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "camp_a: 4 runs: 2 done, 0 skipped, 0 failed, 2 left for later" in printed
    plan_a = json.loads((out / "camp_a" / "plan.json").read_text())["runs"]
    pilot = {r["run_id"] for r in plan_a if r["params"]["model"]["bottleneck_act"] == "identity"}
    assert {d.name for d in (out / "camp_a" / "runs").iterdir()} == pilot
    assert not (out / "camp_b").exists()
    assert re.search(r"camp_a: stopped at the gate after camp_a: model.bottleneck_act=identity mean test_acc "
                     r"0\.\d{4} < 1.01 over 2 runs; revise the recipe", printed)
    write_campaign(tmp_path, sweep_a=TWO_ARMS, gates=f"[{GATE % 0.0}, {GATE_B}]")
    assert main(["run", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "camp_a: 4 runs: 2 done, 2 skipped, 0 failed" in printed and "camp_b: 1 runs: 1 done" in printed


@pytest.mark.slow
def test_run_suite_passes_a_gate_in_one_call(tmp_path, capsys):
    """A gate at 0: one call trains the pilot, finds the gate passed, then the rest of A and B; with --force too,
    and the pilot's runs are trained once, not again with the rest; a second call finds everything done."""
    path, out = write_campaign(tmp_path, sweep_a=TWO_ARMS, gates=f"[{GATE % 0.0}]"), tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--force"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("camp_")]
    assert lines == ["camp_a: 4 runs: 2 done, 0 skipped, 0 failed, 2 left for later",
                     "camp_a: 4 runs: 2 done, 2 skipped, 0 failed", "camp_b: 1 runs: 1 done, 0 skipped, 0 failed"]
    assert main(["run", str(path), "--out", str(out)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("camp_")]
    assert lines == ["camp_a: 4 runs: 0 done, 4 skipped, 0 failed", "camp_b: 1 runs: 0 done, 1 skipped, 0 failed"]


def test_run_suite_through_slurm_submits_only_the_pilot_until_its_gate_is_passed(tmp_path, capsys, monkeypatch):
    """--launcher slurm (a fake sbatch): the first call submits the pilot's 2 runs as one array and nothing of A's
    relu6 arm or of B, and says it waits at the gate (exit status 0)."""
    from test_launch import fake_slurm

    bin_dir = fake_slurm(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    path, out = write_campaign(tmp_path, sweep_a=TWO_ARMS, gates=f"[{GATE % 0.5}]"), tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--launcher", "slurm"]) == 0
    printed = capsys.readouterr().out
    assert "camp_a: 4 runs: 2 submitted, 0 already done, 2 left for later" in printed
    assert "camp_b: waiting at the gate after camp_a: 0 of 2 runs of model.bottleneck_act=identity done" in printed
    assert sorted(p.name for p in bin_dir.glob("sbatch.*.sh")) == ["sbatch.4242.sh"]
    assert "#SBATCH --array=0-1" in (bin_dir / "sbatch.4242.sh").read_text()
    submitted = [json.loads(line) for line in (out / "camp_a" / "submitit" / "submissions.jsonl").read_text()
                 .splitlines()]
    plan_a = json.loads((out / "camp_a" / "plan.json").read_text())["runs"]
    pilot = {r["run_id"] for r in plan_a if r["params"]["model"]["bottleneck_act"] == "identity"}
    assert [{run_id for _, run_id in s["runs"]} for s in submitted] == [pilot]
    assert not (out / "camp_b").exists()


# --------------------------------------------------------------------------- accounting on constructed runs
def write_reuse_campaign(tmp_path: Path, gates: str = "") -> Path:
    """Experiment A (the identity arm, seeds 0 and 1) and B (identity and relu6, seeds 0 and 1, ``reuse:
    [camp_a]``): B's identity runs are A's runs (the same ids), copied, never trained by B. 4 epochs each."""
    (tmp_path / "a.yaml").write_text(f"include: [{ROOT}/experiments/smoke/figure6a.yaml]\nname: camp_a\n"
                                     f"params: {{data: {TINY_DATA}, train: {{epochs: 4, relu_stats_images: 10, "
                                     "clean_train_images: 10}}\n"
                                     "sweep: {model.bottleneck_act: [identity], seeds: [0, 1]}\ncontrast: null\n")
    (tmp_path / "b.yaml").write_text("include: [a.yaml]\nname: camp_b\nreuse: [camp_a]\n"
                                     "sweep: {model.bottleneck_act: [identity, relu6], seeds: [0, 1]}\n")
    path = tmp_path / "camp.yaml"
    path.write_text("name: camp\ndescription: B reuses A's runs\nsuite: [a.yaml, b.yaml]\n"
                    + (f"gates: {gates}\n" if gates else ""))
    return path


def fixed_epochs(monkeypatch, params: dict, seconds: float = 100.0) -> None:
    """Estimates of ``seconds`` per epoch of a run with ``params`` on any device, no group overhead."""
    rate = campaign.epoch_images(params) / seconds
    monkeypatch.setattr(campaign, "THROUGHPUT", {"cpu": {1: rate}, "cuda": {1: rate}})
    monkeypatch.setattr(campaign, "GROUP_OVERHEAD_S", 0.0)


def construct_run(folder: Path, run, seconds: list[float], *, complete: bool = False, checkpoint: bool = False,
                  provenance: dict | None = None) -> Path:
    """A run folder as training leaves it: ``metrics.jsonl`` with an epoch's ``seconds`` a line, ``checkpoint.pt``
    if asked, ``provenance.json`` if given; complete (status done, ``metrics.json``) or still ``running``."""
    from manifold_lab.execution.store import ResultsStore

    store = ResultsStore(folder)
    run_dir = store.begin(run.run_id, {})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps({"epoch": i + 1, "test_acc": 0.5, "seconds": s}) + "\n"
                                                   for i, s in enumerate(seconds)))
    if checkpoint:
        (run_dir / "checkpoint.pt").write_bytes(b"constructed")
    if provenance is not None:
        (run_dir / "provenance.json").write_text(json.dumps(provenance))
    if complete:
        store.finish(run.run_id, "done", {"test_acc": 0.5, "epochs": len(seconds)}, None, sum(seconds))
    return run_dir


def dry_run(path: Path, out: Path, capsys, *extra: str) -> str:
    assert main(["campaign", str(path), "--stop-after", "10m", "--out", str(out), "--batch-runs", "1", "--dry-run",
                 *extra]) == 0
    printed = capsys.readouterr().out
    assert not out.exists() or not (out / "campaign.md").exists()  # a dry run writes nothing
    return printed


def part_plans(path: Path):
    from manifold_lab.spec.suite import load_suite
    from manifold_lab.spec.sweep import plan

    suite = load_suite(path)
    return [plan(spec) for spec in suite.parts]


def test_reused_runs_are_done_or_the_source_parts_not_estimated_twice(tmp_path, monkeypatch, capsys):
    """B's identity runs are A's: before A trains them they are remaining and estimated in A only (B: reused,
    neither done nor remaining); once A holds one complete it is done in B too (copied later, never trained);
    a copy in B's folder spends nothing in B. Estimates: 100 s an epoch, 4 epochs a run."""
    path, out = write_reuse_campaign(tmp_path), tmp_path / "out"
    plan_a, plan_b = part_plans(path)
    assert [r.run_id for r in plan_b[:2]] == [r.run_id for r in plan_a]  # the same runs
    fixed_epochs(monkeypatch, plan_a[0].params)
    rows = _rows(dry_run(path, out, capsys))
    # experiment: runs together, planned, done, remaining, reused, min spent, min estimated
    assert rows["[camp_a](camp_a/report.md)"] == ["1", "2", "0", "2", "0", "0.0", "13.3"]
    assert rows["[camp_b](camp_b/report.md)"] == ["1", "4", "0", "2", "2", "0.0", "13.3"]
    # A: seed 0 complete (4 epochs of 60 s), seed 1 checkpointed after 2 epochs (60 s each); B: relu6 seed 0
    # complete (4 epochs of 30 s), relu6 seed 1 not started
    construct_run(out / "camp_a", plan_a[0], [60.0] * 4, complete=True, checkpoint=True)
    construct_run(out / "camp_a", plan_a[1], [60.0] * 2, checkpoint=True)
    construct_run(out / "camp_b", plan_b[2], [30.0] * 4, complete=True, checkpoint=True)
    printed = dry_run(path, out, capsys)
    rows = _rows(printed)
    assert rows["[camp_a](camp_a/report.md)"] == ["1", "2", "1", "1", "0", "6.0", "3.3"]
    assert rows["[camp_b](camp_b/report.md)"] == ["1", "4", "2", "1", "2", "2.0", "6.7"]
    assert (f"- camp_b, reused from camp_a (trained and estimated there, copied here once complete): "
            f"1 `{plan_a[1].run_id}`\n") in printed
    assert f"- camp_b: 3 `{plan_b[3].run_id}` (0/4 epochs)\n" in printed
    # the runner's copy of A's seed 0 into B (its metrics.jsonl too) spends nothing in B
    from manifold_lab.execution.store import ResultsStore

    assert ResultsStore(out / "camp_b").copy_run_from(ResultsStore(out / "camp_a"), plan_a[0].run_id)
    printed = dry_run(path, out, capsys)
    assert _rows(printed)["[camp_b](camp_b/report.md)"] == ["1", "4", "2", "1", "2", "2.0", "6.7"]
    # the totals count each run trained once: 2 remaining, 10 min estimated
    assert "| total | | 6 | 3 | 2 | 2 | 8.0 | 10.0 |" in printed


def test_spent_comes_from_the_records_without_checkpoints(tmp_path, monkeypatch, capsys):
    """A committed campaign folder has no checkpoint.pt (git-ignored; a lent machine starts bare): device minutes
    spent come from metrics.jsonl (metrics.json without it) all the same; a run with epochs but no checkpoint is
    said to restart from epoch 0, its epochs estimated again, and once its group starts the ledger keeps their
    minutes (``lost``), so that they stay spent after the restart rewrote metrics.jsonl. 100 s an epoch."""
    path, out = write_reuse_campaign(tmp_path), tmp_path / "out"
    plan_a, plan_b = part_plans(path)
    fixed_epochs(monkeypatch, plan_a[0].params)
    # A: seed 0 stopped after 3 epochs of 60 s, seed 1 complete (4 of 30 s); B: relu6 seed 0 complete with a
    # metrics.json and no metrics.jsonl (4 epochs at 50/30 images/s of its 50 training images: 30 s each)
    first = construct_run(out / "camp_a", plan_a[0], [60.0] * 3)
    construct_run(out / "camp_a", plan_a[1], [30.0] * 4, complete=True)
    from manifold_lab.execution.store import ResultsStore

    b_run = ResultsStore(out / "camp_b").begin(plan_b[2].run_id, {})
    ResultsStore(out / "camp_b").finish(plan_b[2].run_id, "done", {"epochs": 4, "images_per_s": 50 / 30}, None, 1.0)
    assert not list(out.rglob("*.pt")) and not (b_run / "metrics.jsonl").exists()
    printed = dry_run(path, out, capsys)
    rows = _rows(printed)
    # A spent 3 x 60 + 4 x 30 s = 5.0 min; its seed 0 restarts: 4 epochs estimated, not 1
    assert rows["[camp_a](camp_a/report.md)"] == ["1", "2", "1", "1", "0", "5.0", "6.7"]
    assert rows["[camp_b](camp_b/report.md)"] == ["1", "4", "2", "1", "2", "2.0", "6.7"]
    assert (f"- camp_a: 0 `{plan_a[0].run_id}` (3/4 epochs in metrics.jsonl, no checkpoint: restarts from "
            "epoch 0)\n") in printed
    assert ("1 remaining run(s) have epochs in metrics.jsonl but no checkpoint.pt (checkpoints are not committed, "
            "and a lent machine starts bare): they restart from epoch 0. The device minutes of those epochs stay "
            "counted as spent and are counted again in the estimate.") in printed
    old = (first / "metrics.jsonl").read_bytes()

    # an invocation of 10 min whose training is faked (4 epochs of 50 s, taking 400 s of the clock): A's seed 0
    # starts again from epoch 0; B's identity runs are copied from A, its relu6 seed 1 (400 s) no longer fits
    from manifold_lab.execution.runner import RunSummary, pending_runs, reuse_sources
    from manifold_lab.spec.sweep import plan

    now = [0.0]

    def fake_run_experiment(spec, *, out, batch_runs, report, select):  # the runner's copies, faked training
        store = ResultsStore(out)
        group = select(pending_runs(store, plan(spec), False, RunSummary(), reuse_sources(spec, store.root)))
        for r in group:
            construct_run(out, r, [50.0] * 4, complete=True, checkpoint=True)
            now[0] += 400.0
        return RunSummary(planned=len(group), done=len(group))

    monkeypatch.setattr(campaign, "run_experiment", fake_run_experiment)
    status, line = campaign.run_campaign(path, 600, report=None, out=out, batch_runs=1, clock=lambda: now[0])
    assert status == 0 and "stopped before camp_b run 3" in line
    (call,) = json.loads((out / "campaign.json").read_text())["invocations"]
    assert call["groups"] == [{"experiment": "camp_a", "run_ids": [plan_a[0].run_id], "estimated_min": 6.67,
                               "wall_min": call["groups"][0]["wall_min"], "outcome": "done",
                               "lost": {plan_a[0].run_id: {"epochs": 3, "device_s": 180.0,
                                                           "jsonl_sha256": hashlib.sha256(old).hexdigest()[:16]}}}]
    md = (out / "campaign.md").read_text()
    # A spent: the 3 lost epochs (180 s), the 4 trained again (200 s) and seed 1's (120 s): 500 s
    assert _rows(md)["[camp_a](camp_a/report.md)"] == ["1", "2", "2", "0", "0", "8.3", "0.0"]
    assert _rows(md)["[camp_b](camp_b/report.md)"] == ["1", "4", "3", "1", "2", "2.0", "6.7"]  # the copies spent 0
    assert "restart" not in md.split("## Gates")[0].split("## Invocations")[0]


# --------------------------------------------------------------------------- one device and one torch version
H200, H100 = "NVIDIA H200", "NVIDIA H100 80GB HBM3"


def on_device(monkeypatch, name: str, torch_version: str) -> None:
    monkeypatch.setattr(campaign, "_device", lambda: ("cuda", name, torch_version))


def provenance_on(name: str, torch_version: str) -> dict:
    """A run's provenance.json (manifold_lab.execution.provenance.collect) on a GPU, the fields that matter."""
    return {"packages": {"torch": torch_version}, "cpu": "AMD EPYC 7B13", "device": "cuda", "gpu": name,
            "batch": {"size": 1}}


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(path: Path, out: Path, capsys, *extra: str) -> str:
    """The one line of a refusal (exit status 2), without its ``manifold-lab campaign: error: ``; nothing in
    ``out`` changed. ``refused.printed``: what it printed on stdout."""
    before = files_under(out)
    assert exit_code(["campaign", str(path), "--stop-after", "10m", "--out", str(out), "--batch-runs", "1",
                      *extra]) == 2
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1 and files_under(out) == before
    refused.printed = captured.out
    return captured.err.strip().removeprefix("manifold-lab campaign: error: ")


def test_a_started_study_stays_on_its_device_and_torch(tmp_path, monkeypatch, capsys):
    """A's seed 1 completed on an H200 with torch 2.3.1 (its provenance.json) and its seed 0 was stopped there
    after 2 epochs (no provenance yet: the ledger's group names it); on an H100, or with torch 2.4.0, the
    campaign refuses to continue A before anything is trained or written; --dry-run shows it and refuses too.
    B reuses A's runs: it is refused too once A is done (the study holds A's runs)."""
    path, out = write_reuse_campaign(tmp_path), tmp_path / "out"
    plan_a, plan_b = part_plans(path)
    construct_run(out / "camp_a", plan_a[1], [30.0] * 4, complete=True, provenance=provenance_on(H200, "2.3.1"))
    construct_run(out / "camp_a", plan_a[0], [30.0] * 2)
    ledger = {"invocations": [{"started": "2025-01-01T10:00:00", "device": H200, "torch": "2.3.1",
                               "stop_after_min": 12.0, "outcome": "camp_a: stopped after epoch 2 of 4",
                               "groups": [{"experiment": "camp_a", "run_ids": [plan_a[0].run_id],
                                           "estimated_min": 2.0, "wall_min": 1.0, "outcome": "stopped"}]}]}
    (out / "campaign.json").write_text(json.dumps(ledger))
    where = f"camp_a in {out}"
    on_device(monkeypatch, H100, "2.3.1")
    assert refused(path, out, capsys) == (
        f"{where} has epochs of 2 run(s) trained on NVIDIA H200 with torch 2.3.1, "
        "and this is NVIDIA H100 80GB HBM3 with torch 2.3.1: a study stays on one device and one torch version; run "
        "the campaign on NVIDIA H200 with torch 2.3.1, or give a different --out")
    assert refused.printed == ""  # nothing trained: nothing printed before the line
    line = refused(path, out, capsys, "--dry-run")  # the same line, after campaign.md with it
    assert line.startswith(f"{where} has epochs of 2 run(s) trained on NVIDIA H200 with torch 2.3.1, and this is "
                           "NVIDIA H100")
    assert refused.printed.startswith(f"# Campaign camp\n\n**Refused on this device**: {line}.\n\n")
    assert _rows(refused.printed)["[camp_a](camp_a/report.md)"][1:4] == ["2", "1", "1"]
    # the ledger alone (seed 1's provenance gone) still names the device: 1 run
    (out / "camp_a" / "runs" / plan_a[1].run_id / "provenance.json").unlink()
    assert f"{where} has epochs of 1 run(s) trained on NVIDIA H200 with torch 2.3.1" in refused(path, out, capsys)
    # the same GPU with another torch
    (out / "camp_a" / "runs" / plan_a[1].run_id / "provenance.json").write_text(
        json.dumps(provenance_on(H200, "2.3.1")))
    on_device(monkeypatch, H200, "2.4.0")
    assert refused(path, out, capsys).endswith(
        "has epochs of 2 run(s) trained on NVIDIA H200 with torch 2.3.1, and this is NVIDIA H200 with torch 2.4.0: a "
        "study stays on one device and one torch version; run the campaign on NVIDIA H200 with torch 2.3.1, or give "
        "a different --out")
    # where it started: no refusal
    on_device(monkeypatch, H200, "2.3.1")
    fixed_epochs(monkeypatch, plan_a[0].params)
    assert "| 1 | 2025-01-01T10:00:00 | NVIDIA H200, torch 2.3.1 | 12.0 | 1 | 1.00 |" in dry_run(path, out, capsys)
    # A complete on the H200: B, which holds A's runs (reused), stays there too
    construct_run(out / "camp_a", plan_a[0], [30.0] * 4, complete=True, provenance=provenance_on(H200, "2.3.1"))
    on_device(monkeypatch, H100, "2.3.1")
    assert refused(path, out, capsys) == (
        f"camp_b in {out} has epochs of 2 run(s) (2 of them reused) trained on NVIDIA "
        "H200 with torch 2.3.1, and this is NVIDIA H100 80GB HBM3 with torch 2.3.1: a study stays on one device and "
        "one torch version; run the campaign on NVIDIA H200 with torch 2.3.1, or give a different --out")


def test_a_study_reusing_runs_outside_the_campaign_folder_is_not_told_to_change_out(tmp_path, monkeypatch, capsys):
    """B reuses a folder outside the campaign's (as the converged studies reuse the committed
    results/converged_campaign/figure6a_converged_cifar10, whatever --out says): once that folder's runs are
    complete on an H200, an H100 is refused for B under any --out, and the line names the folder instead of
    advising a different --out, which would reuse the same runs."""
    path = write_reuse_campaign(tmp_path)
    ref = tmp_path / "ref" / "camp_a"
    (tmp_path / "b.yaml").write_text(f"include: [a.yaml]\nname: camp_b\nreuse: [{ref}]\n"
                                     "sweep: {model.bottleneck_act: [identity, relu6], seeds: [0, 1]}\n")
    plan_a, _ = part_plans(path)
    for run in plan_a:
        construct_run(ref, run, [30.0] * 4, complete=True, provenance=provenance_on(H200, "2.3.1"))
    on_device(monkeypatch, H100, "2.3.1")
    for out in (tmp_path / "out", tmp_path / "elsewhere"):
        line = refused(path, out, capsys)
        assert line.startswith(f"camp_b in {out} has epochs of 2 run(s) (2 of them reused) trained on NVIDIA H200")
        assert line.endswith(f"run the campaign on NVIDIA H200 with torch 2.3.1 (its reused runs in {ref} were "
                             "trained there; another --out reuses them too)")
        assert "give a different --out" not in line


def test_a_study_not_started_may_run_on_any_device(tmp_path, monkeypatch, capsys):
    """A (no reuse) complete on an H200; B has trained nothing: an H100 may run B. Once B has epochs from the
    H200 (one run stopped after its first epoch, named by the ledger), it may not."""
    path, out = write_campaign(tmp_path), tmp_path / "out"
    from manifold_lab.spec.suite import load_suite
    from manifold_lab.spec.sweep import plan

    (run_a,), (run_b,) = (plan(spec) for spec in load_suite(path).parts)
    construct_run(out / "camp_a", run_a, [1.0], complete=True, provenance=provenance_on(H200, "2.3.1"))
    on_device(monkeypatch, H100, "2.3.1")
    assert _rows(dry_run(path, out, capsys))["[camp_b](camp_b/report.md)"][1:4] == ["1", "0", "1"]
    construct_run(out / "camp_b", run_b, [1.0])
    (out / "campaign.json").write_text(json.dumps({"invocations": [
        {"started": "2025-01-01T10:00:00", "device": H200, "torch": "2.3.1", "stop_after_min": 12.0, "outcome": "x",
         "groups": [{"experiment": "camp_b", "run_ids": [run_b.run_id], "estimated_min": 1.0, "wall_min": 1.0,
                     "outcome": "stopped"}]}]}))
    assert refused(path, out, capsys).startswith(f"camp_b in {out} has epochs of 1 run(s) trained on NVIDIA H200")


def test_the_estimate_groups_a_gated_arm_as_the_campaign_trains_it(tmp_path, monkeypatch, capsys):
    """A's identity arm (the gate's, 3 seeds) trains alone while the gate is not passed: in groups of 2, [id 0, 1],
    [id 2], then [relu6 0, 1], [relu6 2]: 4 groups of 1 epoch (100 s each, whatever the group's size), not the 3
    of the 6 runs grouped in plan order. Once the pilot passed, relu6's 2 groups remain."""
    path = write_campaign(tmp_path, sweep_a="model.bottleneck_act: [identity, relu6], seeds: [0, 1, 2]",
                          gates=f"[{GATE % 0.5}]")
    out = tmp_path / "out"
    (plan_a, _) = part_plans(path)
    rate = campaign.epoch_images(plan_a[0].params) / 100
    monkeypatch.setattr(campaign, "THROUGHPUT", {"cpu": {1: rate, 2: rate}, "cuda": {1: rate, 2: rate}})
    monkeypatch.setattr(campaign, "GROUP_OVERHEAD_S", 0.0)
    argv = ["campaign", str(path), "--stop-after", "10m", "--out", str(out), "--batch-runs", "2", "--dry-run"]
    assert main(argv) == 0
    assert _rows(capsys.readouterr().out)["[camp_a](camp_a/report.md)"] == ["2", "6", "0", "6", "0", "0.0", "6.7"]
    for run in plan_a[:3]:  # the pilot: identity, seeds 0-2, complete with test_acc 0.5
        construct_run(out / "camp_a", run, [1.0], complete=True)
    assert main(argv) == 0
    assert _rows(capsys.readouterr().out)["[camp_a](camp_a/report.md)"] == ["2", "6", "3", "3", "0", "0.1", "3.3"]
