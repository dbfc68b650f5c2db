"""Table 3 from the model definitions, MobileNetV1, and the ``models`` command."""

import csv
from pathlib import Path

import pytest
import torch

from manifold_lab.cli import main
from manifold_lab.models import MobileNetV1, MobileNetV2, count_parameters
from manifold_lab.models.table3 import PAPER_TABLE3, memory_by_resolution, operator_shapes, table3_rows


def kb16(c, r):
    return c * r * r * 2 / 1000


COMMITTED = Path(__file__).resolve().parents[1] / "results" / "table3" / "table3.csv"


@pytest.fixture(scope="module")
def rows():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # two 224 x 224 forwards; threads only contend on a shared machine
    try:
        return {(r["model"], r["size"]): r for r in table3_rows()}
    finally:
        torch.set_num_threads(before)


def test_mobilenet_v1_parameter_count_and_widths():
    assert count_parameters(MobileNetV1()) == 4_231_976  # Keras MobileNet(alpha=1) trainable parameters
    half = MobileNetV1(num_classes=5, width_mult=0.5).eval()
    assert half.features[0].conv.out_channels == 16 and half.last_channel == 512
    assert half(torch.randn(1, 3, 32, 32)).shape == (1, 5)
    with pytest.raises(ValueError, match="width_mult must be > 0"):
        MobileNetV1(width_mult=0)
    with pytest.raises(ValueError, match=r"input resolution 16 is too small .*\(total stride 32\)"):
        MobileNetV1()(torch.randn(1, 3, 16, 16))


def test_v2_operators_skip_the_expanded_tensor():
    ops = operator_shapes(MobileNetV2(), 224)
    assert [name for name, _, _ in ops][-3:] == ["features.18", "pool", "classifier"]
    assert len(ops) == 19 + 2
    shapes = {name: (i, o) for name, i, o in ops}
    assert shapes["features.2"] == ((16, 112, 112), (24, 56, 56))  # block boundary, not the 96-channel expansion
    assert shapes["classifier"] == ((1280,), (1000,))
    assert all(max(i[0], o[0]) <= 1280 for _, i, o in ops if len(i) == 3 and i[0] != 320)


def test_closed_forms(rows):
    # MobileNetV1 stores every layer output: 64 x 112^2 after the first pointwise conv
    assert rows[("MobileNetV1", 112)]["channels"] == 64
    assert rows[("MobileNetV1", 112)]["kb"] == round(kb16(64, 112), 1)
    assert rows[("MobileNetV1", 7)]["inout_kb"] == round(2 * kb16(1024, 7), 1)
    # MobileNetV2 with the paper's fusions: 16 channels at 112; without, the 32-channel stem output
    assert rows[("MobileNetV2", 112)]["channels"] == 16
    assert rows[("MobileNetV2, no fusion", 112)]["channels"] == 32
    assert rows[("MobileNetV2", 56)]["channels"] == 24  # Table 2's 56 x 56 stage
    assert rows[("MobileNetV2, no fusion", 7)]["channels"] == 1280
    assert rows[("MobileNetV2", 7)]["channels"] == 320
    # the paper's headline: V2 needs about 4x less peak memory than V1
    assert rows[("MobileNetV1", "max")]["kb"] / rows[("MobileNetV2", "max")]["kb"] == pytest.approx(4.0, rel=0.01)


def test_agreement_flags_follow_the_numbers(rows):
    for (model, size), r in rows.items():
        paper = PAPER_TABLE3["MobileNetV1" if model == "MobileNetV1" else "MobileNetV2"]
        if size == "max" or size not in paper:
            continue
        same = r["channels"] == paper[size][0] and abs(r["kb"] - paper[size][1]) <= max(1.0, 0.03 * paper[size][1])
        assert r["agrees"] == same
        assert bool(r["note"]) != same  # every differing row is explained, no agreeing row is


def test_fusion_removes_tensors():
    ops = [("a", (3, 8, 8), (4, 8, 8)), ("b", (4, 8, 8), (2, 4, 4)), ("c", (2, 4, 4), (5,))]
    plain = memory_by_resolution(ops)
    assert plain[8]["channels"] == 4 and plain[8]["inout_kb"] == pytest.approx(kb16(3, 8) + kb16(4, 8))
    fused = memory_by_resolution(ops, fused={"a"})
    assert fused[8]["channels"] == 3 and fused[8]["inout_kb"] == pytest.approx(kb16(3, 8) + kb16(2, 4))
    assert fused[1]["channels"] == 5 and fused["max"]["kb"] == pytest.approx(kb16(3, 8))


def test_committed_table_is_current(rows, tmp_path):
    assert main(["models", "--table3", "--out", str(tmp_path)]) == 0
    written = list(csv.DictReader(open(tmp_path / "table3.csv")))
    assert len(written) == len(rows)
    committed = list(csv.DictReader(open(COMMITTED)))
    assert committed == written
    assert (tmp_path / "table3.md").read_text().count("\n| MobileNetV") == len(rows)


def test_models_command(capsys):
    assert main(["models", "--preset", "cifar", "--width", "0.5", "--resolution", "16"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("mobilenet_v2/cifar"))
    assert f"{count_parameters(MobileNetV2(10, 0.5, stem_stride=1)):,}" in line and " 16^2 " in line
    assert " 10/10/10 " in line  # shortcuts of the bottleneck / expansion / sandglass arm (Figure 6b)
    assert main(["models", "--preset", "imagenet", "--width", "0.25"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("mobilenet_v2/imagenet"))
    # at width 0.25 the t = 1 block keeps its shape: a bottleneck shortcut with no expansion to pass on
    assert " 11/10/10 " in line
    assert main(["models", "--preset", "imagenet", "--bottleneck-mult", "0.25"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("mobilenet_v2/imagenet"))
    assert f"{count_parameters(MobileNetV2(bottleneck_mult=0.25)):,}" in line and " 10/10/10 " in line


@pytest.mark.parametrize("argv, message", [
    (["models", "--preset", "tiny"], "--preset 'tiny' is not one of imagenet, cifar, cifar_fast"),
    (["models", "--preset", "imagenet", "--width", "-1"], "--width must be a number > 0"),
    (["models", "--preset", "imagenet", "--resolution", "16"], "input resolution 16 is too small"),
    (["models", "--preset", "cifar", "--bottleneck-mult", "1.5"], "--bottleneck-mult must be in (0, 1]"),
])
def test_models_command_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
