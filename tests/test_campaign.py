"""``manifold-lab campaign``: a suite's experiments within a wall time, stopped cleanly, continued later."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from manifold_lab.cli import main
from manifold_lab.execution import campaign
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


def write_campaign(tmp_path: Path, epochs_b: int = 1) -> Path:
    (tmp_path / "a.yaml").write_text(f"include: [{ROOT}/experiments/smoke/figure6a.yaml]\nname: camp_a\n"
                                     f"params: {{data: {TINY_DATA}, train: {TINY_TRAIN}}}\n"
                                     "sweep: {model.bottleneck_act: [identity]}\ncontrast: null\n")
    (tmp_path / "b.yaml").write_text(f"include: [{ROOT}/experiments/smoke/figure6b.yaml]\nname: camp_b\n"
                                     f"params: {{train: {{epochs: {epochs_b}}}}}\n"
                                     "sweep: {model.shortcut: [sandglass]}\ncontrast: null\n")
    path = tmp_path / "camp.yaml"
    path.write_text("name: camp\ndescription: two tiny experiments\nsuite: [a.yaml, b.yaml]\n")
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
    assert main(["campaign", str(path), "--stop-after", "30m", "--out", str(out)]) == 0
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
    spent_b = float(_rows(md)["[camp_b](camp_b/report.md)"][4])
    assert spent_b == pytest.approx(sum(json.loads(x)["seconds"] for x in lines) / 60, abs=0.051)
