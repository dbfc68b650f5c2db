"""``manifold-lab spiral`` and ``manifold-lab theorem`` as a user runs them."""

import json
import subprocess
import sys

import pytest


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "manifold_lab", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_spiral_writes_figure_and_numbers(tmp_path):
    out = tmp_path / "fig"
    res = cli("spiral", "--points", "1500", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["figure1.csv", "figure1.json", "figure1.pdf", "figure1.png"]
    rows = {r["dim"]: r for r in json.loads((out / "figure1.json").read_text())["rows"]}
    assert sorted(rows) == [2, 3, 5, 15, 30]
    # the paper's picture: collapse at n = 2, 3, the spiral kept at n = 15, 30
    assert rows[2]["collapsed_fraction"] > 0.3 and rows[3]["collapsed_fraction"] > 0.2
    for n in (15, 30):
        assert rows[n]["collapsed_fraction"] < 0.01 and rows[n]["error_knn"] < 0.01
    assert (out / "figure1.png").read_bytes()[:4] == b"\x89PNG"
    assert len((out / "figure1.csv").read_text().splitlines()) == 6


BAD_INPUT = [
    (["spiral", "--dims", "1,3"], "dims entry must be >= 2"),
    (["spiral", "--dims", "2,x"], "comma-separated integers"),
    (["spiral", "--dims", "2,5,2"], "must not repeat"),
    (["spiral", "--manifold", "helix", "--dims", "2,5"], "points of helix live in R^3"),
    (["spiral", "--points", "0"], "n_points must be >= 20"),
    (["spiral", "--manifold", "klein"], "'spiral'"),
    (["spiral", "--seed", "-1"], "--seed must be >= 0"),
    (["spiral", "--noise", "-0.5"], "noise must be >= 0"),
    (["spiral", "--points", "abc"], "invalid int value"),
    (["theorem", "--m", "0-3"], "m must be >= 1"),
    (["theorem", "--m", "3-x"], "range such as 1-24"),
    (["theorem", "--n", ""], "at least one value"),
    (["theorem", "--matrices", "1"], "n_matrices must be >= 2"),
    (["theorem", "--points", "0"], "n_points must be >= 1"),
]


@pytest.mark.parametrize("args, message", BAD_INPUT)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, args, message):
    # In process (a subprocess per case would cost seconds of imports); the
    # process-level contract is checked once below.
    from manifold_lab.cli import main

    out = tmp_path / "out"
    try:
        status = main([*args, "--out", str(out)])
    except SystemExit as exc:  # argparse errors
        status = exc.code
    assert status == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not out.exists()


# one library ValueError and one argparse error, as a real process
@pytest.mark.parametrize("args, message", [case for case in BAD_INPUT if case[0][1:] in (["--dims", "1,3"], ["--points", "abc"])])
def test_bad_input_as_a_process(tmp_path, args, message):
    out = tmp_path / "out"
    res = cli(*args, "--out", str(out))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists()


def test_out_must_not_be_a_file(tmp_path, capsys):
    from manifold_lab.cli import main

    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert main(["spiral", "--points", "50", "--dims", "2", "--out", str(blocker / "fig")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert blocker.read_text() == "x"


def test_theorem_command(tmp_path, capsys):
    from manifold_lab.cli import main
    from manifold_lab.theory import kept_fraction

    out = tmp_path / "th"
    assert main(["theorem", "--m", "2-6", "--n", "1,2", "--matrices", "50", "--points", "100", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["theorem1.csv", "theorem1.json", "theorem1.pdf", "theorem1.png"]
    recs = json.loads((out / "theorem1.json").read_text())["records"]
    assert sorted((r["m"], r["n"]) for r in recs) == [(m, n) for m in range(2, 7) for n in (1, 2)]
    assert all(r["kept_theory"] == kept_fraction(r["m"], r["n"]) for r in recs)
    assert len((out / "theorem1.csv").read_text().splitlines()) == 1 + len(recs)
    for r in recs:  # z is Monte Carlo against theory in standard errors
        if r["stderr"] > 0:
            assert r["z"] == pytest.approx((r["kept_mc"] - r["kept_theory"]) / r["stderr"])
    # theory against simulation: each |z| beyond 3 has probability 0.003 if Theorem 1 holds (seed fixed)
    assert max(abs(r["z"]) for r in recs) <= 3
    assert f"{len(recs)}/{len(recs)} within 3 standard errors" in capsys.readouterr().out


def test_spiral_in_process_matches_the_library(tmp_path, capsys):
    from manifold_lab.cli import main
    from manifold_lab.figure1 import figure1_data

    out = tmp_path / "fig"
    assert main(["spiral", "--points", "400", "--dims", "2,15", "--seed", "3", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["figure1.csv", "figure1.json", "figure1.pdf", "figure1.png"]
    assert "wrote" in capsys.readouterr().out
    written = json.loads((out / "figure1.json").read_text())
    assert written["seed"] == 3 and written["n_points"] == 400
    *_, rows = figure1_data(dims=(2, 15), n_points=400, random_state=3)  # same seed, same numbers
    assert written["rows"] == rows
