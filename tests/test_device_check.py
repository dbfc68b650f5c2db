"""The same network on two devices (manifold_lab.reproduction.device_check) and the claim table's
marking of tests whose runs ran on more than one device."""

import json
from pathlib import Path

import pytest
import yaml
from scipy import stats as sps

from manifold_lab.reproduction import verdict as V
from manifold_lab.stats import describe
from manifold_lab.reproduction import device_check as D
from manifold_lab.kinds import RunRecord

LINEAR = {"model": {"bottleneck_act": "identity"}}
LINEAR_SPELLED = {"model": {"bottleneck_act": "relu6", "bottleneck_act_blocks": "none"}}
RELU6 = {"model": {"bottleneck_act": "relu6"}}


def make_run(root: Path, study: str, name: str, params: dict, seed: int, acc: float, gpu: str | None,
             status: str = "done", sweep: dict | None = None, started: str | None = None) -> Path:
    run = root / study / "runs" / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({
        "experiment": study, "kind": "mobilenetv2", "run_id": name, "seed": seed,
        "sweep_values": sweep or {"model.bottleneck_act": params["model"]["bottleneck_act"]}, "params": params}))
    (run / "status.json").write_text(json.dumps({"status": status}))
    (run / "metrics.json").write_text(json.dumps({"test_acc": acc}))
    (run / "provenance.json").write_text(json.dumps({"device": "auto", "gpu": gpu, "packages": {"torch": "x"},
                                                     "started": started or f"{study}/{name}"}))
    return run


def test_device_label_reads_the_provenance(tmp_path):
    gpu = make_run(tmp_path, "s", "a", LINEAR, 0, 0.5, "NVIDIA H200")
    cpu = make_run(tmp_path, "s", "b", LINEAR, 1, 0.5, None)
    bare = tmp_path / "s" / "runs" / "c"
    bare.mkdir()
    assert [D.device_label(p) for p in (gpu, cpu, bare)] == ["NVIDIA H200", "CPU", "unknown"]
    forced = json.loads((gpu / "provenance.json").read_text()) | {"device": "cpu"}
    (gpu / "provenance.json").write_text(json.dumps(forced))  # train.device=cpu on a GPU machine
    assert D.device_label(gpu) == "CPU"
    assert D.devices_of([gpu, cpu, bare]) == {"CPU": 2, "unknown": 1}


def test_twins_pair_one_network_across_spellings_and_devices_only(tmp_path):
    # CPU reference runs; the device-check runs spell the linear network differently
    for seed, acc in enumerate((0.62, 0.65, 0.60)):
        make_run(tmp_path, "fig6a", f"cpu{seed}", LINEAR, seed, acc, None)
        make_run(tmp_path, "fig6a", f"relu{seed}", RELU6, seed, acc - 0.1, None)
    for seed, acc in enumerate((0.60, 0.62, 0.59)):
        make_run(tmp_path, "device_check_x", f"gpu{seed}", LINEAR_SPELLED, seed, acc, "NVIDIA H200",
                 sweep={"model.bottleneck_act_blocks": "none"})
    make_run(tmp_path, "device_check_x", "same_device", RELU6, 0, 0.3, None)  # a CPU twin of a CPU run: no pair
    make_run(tmp_path, "device_check_x", "no_twin", RELU6, 7, 0.3, "NVIDIA H200")
    make_run(tmp_path, "device_check_x", "failed", LINEAR, 2, 0.1, "NVIDIA H200", status="failed")
    rows = D.twins(tmp_path)
    assert [(r["run"], r["twin"], r["seed"]) for r in rows] == [
        ("device_check_x/gpu0", "fig6a/cpu0", 0), ("device_check_x/gpu1", "fig6a/cpu1", 1),
        ("device_check_x/gpu2", "fig6a/cpu2", 2)]
    d = [r["acc"] - r["twin_acc"] for r in rows]
    assert d == pytest.approx([-0.02, -0.03, -0.01])
    text = "\n".join(D.section(tmp_path))
    p = sps.ttest_1samp(d, 0.0).pvalue
    assert "NVIDIA H200 minus CPU" in text and "over 3 pairs: -2.00 points" in text
    assert f"paired t p = {p:.2g}" in text
    assert "| fig6a: bottleneck_act=identity | 0 | device_check_x/gpu0 (NVIDIA H200, x) | fig6a/cpu0 (CPU, x) | 0.6000 | 0.6200 | -2.00 |" \
        in text


