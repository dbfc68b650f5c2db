"""Experiment specs: merge order of presets and overrides, and every validation case.

Each bad spec is run through ``python -m manifold_lab run`` in a fresh folder:
exit status 2, one line on stderr naming the place and the problem, nothing on
stdout, and no file written.
"""

import pytest
from kinds_for_tests import KIND, cli, files_under, write_spec

from manifold_lab.errors import UsageError
from manifold_lab.spec.load import load_spec
from manifold_lab.spec.sources import parse_override
from manifold_lab.kinds import KINDS, Kind, ReportItem, get_kind, register

register(KIND)

GOOD = """\
name: good
kind: closed_form
params:
  a: 2.0
  block: {width: 0.5}
sweep:
  b: [0, 1]
  seeds: [0, 1]
"""


def test_merge_order_includes_then_file_then_overrides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_spec(tmp_path / "configs" / "base.yaml", """
        params:
          a: 3.0
          b: 7
          fail_seeds: [1, 2]
          block: {width: 4.0, act: relu}
        sweep:
          seeds: [5]
    """)
    write_spec(tmp_path / "configs" / "top.yaml", """
        include: [configs/base.yaml]
        description: from a preset
        params:
          b: 8
    """)
    spec_file = write_spec(tmp_path / "experiments" / "x.yaml", """
        name: x
        kind: closed_form
        include: [configs/top.yaml]
        params:
          a: 2.0
          fail_seeds: [9]
          block: {width: 0.5}
    """)
    spec = load_spec(spec_file, ["params.block.act=relu6", "sweep.seeds=[0,1,2]", "name=y"])
    p = spec.params
    assert (p.a, p.b, p.fail_seeds) == (2.0, 8, [9])  # file over presets; lists replaced
    assert (p.block.width, p.block.act) == (0.5, "relu6")  # mappings merged key by key; override last
    assert spec.description == "from a preset"
    assert spec.seeds == (0, 1, 2) and spec.name == "y"
    assert str(spec.output) == "runs/y" and str(spec.reference) == "results/y"  # user runs / committed


