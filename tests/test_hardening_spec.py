"""Issue 13, spec side: attacks on specs, overrides, sizes and command arguments, performed for real.

Every attack runs ``python -m manifold_lab`` in a subprocess under operating-system
limits (``RLIMIT_AS`` address space, ``RLIMIT_CPU`` seconds; see ``LIMITS``): the
defects it guards against took tens of seconds and gigabytes before, so a
regression is killed by the limit and fails the test. The promised outcome each
time: exit status 2, exactly one line on stderr naming the problem, no traceback,
and the folder the command ran in (with its parent, standing for "outside") byte
for byte as it was. Each class has the attack of the issue and at least one
variant of it.

Classes (issue 13): 2 names that become paths, 3 sizes checked after allocation,
4 odd YAML in overrides, 10 checks at run time that belong at validation,
11 tracebacks from commands on odd input.
"""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings
from kinds_for_tests import REPO, cli_env, write_spec

from manifold_lab.spec import bounds

#: (address space in bytes, CPU seconds) of each attacked command.
LIMITS = (3 << 30, 60)

SMALL = """\
name: small
kind: collapse_theorem
params: {m: 3, n: 1, n_matrices: 2, n_points: 4}
"""


def _limit() -> None:  # in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (LIMITS[0], LIMITS[0]))
    resource.setrlimit(resource.RLIMIT_CPU, (LIMITS[1], LIMITS[1]))


def run_cli(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "manifold_lab", *map(str, args)], cwd=cwd, env=cli_env(),
        capture_output=True, text=True, timeout=300, preexec_fn=_limit,
    )


