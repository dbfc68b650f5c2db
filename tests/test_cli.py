"""The command line: help lists commands, bad input is one line and exit 2."""

import subprocess
import sys


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "manifold_lab", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_subcommands():
    out = _cli("--help")
    assert out.returncode == 0
    for name in ("spiral", "run", "report", "train"):
        assert name in out.stdout


def test_unknown_command_is_one_line_exit_2():
    out = _cli("no-such-command")
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "invalid choice" in lines[0]


def test_console_script_entry_point_is_declared():
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "manifold-lab"]
    assert ep.value == "manifold_lab.cli:main"
