"""The one-block-at-a-time option (model.bottleneck_act_blocks = block_N) and its pre-registered study."""

import json
import math
from pathlib import Path

import pytest
import numpy as np
import yaml
from scipy import stats
from torch import nn

from manifold_lab.cli import main
from manifold_lab.models import mobilenet_v2
from manifold_lab.power import detectable_difference, seeds_needed
from manifold_lab.train.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "experiments" / "one_block_penalty_cifar10.yaml"


def nonlinear_blocks(model):
    return [i for i, b in enumerate(model.features) if isinstance(getattr(b, "act3", None), nn.Hardtanh)
            or type(getattr(b, "act3", nn.Identity())).__name__ == "ReLU6"]


def test_block_n_puts_the_activation_in_that_block_alone_with_the_same_parameters():
    linear = mobilenet_v2("cifar_fast", width_mult=0.5)
    one = mobilenet_v2("cifar_fast", width_mult=0.5, bottleneck_act="relu6", bottleneck_act_blocks="block_3")
    assert nonlinear_blocks(one) == [3]
    assert sum(p.numel() for p in one.parameters()) == sum(p.numel() for p in linear.parameters())
    assert nonlinear_blocks(mobilenet_v2("cifar_fast", bottleneck_act="relu6", bottleneck_act_blocks="all")) \
        == list(range(1, 18))  # the existing values keep their meaning
    assert nonlinear_blocks(mobilenet_v2("cifar_fast", bottleneck_act="relu6",
                                         bottleneck_act_blocks="without_shortcut")) == [1, 2, 4, 7, 11, 14, 17]


