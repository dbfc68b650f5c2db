"""The trained-vs-untrained geometry check (Ansuini et al. 2019): the shape rules in closed form and the
check end to end on synthetic results folders with ``probe.json`` files."""

import json
import shutil

import numpy as np
import pytest

from manifold_lab.reproduction import id_profile as G
from manifold_lab.reproduction import probe_correlation as P
from tests.test_claims import make_study


def test_margin_is_twice_the_largest_spread_of_first_last_and_peak():
    ids, spreads = np.array([10.0, 20.0, 14.0, 12.0]), np.array([1.0, 0.5, 9.0, 2.0])
    assert G.margin(ids, spreads) == 4.0  # 2 max(1, 2, 0.5): block 2's spread is not one of them


@pytest.mark.parametrize("ids, spread, hunch", [
    ([10, 20, 12], 1.0, True),    # 10 > 2 and 8 > 2
    ([10, 20, 12], 4.0, False),   # margin 8: 20 - 12 = 8 is not above it
    ([10, 20, 19], 0.4, True),    # 1 > 0.8
    ([20, 15, 10], 0.1, False),   # the peak is the first block: falling, not a hunchback
    ([10, 20], 0.1, False),       # two blocks cannot rise and fall
])
def test_hunchback_rule(ids, spread, hunch):
    assert G.is_hunchback(np.array(ids, float), np.full(len(ids), spread)) is hunch


@pytest.mark.parametrize("ids, spread, flat", [
    ([10, 11, 10.5], 0.6, True),   # range 1 < 1.2
    ([10, 11, 10.5], 0.5, False),  # range 1 is not below 1.0
    ([5, 30, 6], 3.0, False),
])
def test_flat_rule(ids, spread, flat):
    assert G.is_flat(np.array(ids, float), np.full(len(ids), spread)) is flat


def _records(ids, spread):
    return [{"block": i, "twonn_mean": v, "twonn_std": spread} for i, v in enumerate(ids)] + \
           [{"block": len(ids), "twonn_mean": None, "twonn_std": None}]  # undefined: left out


def test_check_end_to_end_counts_each_run_once(tmp_path):
    flat, hunch, rising = [10, 10.2, 10.1, 10], [8, 14, 16, 9], [8, 10, 12, 14]
    shapes = {("identity", 0): hunch, ("identity", 1): hunch, ("identity", 2): rising,
              ("relu6", 0): hunch, ("relu6", 1): rising, ("relu6", 2): rising}
    runs = [({"model.bottleneck_act": a}, s, {"test_acc": 0.5}, None) for a, s in shapes]
    make_study(tmp_path, "figure6a_linear_bottleneck_cifar10", "mobilenetv2",
               {"model.bottleneck_act": ["identity", "relu6"]}, runs)
    folder = tmp_path / "figure6a_linear_bottleneck_cifar10"
    plan = json.loads((folder / "plan.json").read_text())["runs"]
    for entry, key in zip(plan, shapes):
        step0 = flat if key != ("relu6", 2) else hunch  # one network is not flat at step 0
        (folder / "runs" / entry["run_id"] / "probe.json").write_text(json.dumps(
            {"step0": {"records": _records(step0, 0.5)}, "final": {"records": _records(shapes[key], 0.5)}}))
    # a study that reuses the same runs (same ids): they count once
    shutil.copytree(folder, tmp_path / "width_sweep_cifar10")
    payload = G.write_check(tmp_path, tmp_path / "out")
    assert payload["runs"] == 6
    assert payload["by_variant"] == {"identity": {"runs": 3, "hunchback_final": 2, "flat_step0": 3, "both": 2},
                                     "relu6": {"runs": 3, "hunchback_final": 1, "flat_step0": 2, "both": 1}}
    assert len((tmp_path / "out" / "id_profile.csv").read_text().splitlines()) == 7
    assert (tmp_path / "out" / "id_profile.png").stat().st_size > 0
    assert all(p["final"]["block"] == [0, 1, 2, 3] for p in payload["profiles"])  # the undefined block left out


def test_a_condition_reused_by_another_study_counts_once():
    a = {"study": "figure6a", "condition": "all", "seeds": 2, "run_ids": ["x1", "x2"]}
    b = {"study": "width_sweep", "condition": "width=0.5", "seeds": 2, "run_ids": ["x1", "x2"]}
    c = {"study": "width_sweep", "condition": "width=1", "seeds": 2, "run_ids": ["y1", "y2"]}
    assert P.distinct([a, b, c]) == [a, c]


def test_a_network_in_two_conditions_counts_once_with_the_most_seeds():
    """Overlap, not only equality, makes one network: the condition with more seeds is kept wherever it comes."""
    fig6a = {"study": "figure6a", "seeds": 3, "run_ids": ["x0", "x1", "x2", "r0", "r1", "r2"]}
    ladder = {"study": "ladder", "seeds": 2, "run_ids": ["x0", "x1", "r0", "r1"]}  # same networks, fewer seeds
    width = {"study": "width", "seeds": 2, "run_ids": ["y0", "y1", "s0", "s1"]}
    wide = {"study": "bottleneck_width", "seeds": 3, "run_ids": ["y0", "y1", "y2", "s0", "s1", "s2"]}
    other = {"study": "ladder", "seeds": 2, "run_ids": ["z0", "z1", "t0", "t1"]}
    assert P.distinct([fig6a, width, ladder, wide, other]) == [fig6a, wide, other]