def snapshot(folder) -> dict:
    """``{relative path: sha256 or "dir"}`` of everything under ``folder`` (lock files aside)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.name == ".lock":
            continue
        rel = str(p.relative_to(folder))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def refused(tmp_path, *args, fragments=(), cwd=None) -> str:
    """Run the attack in ``tmp_path/work`` (or ``cwd``); assert the promised outcome; return the line."""
    cwd = cwd or tmp_path / "work"
    cwd.mkdir(exist_ok=True)
    before = snapshot(tmp_path)
    out = run_cli(*args, cwd=cwd)
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr[-2000:]
    assert lines[0].startswith("manifold-lab "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert snapshot(tmp_path) == before, "the refused command wrote or changed files"
    return lines[0]


def spec_in(tmp_path, text: str, name: str = "s.yaml"):
    return write_spec(tmp_path / "work" / name, text)


# --------------------------------------------------------------------------- class 2: names that become paths


@pytest.mark.parametrize("name", ["..", "/tmp/elsewhere", ".hidden", "a/../../b", "-rf"])
def test_suite_name_that_is_a_path_is_refused(tmp_path, name):
    spec_in(tmp_path, SMALL, "part.yaml")
    spec_in(tmp_path, f"name: {name!r}\nsuite: [part.yaml]\n", "suite.yaml")
    (tmp_path / "report.md").write_text("the user's own report\n")  # what name: '..' overwrote
    refused(tmp_path, "run", "suite.yaml", fragments=["suite's name", "folder"])


def test_same_name_other_kind_or_other_spec_file_is_refused_unless_replace(tmp_path):
    work = tmp_path / "work"
    spec_in(tmp_path, SMALL, "a.yaml")
    assert run_cli("run", "a.yaml", cwd=work).returncode == 0
    first = snapshot(work / "runs" / "small")
    # Same name, another kind (the example).
    spec_in(tmp_path, "name: small\nkind: closed_form\nparams: {a: 1.0}\n", "b.yaml")
    refused(tmp_path, "run", "b.yaml", fragments=["runs/small", "'collapse_theorem'", "--replace"])
    # Variant: same name and kind, another spec file.
    spec_in(tmp_path, SMALL.replace("m: 3", "m: 4"), "c.yaml")
    refused(tmp_path, "run", "c.yaml", fragments=["c.yaml", "a.yaml", "--replace"])
    assert snapshot(work / "runs" / "small") == first
    # The first spec still resumes there, and --replace is the user asking.
    assert run_cli("run", "a.yaml", cwd=work).returncode == 0
    out = run_cli("run", "c.yaml", "--replace", cwd=work)
    assert out.returncode == 0, out.stderr
    assert "c.yaml" in (work / "runs" / "small" / "spec.yaml").read_text()


def test_suite_into_an_experiment_folder_is_refused(tmp_path):
    work = tmp_path / "work"
    spec_in(tmp_path, SMALL, "a.yaml")
    assert run_cli("run", "a.yaml", "--out", "runs/tour", cwd=work).returncode == 0
    spec_in(tmp_path, SMALL.replace("name: small", "name: part"), "part.yaml")
    spec_in(tmp_path, "name: tour\nsuite: [part.yaml]\n", "suite.yaml")
    refused(tmp_path, "run", "suite.yaml", fragments=["runs/tour", "spec.yaml"])


# --------------------------------------------------------------------------- class 3: sizes before allocation


def _laughs(levels: int, width: int = 10, indent: str = "") -> str:
    """A "billion laughs" chain: level i is a list of ``width`` aliases to level i - 1."""
    lines = [f"{indent}l0: &l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"{indent}l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines)


def test_alias_bomb_in_a_spec_is_refused(tmp_path):
    # The attack: about 700 bytes expanding to 10^9 values, under params.
    text = "name: bomb\nkind: collapse_theorem\nparams:\n" + _laughs(9, indent="  ") + "\n"
    assert len(text) < 1000
    spec_in(tmp_path, text)
    refused(tmp_path, "run", "s.yaml", fragments=["s.yaml", "expands to more than", "aliases"])


@pytest.mark.parametrize("where", ["override", "preset", "sweep", "recursive"])
def test_alias_bomb_variants_are_refused(tmp_path, where):
    if where == "override":
        spec_in(tmp_path, SMALL)
        value = "{" + _laughs(8).replace("\n", ", ").replace(": &", ": &") + "}"
        refused(tmp_path, "run", "s.yaml", f"params.m={value}", fragments=["override", "expands to more than"])
    elif where == "preset":
        spec_in(tmp_path, "description: x\nx:\n" + _laughs(8, indent="  ") + "\n", "preset.yaml")
        spec_in(tmp_path, SMALL + "include: [preset.yaml]\n")
        refused(tmp_path, "run", "s.yaml", fragments=["preset.yaml", "expands to more than"])
    elif where == "sweep":
        spec_in(tmp_path, SMALL + "sweep:\n  m: &m [1, 2]\n  seeds: [" + ", ".join(["*m"] * 3) + "]\n"
                + _laughs(7) + "\n")
        refused(tmp_path, "run", "s.yaml", fragments=["expands to more than"])
    else:
        spec_in(tmp_path, SMALL + "description: &d [*d]\n")
        refused(tmp_path, "run", "s.yaml", fragments=["recursive alias"])


def values(start: int, stop: int) -> str:
    return "[" + ", ".join(map(str, range(start, stop))) + "]"


def test_sweep_grid_is_counted_before_it_is_built(tmp_path):
    # The attack: 10^8 grid points x 10 seeds = 10^9 runs.
    spec_in(tmp_path, SMALL + f"sweep:\n  m: {values(1, 101)}\n  n: {values(1, 101)}\n"
            f"  n_matrices: {values(2, 102)}\n  n_points: {values(1, 101)}\n  seeds: {values(0, 10)}\n")
    line = refused(tmp_path, "run", "s.yaml", "--dry-run",
                   fragments=["100,000,000 grid points x 10 seeds = 1,000,000,000 runs"])
    assert f"{bounds.MAX_RUNS:,}" in line
    # Variant: a modest grid times many seeds, from overrides.
    spec_in(tmp_path, SMALL)
    refused(tmp_path, "run", "s.yaml", f"sweep.seeds={values(0, 2000)}", f"sweep.n_points={values(1, 2001)}",
            fragments=["2,000 grid points x 2000 seeds"])


@pytest.mark.parametrize("style", ["flow", "block", "override value", "override key", "preset"])
def test_deep_nesting_is_one_line_not_recursion_error(tmp_path, style):
    levels = 1000 if style == "block" else 5000  # 1000 indented lines: 0.5 MB, under the file-size bound
    if style == "flow":
        spec_in(tmp_path, SMALL + "description: " + "[" * levels + "]" * levels + "\n")
        args = ["run", "s.yaml"]
    elif style == "block":
        spec_in(tmp_path, SMALL + "".join(" " * i + f"k{i}:\n" for i in range(levels)) + " " * levels + "x: 1\n")
        args = ["run", "s.yaml"]
    elif style == "override value":
        spec_in(tmp_path, SMALL)
        args = ["run", "s.yaml", "params.m=" + "[" * levels + "]" * levels]
    elif style == "override key":
        spec_in(tmp_path, SMALL)
        args = ["run", "s.yaml", "params." + ".".join(["a"] * levels) + "=1"]
    else:
        spec_in(tmp_path, "params: " + "{a: " * levels + "1" + "}" * levels + "\n", "preset.yaml")
        spec_in(tmp_path, SMALL + "include: [preset.yaml]\n")
        args = ["run", "s.yaml"]
    refused(tmp_path, *args, fragments=[f"more than {bounds.MAX_DEPTH}"])


def test_long_or_wide_include_chains_are_refused(tmp_path):
    n = 40  # a chain of 40 presets, each including the next
    for i in range(n):
        spec_in(tmp_path, f"include: [p{i + 1}.yaml]\n" if i + 1 < n else "description: end\n", f"p{i}.yaml")
    spec_in(tmp_path, SMALL + "include: [p0.yaml]\n")
    refused(tmp_path, "run", "s.yaml", fragments=["include chain longer than"])
    # Variant: short but wide, 8 presets each including the next level's 8 (8^3 = 512 reads).
    for level in range(3):
        for i in range(8):
            body = ("include: [" + ", ".join(f"w{level + 1}_{j}.yaml" for j in range(8)) + "]\n"
                    if level < 2 else "description: leaf\n")
            spec_in(tmp_path, body, f"w{level}_{i}.yaml")
    spec_in(tmp_path, SMALL + "include: [" + ", ".join(f"w0_{j}.yaml" for j in range(8)) + "]\n")
    refused(tmp_path, "run", "s.yaml", fragments=[f"more than {bounds.MAX_INCLUDE_FILES} files"])


def test_huge_spec_file_is_refused_before_reading(tmp_path):
    spec_in(tmp_path, SMALL + "description: " + "x" * (bounds.MAX_SPEC_BYTES + 1) + "\n")
    refused(tmp_path, "run", "s.yaml", fragments=["bytes", "the limit"])
    # Variant: eight presets of 200 kB each, every one under the bound, together over it.
    for i in range(8):
        spec_in(tmp_path, "description: " + "x" * 200_000 + "\n", f"p{i}.yaml")
    spec_in(tmp_path, SMALL + "include: [" + ", ".join(f"p{i}.yaml" for i in range(8)) + "]\n")
    refused(tmp_path, "run", "s.yaml", fragments=["its includes read more than", "bytes"])


def test_suite_of_fifty_thousand_parts_is_refused_before_loading_them(tmp_path):
    spec_in(tmp_path, SMALL, "part.yaml")
    spec_in(tmp_path, "name: tour\nsuite: [&p part.yaml" + ", *p" * 49_999 + "]\n", "suite.yaml")
    refused(tmp_path, "run", "suite.yaml", fragments=["at most 64 parts"])


@pytest.fixture(scope="module")
def small_results(tmp_path_factory) -> Path:
    """A complete results folder of ``SMALL`` (one run, in this process), copied by the tests that damage it."""
    from manifold_lab.execution.runner import run_experiment
    from manifold_lab.spec import load_spec

    folder = tmp_path_factory.mktemp("small")
    run_experiment(load_spec(write_spec(folder / "s.yaml", SMALL)), out=folder / "small")
    return folder / "small"


@pytest.mark.parametrize("plan", ["[" * 100_000 + "]" * 100_000, '{"a":' * 500 + "1" + "}" * 500],
                         ids=["lists 100000 deep", "mappings 500 deep"])
def test_damaged_deep_plan_json_is_one_line(tmp_path, small_results, plan):
    import shutil

    work = tmp_path / "work"
    shutil.copytree(small_results, work / "runs" / "small")
    (work / "runs" / "small" / "plan.json").write_text('{"runs": [{"index": 0, "params": ' + plan + "}]}")
    refused(tmp_path, "report", "runs/small", fragments=["runs/small"])


def test_cost_of_a_run_is_estimated_and_bounded(tmp_path):
    # The example: n_matrices and n_points of 10^6 each, both within their ranges.
    spec_in(tmp_path, SMALL)
    line = refused(tmp_path, "run", "s.yaml", "params.n_matrices=1000000", "params.n_points=1000000",
                   fragments=["collapse_theorem", "estimated at", "--allow-long"])
    assert f"{bounds.MAX_RUN_SECONDS / 3600:g} h" in line
    # Variant: another kind, one parameter at its maximum.
    spec_in(tmp_path, "name: r\nkind: recoverability\nparams: {width: 4096, depth: 2}\n", "r.yaml")
    refused(tmp_path, "run", "r.yaml", fragments=["recoverability", "estimated at"])
    # Variant: the same sizes through the `theorem` command, and a range of 10^11 values of m.
    refused(tmp_path, "theorem", "--matrices", "1000000", "--points", "1000000",
            fragments=["estimated at", "--allow-long"])
    refused(tmp_path, "theorem", "--m", "1-100000000000", fragments=["100,000,000,000 values"])
    # Asking for it explicitly passes validation (a dry run: nothing is run).
    out = run_cli("run", "s.yaml", "params.n_matrices=1000000", "params.n_points=1000000", "--allow-long",
                  "--dry-run", cwd=tmp_path / "work")
    assert out.returncode == 0, out.stderr


# --------------------------------------------------------------------------- class 4: odd YAML


@pytest.mark.parametrize("value", ["!!timestamp x", "!!bool x", "!!timestamp 2024-13-45", "!!bool [1]",
                                   "!!binary '%%%'", "!!int 0x", "!!python/object:os.system x"])
def test_odd_tag_in_an_override_is_one_line(tmp_path, value):
    spec_in(tmp_path, SMALL)
    refused(tmp_path, "run", "s.yaml", f"params.m={value}", fragments=["params.m"])


@pytest.mark.parametrize("value", ["!!bool x", "!!timestamp x"])
def test_odd_tag_in_a_spec_or_suite_file_names_the_line(tmp_path, value):
    spec_in(tmp_path, SMALL.replace("m: 3", f"m: {value}"))
    refused(tmp_path, "run", "s.yaml", fragments=["s.yaml:3:"])
    spec_in(tmp_path, f"name: tour\ndescription: {value}\nsuite: [s.yaml]\n", "suite.yaml")
    refused(tmp_path, "run", "suite.yaml", fragments=["suite.yaml:2:"])


# --------------------------------------------------------------------------- class 10: checks at validation

CHECKS = {
    "seed beyond the generators": (SMALL, ["sweep.seeds=[4294967296]"], ["4294967295"]),
    "seed far beyond": (SMALL, ["sweep.seeds=[0, 1e30]"], ["sweep.seeds"]),
    "noise .inf": ("name: r\nkind: recoverability\nparams: {noise: .inf}\n", [], ["params.noise", "finite"]),
    "noise 1.0e+400": ("name: r\nkind: recoverability\n", ["params.noise=1.0e+400"], ["params.noise", "finite"]),
    "lr '1e400' read as a float": ("name: m\nkind: mobilenetv2\n", ["params.optim.lr=1e400"], ["params.optim.lr", "finite"]),
    "noise nan in a sweep": ("name: r\nkind: recoverability\nsweep: {noise: [0.1, .nan]}\n", [], ["sweep.noise[1]"]),
    "n_points too small": ("name: f\nkind: spiral_figure\nparams: {n_points: 10}\n", [], ["n_points", "20"]),
    "n_neighbors vs n_samples": ("name: r\nkind: recoverability\nparams: {n_samples: 20}\n", [],
                                 ["n_neighbors=10", "n_samples / 2"]),
    "device not present": ("name: m\nkind: mobilenetv2\nparams: {train: {device: 'cuda:7'}}\n", [], ["cuda:7"]),
    "device unknown": ("name: m\nkind: mobilenetv2\nparams: {train: {device: tpu}}\n", [], ["'tpu'", "auto, cpu"]),
    "batch larger than the subset": ("name: m\nkind: mobilenetv2\nparams: {data: {subset: 2, batch_size: 64}}\n",
                                     [], ["batch_size=64", "20 train images"]),
    "batch larger than the data": ("name: m\nkind: mobilenetv2\n", ["params.data.batch_size=5000"],
                                   ["batch_size=5000", "1437 train images"]),
}


@pytest.mark.parametrize("case", sorted(CHECKS))
def test_refused_at_validation_before_any_run(tmp_path, case):
    text, overrides, fragments = CHECKS[case]
    if case == "device not present":
        import torch

        if torch.cuda.is_available() and torch.cuda.device_count() > 7:
            pytest.skip("this machine has a cuda:7")
    spec_in(tmp_path, text)
    refused(tmp_path, "run", "s.yaml", *overrides, fragments=fragments)  # not a dry run: nothing may start


# --------------------------------------------------------------------------- class 11: commands on odd input


@pytest.mark.parametrize("args, fragment", [
    (["--width", "1000000"], "--width"),
    (["--width", "inf"], "--width"),
    (["--resolution", "1000000000"], "--resolution"),
    (["--resolution", "100000", "--preset", "cifar"], "--resolution"),
])
def test_models_on_odd_sizes(tmp_path, args, fragment):
    refused(tmp_path, "models", *args, fragments=[fragment])


@pytest.mark.parametrize("override, fragment", [
    ("params.data.image_size=1000000", "image_size"),
    ("params.data.image_size=1000", "GiB"),  # within the schema's bound, too large in memory for digits
])
def test_image_size_bounded_at_validation(tmp_path, override, fragment):
    spec_in(tmp_path, "name: m\nkind: mobilenetv2\nparams: {data: {channels: 3}}\n")
    refused(tmp_path, "run", "s.yaml", override, fragments=[fragment])


@pytest.mark.parametrize("side", [20000, 9000])  # above PIL's own bomb error, and between its warning and ours
def test_image_too_large_is_refused_from_its_header(tmp_path, side):
    from PIL import Image

    work = tmp_path / "work"
    for split in ("train", "test"):
        folder = work / "tree" / split / "a"
        folder.mkdir(parents=True)
        Image.new("1", (side, side)).save(folder / "big.png", optimize=True)  # a few kB on disk
        assert (folder / "big.png").stat().st_size < 100_000
    spec_in(tmp_path, "name: img\nkind: mobilenetv2\nparams:\n  data: {name: imagefolder, root: tree, "
            "image_size: 32, batch_size: 1, num_workers: 0, cache_dir: cache}\n  train: {epochs: 1}\n")
    before = snapshot(work / "tree")
    out = run_cli("train", "s.yaml", "--out", "out", cwd=work)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    # Progress lines may come first ("decoding the images of tree once into the cache ..."): one error line, last.
    lines = out.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("manifold-lab train: error:")]
    assert errors == lines[-1:] and "big.png" in errors[0] and "pixels" in errors[0], out.stderr[-2000:]
    assert snapshot(work / "tree") == before
    assert not (work / "cache").exists() or not any((work / "cache").rglob("*.npz"))


@pytest.mark.parametrize("file, text, fragment", [
    ("theorem1/theorem1.csv", "m,n\n1\n", "missing column 'stderr'"),
    ("theorem1/theorem1.csv", "m,n,kept_mc,stderr,kept_theory,kept_bound,z\n1,1,0.5,x,0.5,0.5,1\n", "float"),
    ("theorem1/theorem1.csv", "m,n,kept_mc,stderr,kept_theory,kept_bound,z\n", "no row"),
    ("figure1_spiral/summary.csv", "", "no data row"),
    ("figure1_spiral/summary.csv", "runs,done\n10,10\n", "missing column"),
    ("figure1_spiral/summary.csv", "\xff\xfe\x00garbage", "damaged"),
])
def test_claims_on_damaged_or_empty_csv(tmp_path, file, text, fragment):
    path = tmp_path / "work" / "results" / file
    path.parent.mkdir(parents=True)
    path.write_bytes(text.encode("latin-1"))
    refused(tmp_path, "claims", fragments=[file, fragment, "regenerate"])


@pytest.mark.parametrize("text", ["[1, 2]", '{"final": 3}', "{"], ids=["a list", "wrong types", "cut short"])
def test_claims_on_a_damaged_relu_stats_json(tmp_path, text):
    # Variant: a JSON record of one run in a copy of the committed Figure 6a results.
    import shutil

    study = "figure6a_linear_bottleneck_cifar10"
    source = Path(__file__).resolve().parents[1] / "results" / study
    target = tmp_path / "work" / "results" / study
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.pt", ".lock", "run.log"))
    damaged = sorted(target.glob("runs/*/relu_stats.json"))[0]
    damaged.write_text(text)
    refused(tmp_path, "claims", fragments=[str(damaged.relative_to(tmp_path / "work")), "damaged"])


# --------------------------------------------------------------------------- also: deterministic make test


def test_normal_suite_is_derandomized_without_example_database():
    if os.environ.get("MANIFOLD_LAB_FUZZ"):
        pytest.skip("make fuzz explores on purpose")
    assert settings.default.derandomize is True
    assert settings.default.database is None


def test_a_class_balanced_sample_smaller_than_the_classes_is_refused_at_validation(tmp_path):
    """Issue 13, class 10: refused before any run starts (it used to fail every run)."""
    from manifold_lab.errors import UsageError
    from manifold_lab.spec.load import load_spec

    for override in ("params.train.relu_stats_images=8", "params.train.clean_train_images=3"):
        with pytest.raises(UsageError, match="fewer than the 10 classes"):
            load_spec(REPO / "experiments/smoke/figure6a.yaml", [override])
    load_spec(REPO / "experiments/smoke/figure6a.yaml", ["params.train.relu_stats_images=10"])
