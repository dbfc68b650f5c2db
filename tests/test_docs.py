"""The documentation's examples run: README.md, configs/README.md and the --help texts.

Code blocks are extracted from the two READMEs and executed in a temporary folder
holding copies of experiments/ and configs/ (nothing is written into the checkout):
Python blocks are run, YAML blocks are loaded as specs (or suites) and run with tiny
overrides, ``manifold-lab`` command lines are run (dry where they would train for
long), ``make`` lines are checked with ``make -n``. The README's experiment table is
checked against results/.
"""

import json
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml
from kinds_for_tests import REPO

from manifold_lab.cli import main
from manifold_lab.reporting.report import write_report
from manifold_lab.execution.runner import run_experiment
from manifold_lab.spec.load import load_spec
from manifold_lab.spec.suite import load_suite

DOCS = ("README.md", "configs/README.md")
EXPERIMENTS = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "experiments").glob("*.yaml"))


def code_blocks(path):
    """``(language, text)`` of every fenced block and every 4-space indented block of a markdown file."""
    blocks, lines, i = [], (REPO / path).read_text().splitlines(), 0
    while i < len(lines):
        fence = re.match(r"^(\s*)```(\w*)", lines[i])
        if fence:
            indent, language, body = len(fence.group(1)), fence.group(2) or "text", []
            i += 1
            while not lines[i].strip().startswith("```"):
                body.append(lines[i][indent:])
                i += 1
            blocks.append((language, "\n".join(body)))
        elif lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip()) and not lines[i].lstrip().startswith("-"):
            body = []
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                body.append(lines[i][4:])
                i += 1
            blocks.append(("shell", "\n".join(body).strip()))
            continue
        i += 1
    return blocks


