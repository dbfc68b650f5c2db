"""Sweeps: grid x seeds expansion (counts and order) and stable run ids."""

import hashlib
import json
import subprocess
import sys

import pytest
from kinds_for_tests import KIND, REPO, write_spec

from manifold_lab.errors import UsageError
from manifold_lab.execution.runner import check_plan
from manifold_lab.spec.load import load_spec
from manifold_lab.spec.sweep import grid, plan, run_id, set_path
from manifold_lab.kinds import register

register(KIND)

SPEC = """\
name: s
kind: closed_form
params: {a: 1.5}
sweep:
  b: [0, 1, 2]
  block.act: [identity, relu]
  seeds: [3, 1, 4, 0]
"""


def test_grid_times_seeds_count_and_order(tmp_path):
    spec = load_spec(write_spec(tmp_path / "s.yaml", SPEC))
    runs = plan(spec)
    assert len(spec.points) == 3 * 2
    assert len(runs) == 3 * 2 * 4
    assert [r.index for r in runs] == list(range(24))
    # Grid points outer (last sweep key fastest), seeds inner, in the spec's order.
    expected = [
        ({"b": b, "block.act": act}, seed)
        for b in (0, 1, 2) for act in ("identity", "relu") for seed in (3, 1, 4, 0)
    ]
    assert [(r.sweep_values, r.seed) for r in runs] == expected
    assert all(r.point == r.index // 4 for r in runs)
    assert all(r.params["b"] == r.sweep_values["b"] and r.params["block"]["act"] == r.sweep_values["block.act"] for r in runs)
    assert len({r.run_id for r in runs}) == 24


def test_no_sweep_is_one_point_and_default_seed(tmp_path):
    spec = load_spec(write_spec(tmp_path / "s.yaml", "name: s\nkind: closed_form\n"))
    runs = plan(spec)
    assert [(r.sweep_values, r.seed) for r in runs] == [({}, 0)]
    assert grid({}) == [{}]


def test_run_id_is_the_hash_of_the_canonical_resolved_config(tmp_path):
    params = {"a": 1.0, "block": {"width": 2.0, "act": "relu"}}
    text = json.dumps({"kind": "k", "params": params, "seed": 3}, sort_keys=True, separators=(",", ":"))
    assert run_id("k", params, 3) == hashlib.sha256(text.encode()).hexdigest()[:12]
    reordered = {"block": {"act": "relu", "width": 2.0}, "a": 1.0}
    assert run_id("k", reordered, 3) == run_id("k", params, 3)
    assert run_id("k", params, 4) != run_id("k", params, 3)
    assert run_id("other", params, 3) != run_id("k", params, 3)


def test_run_ids_do_not_depend_on_key_order_defaults_or_process(tmp_path):
    one = write_spec(tmp_path / "one.yaml", SPEC)
    # Same experiment: keys reordered, a default written out, another name and output.
    two = write_spec(tmp_path / "two.yaml", """\
        kind: closed_form
        name: other
        output: elsewhere
        sweep:
          b: [0, 1, 2]
          block.act: [identity, relu]
          seeds: [3, 1, 4, 0]
        params: {sleep: 0.0, a: 1.5, block: {width: 1.0}}
    """)
    ids = [r.run_id for r in plan(load_spec(one))]
    assert [r.run_id for r in plan(load_spec(two))] == ids
    # A fresh interpreter (another hash seed) computes the same ids.
    code = (
        "import sys; from manifold_lab.spec.load import load_spec; "
        "from manifold_lab.spec.sweep import plan; "
        "print(' '.join(r.run_id for r in plan(load_spec(sys.argv[1]))))"
    )
    env = {"PYTHONHASHSEED": "123", "PYTHONPATH": str(REPO), "MANIFOLD_LAB_EXTRA_KINDS": "tests.kinds_for_tests"}
    out = subprocess.run([sys.executable, "-c", code, str(one)], capture_output=True, text=True,
                         env={**__import__("os").environ, **env}, check=True)
    assert out.stdout.split() == ids
    # Anything that changes the result changes the id.
    changed = [r.run_id for r in plan(load_spec(one, ["params.a=1.25"]))]
    assert not set(changed) & set(ids)


def test_values_resolving_to_the_same_params_are_rejected(tmp_path):
    spec = load_spec(write_spec(tmp_path / "s.yaml", "name: s\nkind: closed_form\nsweep: {a: [1, 1.0]}\n"))
    with pytest.raises(UsageError, match="resolve to the same parameters"):
        check_plan(plan(spec))
    with pytest.raises(UsageError, match="repeated values"):
        load_spec(write_spec(tmp_path / "t.yaml", "name: s\nkind: closed_form\nsweep: {a: [2, 2]}\n"))


def test_set_path_copies_and_creates_mappings():
    tree = {"a": 1, "block": {"width": 2}}
    out = set_path(tree, "block.act", "relu")
    assert out == {"a": 1, "block": {"width": 2, "act": "relu"}}
    assert tree == {"a": 1, "block": {"width": 2}}  # the input is not modified
    assert set_path({}, ("x", "y.z"), 1) == {"x": {"y.z": 1}}
    with pytest.raises(ValueError, match="'a' is int, not a mapping"):
        set_path(tree, "a.b", 1)