def test_a_gpu_study_pairs_with_cpu_runs_anywhere_and_copies_count_once(tmp_path):
    """No device_check folder needed: a study trained on a GPU pairs with the CPU runs of another study; a
    copy (reuse:, same provenance) is one training; a separate training on the same device is a repeat."""
    cpu = make_run(tmp_path, "fig6a", "n0", LINEAR, 0, 0.62, None, started="t1")
    copy = make_run(tmp_path, "width", "n0", LINEAR, 0, 0.62, None, started="t1")  # reuse: copy of fig6a/n0
    (copy / "config.yaml").write_text((cpu / "config.yaml").read_text())
    make_run(tmp_path, "ladder", "n0", LINEAR, 0, 0.60, "NVIDIA H200", started="t3")
    make_run(tmp_path, "device_check_x", "old", LINEAR, 0, 0.60, "NVIDIA H200", started="t2")
    make_run(tmp_path, "ladder", "n1", RELU6, 1, 0.50, "NVIDIA H200", started="t4")
    make_run(tmp_path, "other", "n1", RELU6, 1, 0.49, "NVIDIA H200", started="t5")
    assert len(D.trainings(tmp_path)) == 2 and len(D.trainings(tmp_path)[D.canonical_id(cpu)]) == 3
    rows = D.twins(tmp_path)
    assert [(r["run"], r["twin"]) for r in rows] == [("device_check_x/old", "fig6a/n0")]  # the earliest training
    again = D.repeats(tmp_path)
    assert [(r["runs"], r["accs"]) for r in again] == [
        (["device_check_x/old", "ladder/n0"], [0.60, 0.60]), (["ladder/n1", "other/n1"], [0.50, 0.49])]
    text = "\n".join(D.section(tmp_path))
    assert "over 1 pairs: -2.00 points" in text and "test accuracy identical in 1 of 2 networks" in text


def test_no_device_check_folder_no_section(tmp_path):
    make_run(tmp_path, "fig6a", "cpu0", LINEAR, 0, 0.6, None)
    assert D.twins(tmp_path) == [] and D.section(tmp_path) == []


def test_a_paired_test_names_the_devices_of_its_runs(tmp_path):
    runs = [RunRecord(name, params, seed, "done", {"test_acc": acc}, make_run(tmp_path, "s", name, params, seed, acc, gpu))
            for name, params, seed, acc, gpu in [
                ("l0", LINEAR, 0, 0.6, None), ("r0", RELU6, 0, 0.5, "NVIDIA H200"),
                ("l1", LINEAR, 1, 0.6, None), ("r1", RELU6, 1, 0.5, None),
                ("l9", LINEAR, 9, 0.6, "other GPU")]]  # seed 9 has no pair: not behind d
    test = V.PairedTest("linear - relu6", "s", "test_acc", {"model.bottleneck_act": "identity"},
                        {"model.bottleneck_act": "relu6"})
    d = V.paired_differences(runs, test)
    assert d == pytest.approx({0: 0.1, 1: 0.1})
    devices = V.test_devices(runs, test, {}, set(d))
    assert devices == {"CPU": 3, "NVIDIA H200": 1}
    result = V.TestResult(test, d, describe(list(d.values())), float("nan"), verdict="x", devices=devices)
    assert "its runs ran on CPU (3) and NVIDIA H200 (1)" in result.text()
    one = V.TestResult(test, d, describe(list(d.values())), float("nan"), verdict="x", devices={"CPU": 4})
    assert "ran on" not in one.text()
