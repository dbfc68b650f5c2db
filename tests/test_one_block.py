"""The one-block-at-a-time option (model.bottleneck_act_blocks = block_N) and its pre-registered study."""

import math
from pathlib import Path

import pytest
import yaml
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