def commands(path):
    """Every command line of the shell blocks of ``path`` (comments stripped)."""
    out = []
    for language, text in code_blocks(path):
        if language in ("shell", "bash", "text"):
            out += [line.split("  #")[0].strip() for line in text.splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    return out


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    for folder in ("experiments", "configs"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_readmes_have_the_blocks_this_test_runs():
    kinds = {path: [language for language, _ in code_blocks(path)] for path in DOCS}
    assert kinds["README.md"].count("python") == 1 and kinds["README.md"].count("yaml") == 1
    assert kinds["configs/README.md"].count("yaml") == 2 and "bash" in kinds["configs/README.md"]


@pytest.mark.parametrize("path", DOCS)
def test_python_blocks_run(path, sandbox):
    for language, text in code_blocks(path):
        if language == "python":
            exec(compile(text, f"{path} (python block)", "exec"), {})


@pytest.mark.parametrize("path", DOCS)
def test_yaml_blocks_are_valid_specs_and_run(path, sandbox):
    for i, (language, text) in enumerate(code_blocks(path)):
        if language != "yaml":
            continue
        file = sandbox / f"block{i}.yaml"
        file.write_text(text)
        if "suite" in yaml.safe_load(text):
            assert [p.name for p in load_suite(file).parts] == ["quickstart_spiral", "quickstart_theorem", "quickstart_toy"]
            continue
        spec = load_spec(file)
        # Tiny: one seed, the first value of each numeric sweep, few steps / points.
        tiny = ["sweep.seeds=[0]", *(f"sweep.{k}=[{v[0]}]" for k, v in spec.sweep.items()
                                    if all(isinstance(x, int) for x in v))]
        tiny += {"toy_bottleneck": ["params.train.steps=5", "params.data.n_train=40", "params.data.n_test=40"],
                 "recoverability": ["params.n_samples=60", "params.depth=2"]}[spec.kind.name]
        small = load_spec(file, tiny)
        summary = run_experiment(small, report=write_report)
        assert summary.done == small.points.__len__() and not summary.failed
        report = (small.output / "report.md").read_text()
        assert f"**{spec.contrast['metric']}: {spec.contrast['b']} - {spec.contrast['a']}**" in report


def test_override_examples_of_configs_readme_apply(sandbox):
    text = (REPO / "configs/README.md").read_text()
    merge = text[text.index("## Merge order"):text.index("## Validation")]
    examples = re.findall(r"`((?:params|sweep|name)\.?[\w.]*=[^`]+)`", merge)
    assert "sweep.seeds=[0,1,2]" in examples and len(examples) >= 5
    spec_text = next(t for lang, t in code_blocks("configs/README.md") if lang == "yaml" and "suite" not in t)
    (sandbox / "s.yaml").write_text(spec_text)
    for example in examples:
        if example.startswith("name="):
            assert load_spec("s.yaml", [example]).name == example.split("=")[1]
        else:
            load_spec("s.yaml", [example])  # raises on a key the kind does not have
    assert load_spec("s.yaml", ["contrast=null", "sweep.model.bottleneck_act=[relu]"]).contrast is None


@pytest.mark.parametrize("path", DOCS)
def test_command_lines_run(path, sandbox, capsys):
    def real(words):  # the Slurm example's experiments/x.yaml is a placeholder: use a small real one
        return [w.replace("experiments/x.yaml", "experiments/quickstart/theorem.yaml")
                .replace("runs/x", "runs/quickstart_theorem") for w in words]

    seen, n_runs = 0, None
    for line in commands(path):
        words = shlex.split(line)
        if words[0] == "make":
            out = subprocess.run(["make", "-n", *words[1:]], cwd=REPO, capture_output=True, text=True)
            assert out.returncode == 0, out.stderr
        elif line.startswith("N=$(manifold-lab"):  # N=$(manifold-lab run X --list | wc -l)
            capsys.readouterr()
            assert main(real(shlex.split(line[len("N=$(manifold-lab"):].split("|")[0]))) == 0
            n_runs = len(capsys.readouterr().out.splitlines())
        elif words[0] == "sbatch":  # each array task's command, run here one after the other
            wrapped = real(shlex.split(words[words.index("--wrap") + 1]))[1:]
            for i in range(n_runs):
                assert main([w.replace("$SLURM_ARRAY_TASK_ID", str(i)) for w in wrapped]) == 0
        elif words[0] == "manifold-lab" and not re.search(r"[<\[]", line):
            args = real(words[1:])
            if args[0] == "run":
                args += ["--dry-run"]
            assert main(args) == 0, line
        else:
            continue
        seen += 1
    assert seen >= 2
    capsys.readouterr()


def test_help_examples_are_valid(sandbox, capsys, cifar_jpeg_located):
    def help_text(*words):
        with pytest.raises(SystemExit):
            main([*words, "--help"])
        return " ".join(capsys.readouterr().out.split())

    run_help = help_text("run")
    assert "e.g. sweep.seeds=[0,1,2] (any kind) or params.train.epochs=3 (kind mobilenetv2)" in run_help
    for spec in EXPERIMENTS:
        kind = yaml.safe_load((REPO / spec).read_text()).get("kind")
        examples = ["sweep.seeds=[0,1,2]"] + (["params.train.epochs=3"] if kind == "mobilenetv2" else [])
        if kind is None:  # a suite takes no overrides
            assert main(["run", spec, "--dry-run"]) == 0
            continue
        status = main(["run", spec, *examples, "--dry-run"])
        # --dry-run checks the data: a dataset absent from this machine (ImageNet's folder) is its one error
        absent = "imagenet" in spec and status == 2 and " not found; searched: " in capsys.readouterr().err
        assert status == 0 or absent, spec
    # The bad-override message's example is valid for every kind.
    assert main(["run", "experiments/quickstart/toy.yaml", "oops"]) == 2
    example = re.search(r"e\.g\. (\S+)\n", capsys.readouterr().err).group(1)
    assert example == "sweep.seeds=[0,1,2]"
    # train: its override example; report: its example folder (a copy: nothing is written into results/).
    assert "e.g. params.train.epochs=3" in help_text("train")
    assert load_spec("experiments/smoke/figure6a.yaml", ["params.train.epochs=3"]).params.train.epochs == 3
    folder = re.search(r"e\.g\. (results/\w+)", help_text("report")).group(1)
    shutil.copytree(REPO / folder, sandbox / folder)
    assert main(["report", folder]) == 0
    assert "## The answer" in (sandbox / folder / "report.md").read_text()
    capsys.readouterr()


def reference_cell(spec_path):
    """The README's reference column for an experiment file, computed from results/."""
    data = yaml.safe_load((REPO / spec_path).read_text())
    name = data["name"]
    if "suite" in data and name == "quickstart":  # the tour; a campaign suite has a results folder like a study
        return f"not committed: `make quickstart` writes `runs/{name}/report.md`"
    name = campaign_parts().get(spec_path, "") + name  # a campaign's part lives in results/<campaign>/<part>
    folder = REPO / "results" / name
    if not (folder / "plan.json").exists():
        return f"not run: no results/{name}"
    runs = json.loads((folder / "plan.json").read_text())["runs"]
    done = sum((folder / "runs" / r["run_id"] / "metrics.json").exists() for r in runs)
    return f"[results/{name}](results/{name}/report.md), {done} of {len(runs)} runs done"


def campaign_parts():
    """``{experiment file: "<campaign name>/"}`` of the parts of every campaign suite (not the quickstart tour):
    ``manifold-lab campaign --reference`` writes them into results/<campaign name>/<part name>/."""
    parts = {}
    for path in EXPERIMENTS:
        data = yaml.safe_load((REPO / path).read_text())
        if "suite" in data and data["name"] != "quickstart":
            parts.update({part: f"{data['name']}/" for part in data["suite"]})
    return parts


def test_readme_experiment_table_matches_results():
    rows = re.findall(r"^\| \[\w+\.yaml\]\((experiments/\w+\.yaml)\) \| .*? \| (.*) \|$",
                      (REPO / "README.md").read_text(), re.M)
    assert sorted(path for path, _ in rows) == EXPERIMENTS  # one row per experiment file
    for path, cell in rows:
        assert cell == reference_cell(path), path


def test_make_reference_regenerates_every_committed_study():
    """Every results folder written by `manifold-lab run SPEC --reference` is in the Makefile's
    REFERENCE_EXPERIMENTS, so `make reference` is the one documented command for all of them."""
    make = (REPO / "Makefile").read_text()
    listed = set(re.findall(r"experiments/\w+\.yaml", make.split("REFERENCE_EXPERIMENTS ?=")[1].split("\n\n")[0]))
    recorded = set()
    for spec in (REPO / "results").glob("*/spec.yaml"):
        command = yaml.safe_load(spec.read_text()).get("command", "")
        if "--reference" in command.split():  # `--runs I-J` may follow it
            recorded.add(command.split()[2])
    assert recorded and recorded == listed


# --------------------------------------------------------------------------- statements that drift (issue 26)

def _about(text: str, target: str, unit: str) -> int:
    """The ``about N <unit>`` that a README or Makefile line about ``target`` states."""
    (line,) = [line for line in text.splitlines() if re.match(rf"^#?\s*{re.escape(target)}\s", line.strip())]
    return int(re.search(rf"about (\d+) {unit.rstrip('s')}s?\b", line).group(1))


def test_quickstart_time_in_readme_and_makefile_is_the_benchmarks():
    """README.md and the Makefile say the median of `python -m benchmarks.bench_quickstart` (rounded to 5 s)."""
    from benchmarks.bench_quickstart import readme_seconds

    measured = json.loads((REPO / "benchmarks" / "results" / "quickstart.json").read_text())
    assert measured["command"].startswith("make quickstart")  # what a user types, timed
    assert measured["readme_s"] == readme_seconds(measured["quickstart_median_s"])
    for doc in ("README.md", "Makefile"):
        assert _about((REPO / doc).read_text(), "make quickstart", "s") == measured["readme_s"], doc


def test_test_times_in_readme_and_makefile_agree_with_the_measured_ones():
    readme, make = (REPO / "README.md").read_text(), (REPO / "Makefile").read_text()
    for target in ("make test", "make test-fast"):
        assert _about(readme, target, "minutes") == _about(make, target, "minutes"), target
    full = re.search(r"(\d+) passed, \d+ skipped in (\d+) min (\d+) s", readme)
    fast = re.search(r"-n 2` takes (\d+) min (\d+) s after", readme.replace("\n", " "))
    assert _about(readme, "make test", "minutes") == round(int(full.group(2)) + int(full.group(3)) / 60)
    assert _about(readme, "make test-fast", "minutes") == max(1, round(int(fast.group(1)) + int(fast.group(2)) / 60))


def test_make_install_says_what_it_does_before_each_pip_step():
    dry = subprocess.run(["make", "-n", "-W", "pyproject.toml", ".install-stamp"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    pips = [i for i, line in enumerate(dry) if " -m pip install" in line]
    assert len(pips) == 2 and all(dry[i - 1].startswith("echo ") for i in pips)


def test_readme_states_the_probe_correlation_as_it_stands():
    readme = " ".join((REPO / "README.md").read_text().split())
    done = json.loads((REPO / "results" / "probe_penalty_correlation" / "correlation.json").read_text())
    assert "waits for the CIFAR-10 studies" not in readme
    assert f"`manifold-lab probe-correlation` over the committed runs: {done['n']} conditions, with the CIFAR-10" \
           in readme and done["cifar_conditions"] and not done["pending"]


def test_reports_tell_the_reader_not_the_projects_history():
    """No committed report (its text, or the experiment description it prints) speaks of passes or issues."""
    history = re.compile(r"first pass|second pass|predate|before issue|issue \d+", re.I)
    for report in sorted((REPO / "results").glob("*/report.md")):
        assert not history.search(report.read_text()), report


def test_readme_kinds_section_is_what_the_kinds_command_prints():
    """README's "Experiment kinds and their parameters" is `manifold-lab kinds --markdown` verbatim, and each
    of its table rows has the four cells of the header (a type such as ``int | None`` is escaped). A new
    process: kinds that other tests register must not count."""
    printed = subprocess.run([sys.executable, "-m", "manifold_lab", "kinds", "--markdown"], capture_output=True,
                             text=True, check=True).stdout.rstrip("\n")
    readme = (REPO / "README.md").read_text()
    start = readme.index("Generated by `manifold-lab kinds --markdown`.\n\n") + len(
        "Generated by `manifold-lab kinds --markdown`.\n\n")
    assert readme[start:readme.index("\n\n## On a Slurm cluster", start)] == printed
    rows = [line for line in printed.splitlines() if line.startswith("| `")]
    assert rows and all(len(re.split(r"(?<!\\)\|", row)) == 6 for row in rows)
