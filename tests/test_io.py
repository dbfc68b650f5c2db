"""Atomic writes: a failed write leaves the old file and no temporary behind."""

import json

import pytest

from manifold_lab import io


def test_write_json_roundtrip(tmp_path):
    path = io.write_json(tmp_path / "sub" / "a.json", {"b": 1, "a": [1.5, 2]})
    assert json.loads(path.read_text()) == {"a": [1.5, 2], "b": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]


def test_failed_write_keeps_old_content(tmp_path):
    target = tmp_path / "x.txt"
    io.write_text(target, "old")
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_savefig_keeps_format_from_suffix(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    png = io.savefig(fig, tmp_path / "f.png")
    pdf = io.savefig(fig, tmp_path / "f.pdf")
    plt.close(fig)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.read_bytes()[:5] == b"%PDF-"