def test_includes_found_from_the_spec_folder_parents(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    write_spec(repo / "configs" / "p.yaml", "params: {b: 4}\n")
    spec_file = write_spec(repo / "experiments" / "x.yaml", """
        name: x
        kind: closed_form
        include: [configs/p.yaml]
    """)
    monkeypatch.chdir(tmp_path)  # not the repository root
    assert load_spec(spec_file).params.b == 4


def test_sweep_override_keeps_the_dotted_path_whole():
    assert parse_override("sweep.block.width=[1, 2]") == (("sweep", "block.width"), [1, 2])
    assert parse_override("params.a=0.5") == (("params", "a"), 0.5)
    assert parse_override("name=foo") == (("name",), "foo")


def test_grid_points_are_validated_each(tmp_path):
    spec_file = write_spec(tmp_path / "s.yaml", GOOD)
    spec = load_spec(spec_file, ["sweep.block.width=[1, 2, 3]"])
    # The sweep key added by the override comes last, so it varies fastest.
    assert [pt.values for pt in spec.points] == [{"b": b, "block.width": w} for b in (0, 1) for w in (1, 2, 3)]
    assert [pt.params.block.width for pt in spec.points] == [1.0, 2.0, 3.0] * 2
    assert [pt.params.b for pt in spec.points] == [0, 0, 0, 1, 1, 1]
    with pytest.raises(UsageError, match=r"greater than 0.*sweep point b=0, block.width=-1"):
        load_spec(spec_file, ["sweep.block.width=[1, -1]"])


BAD = {
    # case: (file text, overrides, fragments expected in the one error line)
    "yaml syntax": ("name: x\nkind: [closed_form\nparams: {}\n", [], ["s.yaml:3:7", "invalid YAML", "flow sequence"]),
    "duplicate key": ("name: x\nkind: closed_form\nname: y\n", [], ["s.yaml:3:1", "duplicate key 'name'"]),
    "unknown top key": (GOOD.replace("params:", "parms:"), [], ["s.yaml:3:1", "unknown key 'parms'", "did you mean 'params'"]),
    "unknown nested key": (GOOD.replace("{width: 0.5}", "{widht: 0.5}"), [], ["s.yaml:5:11", "params.block.widht", "did you mean 'params.block.width'"]),
    "wrong type": (GOOD.replace("a: 2.0", "a: two"), [], ["s.yaml:4:3", "params.a", "valid number"]),
    "zero width": (GOOD.replace("width: 0.5", "width: 0"), [], ["params.block.width", "greater than 0"]),
    "negative seed": (GOOD.replace("seeds: [0, 1]", "seeds: [0, -1]"), [], ["s.yaml:8:3", "seeds", ">= 0"]),
    "empty sweep list": (GOOD.replace("b: [0, 1]", "b: []"), [], ["s.yaml:7:3", "sweep.b", "non-empty list"]),
    "unknown kind": (GOOD.replace("kind: closed_form", "kind: closed_fom"), [], ["s.yaml:2:1", "unknown kind 'closed_fom'", "closed_form"]),
    "unknown sweep path": (GOOD.replace("b: [0, 1]", "block.wdth: [1]"), [], ["'block.wdth'", "did you mean 'block.width'"]),
    "bad sweep value": (GOOD.replace("b: [0, 1]", "block.width: [1, 0]"), [], ["s.yaml:7:3", "greater than 0", "sweep point block.width=0"]),
    "missing name": (GOOD.replace("name: good\n", ""), [], ["name", "required"]),
    "bad name": (GOOD.replace("name: good", "name: ../up"), [], ["name", "pattern"]),
    "override without =": (GOOD, ["params.a"], ["bad override 'params.a'", "key.path=value"]),
    "override unknown key": (GOOD, ["params.aa=1"], ["override 'params.aa=1'", "did you mean 'params.a'"]),
    "override wrong type": (GOOD, ["params.b=[1"], ["bad override", "not valid YAML"]),
    "override out of range": (GOOD, ["params.sleep=-1"], ["override 'params.sleep=-1'", "greater than or equal to 0"]),
    "missing include": (GOOD + "include: [nowhere.yaml]\n", [], ["include 'nowhere.yaml' (in s.yaml)", "not found"]),
    "zero jobs": (GOOD + "jobs: 0\n", [], ["s.yaml:9:1", "jobs", "greater than or equal to 1"]),
    "too many jobs": (GOOD, ["jobs=100000"], ["override 'jobs=100000'", "less than or equal to 256"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_spec_is_one_line_exit_2_and_writes_nothing(tmp_path, case):
    text, overrides, fragments = BAD[case]
    write_spec(tmp_path / "s.yaml", text)
    before = files_under(tmp_path)
    out = cli("run", "s.yaml", *overrides, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("manifold-lab run: error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert files_under(tmp_path) == before


def test_include_cycle_is_rejected(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_spec(tmp_path / "a.yaml", "include: [b.yaml]\nname: a\nkind: closed_form\n")
    write_spec(tmp_path / "b.yaml", "include: [a.yaml]\n")
    with pytest.raises(UsageError, match=r"include cycle: a.yaml -> b.yaml -> a.yaml"):
        load_spec("a.yaml")


def test_missing_spec_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="spec file not found: nope.yaml"):
        load_spec("nope.yaml")


def test_kind_registry_and_interface_checks():
    from pydantic import BaseModel, ConfigDict

    assert get_kind("closed_form") is KIND and "closed_form" in KINDS
    with pytest.raises(ValueError, match=r"unknown kind 'closed_fom' \(did you mean 'closed_form'\?\); known kinds: .*closed_form"):
        get_kind("closed_fom")

    class Loose(BaseModel):
        a: int = 1

    class Required(BaseModel):
        model_config = ConfigDict(extra="forbid")
        a: int

    with pytest.raises(ValueError, match="extra='forbid'"):
        Kind(name="loose", description="", params=Loose, run=lambda p, s, c: {})
    with pytest.raises(ValueError, match=r"no default for \['a'\]"):
        Kind(name="required", description="", params=Required, run=lambda p, s, c: {})
    twin = Kind(name="closed_form", description="", params=KIND.params, run=lambda p, s, c: {})
    with pytest.raises(ValueError, match="two experiment kinds are named 'closed_form'"):
        register(twin)
    register(KIND)  # registering the same object again is harmless
    with pytest.raises(ValueError, match="exactly one of figure= and markdown="):
        ReportItem(title="t")


def test_jobs_key_sets_the_runs_at_once_without_changing_any_run(tmp_path, monkeypatch):
    """``jobs:`` (from an include, like configs/cifar_cpu_budget.yaml) schedules, never parameterizes:
    the plan's run ids are those of the same spec without it, and ``--jobs`` on the command line wins."""
    from manifold_lab.commands import run as run_command
    from manifold_lab.execution import runner
    from manifold_lab.spec.sweep import plan

    monkeypatch.chdir(tmp_path)
    write_spec(tmp_path / "budget.yaml", "jobs: 3\n")
    with_jobs = write_spec(tmp_path / "with.yaml", GOOD + "include: [budget.yaml]\n")
    without = write_spec(tmp_path / "without.yaml", GOOD)
    spec, plain = load_spec(with_jobs), load_spec(without)
    assert (spec.jobs, plain.jobs) == (3, 1)
    assert [r.run_id for r in plan(spec)] == [r.run_id for r in plan(plain)]
    assert spec.resolved()["jobs"] == 3 and "jobs" not in plain.resolved()

    seen = []

    def fake_run_experiment(spec, **kw):
        seen.append(kw["jobs"])
        return runner.RunSummary(planned=0)

    monkeypatch.setattr(runner, "run_experiment", fake_run_experiment)
    parser = __import__("argparse").ArgumentParser()
    run_command.add_arguments(parser)
    for argv in (["with.yaml"], ["with.yaml", "--jobs", "1"], ["without.yaml"]):
        run_command.run(parser.parse_args(argv))
    assert seen == [3, 1, 1]