@pytest.mark.parametrize("value, message", [
    ("block_0", "bottleneck_act_blocks='block_0' is not one of all, with_shortcut, without_shortcut, none or block_N"),
    ("block3", "bottleneck_act_blocks='block3' is not one of"),
    ("block_18", "bottleneck_act_blocks='block_18': this network has blocks 1 to 17"),
])
def test_a_bad_block_is_one_clear_line_with_exit_status_2(value, message, capsys, cifar_jpeg_located):
    if value != "block_18":  # the configuration alone refuses a malformed name
        with pytest.raises(ValueError, match=message):
            TrainConfig.model_validate({"model": {"bottleneck_act": "relu6", "bottleneck_act_blocks": value}})
    with pytest.raises(ValueError, match=message):
        mobilenet_v2("cifar_fast", bottleneck_act="relu6", bottleneck_act_blocks=value)
    code = main(["run", str(SPEC), f"sweep.model.bottleneck_act_blocks=[{value}]", "--dry-run"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message.split(" is not")[0].split(":")[0] in err[0]


def test_the_study_is_preregistered_on_the_first_and_second_block_of_each_stage(capsys, cifar_jpeg_located):
    spec = yaml.safe_load(SPEC.read_text())
    arms = spec["sweep"]["model.bottleneck_act_blocks"]
    model = mobilenet_v2("cifar_fast", width_mult=0.5)
    # the stages with at least two blocks, from the built network: a block that changes shape opens a stage
    firsts = [i for i in range(1, 18) if not model.features[i].use_res_connect
              and i + 1 < 18 and model.features[i + 1].use_res_connect]
    assert arms == ["none", *(f"block_{n}" for i in firsts for n in (i, i + 1))]
    for i in firsts:  # same resolution and width in the pair: the second block keeps the first one's output
        first, second = model.features[i], model.features[i + 1]
        assert second.inp == second.oup == first.oup and second.stride == 1
    # the seeds, from the power calculation the file states
    sd = round(2.09 / math.sqrt(len(firsts)), 2)  # 0.94 points, as the file states
    assert f"has sd 2.09 / sqrt(5) = {sd:.2f}" in " ".join(SPEC.read_text().replace("#", " ").split())
    assert len(spec["sweep"]["seeds"]) == seeds_needed(1.32, sd) == 7
    assert f"detectable_difference(7, {sd:.2f}) = {detectable_difference(7, sd):.2f} points" in SPEC.read_text()
    assert spec["params"]["data"]["eval_subset"] is None  # the full test split
    assert main(["run", str(SPEC), "--dry-run"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) >= 11 * 7


def test_the_cpu_command_trains_exactly_the_runs_of_the_cpu_stages():
    """ONE.CPU_RUNS (the rows' command, run --runs) selects the 49 runs of addendum 1: the linear network and the
    blocks of CPU_STAGES at every seed, nothing of stages c=96 and c=160."""
    from manifold_lab.spec.load import load_spec
    from manifold_lab.spec.sweep import plan, run_indices

    runs = plan(load_spec(SPEC))
    chosen = run_indices(ONE.CPU_RUNS, len(runs))
    arms = ONE.planned_arms()
    in_arms = {r.index for r in runs
               if any(all(r.params["model"][k.split(".")[1]] == v for k, v in arm.items()) for arm in arms)}
    assert len(chosen) == 49 and chosen == in_arms
    assert C.ROWS["block_correlation"].command == C.PAIRED_CLAIMS["one_block"].command == \
        f"manifold-lab run experiments/one_block_penalty_cifar10.yaml --runs {ONE.CPU_RUNS} --reference"
    # make reference runs the same part
    make = (Path(__file__).parents[1] / "Makefile").read_text()
    assert f'*one_block_penalty_cifar10.yaml) part="--runs {ONE.CPU_RUNS}";;' in make


# --- the study's two claim rows on constructed studies: each pre-registered answer -------------------------

from dataclasses import replace  # noqa: E402

from manifold_lab.reproduction import claims as C  # noqa: E402
from manifold_lab.reproduction import one_block as ONE  # noqa: E402
from manifold_lab.reproduction import verdict as V  # noqa: E402
from tests.test_claims import make_study  # noqa: E402

BLOCKS = [n for pair in ONE.CPU_STAGES for n in pair]
NOISE = [0.004, -0.003, 0.002, -0.004, 0.001, 0.0, -0.001]  # per seed, so that differences have a spread


def probe(branch: dict, label: dict, step0: float = 0.9) -> dict:
    """A probe.json with a record per block ``features.N`` of ``branch`` (r2_branch_linear) and ``label``."""
    def records(r2):
        return {"records": [{"name": f"features.{n}", "r2_branch_linear": r2(n), "label_accuracy": label[n]}
                            for n in range(1, 18)]}
    return {"step0": records(lambda n: step0), "final": records(lambda n: branch.get(n, 1.0))}


def one_block_study(results, acc, branch, *, missing=(), label_drop=None):
    """The study folder: ``acc(arm, seed)`` = test accuracy (arm "none" or a block number), ``branch[n]`` = the
    block_n network's r2_branch_linear at features.n; the two stages the CPU did not run are planned and not done,
    and ``missing`` (arm, seed) runs failed."""
    label_drop = label_drop or {n: 0.0 for n in range(1, 18)}
    arms = ["none", *BLOCKS, 11, 12, 14, 15]
    runs = []
    for arm in arms:
        params = {**ONE.NONE, "model.bottleneck_act_blocks": "all"} if arm == "none" else ONE.block(arm)
        for s in range(7):
            done = arm in ("none", *BLOCKS) and (arm, s) not in missing
            label = {n: 0.5 - (0 if arm == "none" else label_drop[n]) for n in range(1, 18)}
            runs.append((params, s, {"test_acc": acc(arm, s)} if done else None,
                         None, probe({arm: branch.get(arm, 1.0)} if arm != "none" else {}, label) if done else None))
    store_runs = [(values, s, metrics, None) for values, s, metrics, _, _ in runs]
    make_study(results, ONE.STUDY, "mobilenetv2",
               {"model.bottleneck_act_blocks": ["all", *(f"block_{n}" for n in arms[1:])]}, store_runs)
    for (values, s, metrics, _, pr), run_dir in zip(runs, sorted((results / ONE.STUDY / "runs").iterdir())):
        if pr is not None:
            (run_dir / "probe.json").write_text(json.dumps(pr))


@pytest.mark.parametrize("second_minus_first, expected", [
    (0.02, ONE.FOLLOWS), (-0.02, ONE.REVERSED), (0.0, "inconclusive at this scale")])
def test_the_stage_contrast_can_give_each_preregistered_answer(tmp_path, second_minus_first, expected):
    def acc(arm, s):  # the first block of each stage costs 3 points, the second 3 - second_minus_first
        if arm == "none":
            return 0.65
        first = arm in [f for f, _ in ONE.CPU_STAGES]
        return 0.62 + (0 if first else second_minus_first) + NOISE[(s + arm) % 7]
    one_block_study(tmp_path, acc, {})
    row = V.evaluate([C.PAIRED_CLAIMS["one_block"]], tmp_path)[0]
    assert row.verdict.startswith(expected)
    (test,) = row.tests
    # per seed, the mean over the three stages of acc(second) - acc(first), exactly
    for s in range(7):
        want = np.mean([acc(sec, s) - acc(f, s) for f, sec in ONE.CPU_STAGES])
        assert test.d[s] == pytest.approx(want, abs=1e-12)
    assert test.summary["n"] == 7 and not test.waiting  # the stages not run do not hold the verdict back
    assert "penalty of block_2 (none - block_2) = +" in row.ours and "stage of block_7 / block_8" in row.ours


def test_a_missing_run_of_the_cpu_stages_holds_both_verdicts_back(tmp_path):
    one_block_study(tmp_path, lambda arm, s: 0.65 if arm == "none" else 0.6 + NOISE[s], {}, missing={(5, 6)})
    row = V.evaluate([C.PAIRED_CLAIMS["one_block"]], tmp_path)[0]
    assert row.verdict == "not enough runs yet (48 of 49 planned runs done)"
    assert math.isnan(row.tests[0].p)  # it does not enter the Holm family before the planned n
    assert C.row_claim(C.ROWS["block_correlation"], tmp_path).verdict == row.verdict

    # a stage with no runs yet: the row counts the blocks it has against the planned ones
    one_block_study(tmp_path / "partial", lambda arm, s: 0.6, {}, missing={(n, s) for n in (7, 8) for s in range(7)})
    partial = C.row_claim(C.ROWS["block_correlation"], tmp_path / "partial")
    assert partial.ours.startswith("4 of the 6 planned blocks with paired runs so far (block_2, block_3, block_4, "
                                   "block_5, block_7, block_8), ")
    assert partial.verdict == "not enough runs yet (35 of 49 planned runs done)"


def penalties_and_losses(order):
    """Per block a penalty of 1..6 points; the branch loss ranks the blocks by ``order``."""
    penalty = {n: 0.01 * (i + 1) for i, n in enumerate(BLOCKS)}
    loss = {n: 0.05 * (order[i] + 1) for i, n in enumerate(BLOCKS)}
    return penalty, loss


@pytest.mark.parametrize("order, expected", [
    ([0, 1, 2, 3, 4, 5], ONE.PREDICTS), ([5, 4, 3, 2, 1, 0], ONE.OPPOSITE), ([2, 5, 0, 4, 1, 3], ONE.NO_PREDICTION)])
def test_the_block_correlation_can_give_each_preregistered_answer(tmp_path, order, expected):
    penalty, loss = penalties_and_losses(order)
    one_block_study(tmp_path, lambda arm, s: 0.65 if arm == "none" else 0.65 - penalty[arm] + NOISE[s] * 0.1,
                    {n: 1.0 - loss[n] for n in BLOCKS}, label_drop={n: loss.get(n, 0.0) for n in range(1, 18)})
    row = C.row_claim(C.ROWS["block_correlation"], tmp_path)
    assert row.verdict == expected
    points = ONE.block_points(tmp_path)
    assert [p["block"] for p in points] == BLOCKS and all(p["seeds"] == 7 for p in points)
    for p in points:  # the branch loss is 1 - r2_branch_linear of features.N; the penalty none - block_N
        assert p["branch_loss"] == pytest.approx(loss[p["block"]])
        assert p["penalty"] == pytest.approx(penalty[p["block"]] - np.mean(NOISE) * 0.1)
        assert p["label_drop"] == pytest.approx(loss[p["block"]]) and p["branch_loss_step0"] == pytest.approx(0.1)
    rho = stats.spearmanr([loss[n] for n in BLOCKS], [penalty[n] for n in BLOCKS]).statistic
    assert f"Spearman rho = {rho:+.2f} [" in row.ours
    assert "Secondary, no verdict: label-accuracy drop: Spearman rho = " in row.ours
    assert row.ours.startswith("6 blocks (block_2, block_3, block_4, block_5, block_7, block_8), ")
    # fewer than six blocks: no verdict, whatever the data
    two_stages = replace(C.ROWS["block_correlation"], params={"stages": ONE.CPU_STAGES[:2]})
    assert C.row_claim(two_stages, tmp_path).verdict == "not enough blocks (4 of 6)"
