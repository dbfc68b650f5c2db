"""manifold-lab evaluate, and a checkpoint treated as data (issue 25, class 4) by evaluate and probe."""

import json

import pytest
import torch

from manifold_lab.cli import main

SMOKE = ["experiments/smoke/figure6a.yaml", "params.train.epochs=1", "params.train.relu_stats=false"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("evaluate") / "run"
    assert main(["train", *SMOKE, "--out", str(run)]) == 0
    return run


def test_evaluate_gives_the_trainers_last_test_accuracy_and_loss(trained, capsys):
    last = json.loads((trained / "metrics.jsonl").read_text().splitlines()[-1])
    capsys.readouterr()
    assert main(["evaluate", str(trained), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["accuracy"] == pytest.approx(last["test_acc"], abs=1e-12)
    assert record["loss"] == pytest.approx(last["test_loss"], rel=1e-5)
    assert record["split"] == "test" and record["images"] == 360  # digits test split of the smoke spec
    assert main(["evaluate", str(trained), "--split", "train", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 1437  # the whole train split, no subset


def _forged(trained, tmp_path, edit) -> str:
    state = torch.load(trained / "checkpoint.pt", weights_only=True)
    edit(state)
    path = tmp_path / "forged.pt"
    torch.save(state, path)
    return str(path)


def test_a_checkpoint_cannot_choose_where_data_is_read_cached_or_downloaded(trained, tmp_path, monkeypatch, capsys):
    evil_root, evil_cache = tmp_path / "their_root", tmp_path / "their_cache"

    def edit(state):
        state["config"]["data"].update(root=str(evil_root), cache_dir=str(evil_cache), download=True)

    forged = _forged(trained, tmp_path, edit)
    monkeypatch.setenv("MANIFOLD_LAB_CACHE", str(tmp_path / "my_cache"))
    assert main(["evaluate", forged, "--json"]) == 0
    assert main(["probe", forged, "--images", "20", "--positions", "200", "--no-knn", "--resamples", "1",
                 "--out", str(tmp_path / "probe")]) == 0
    assert not evil_root.exists() and not evil_cache.exists()
    meta = json.loads((tmp_path / "probe" / "probe.json").read_text())["meta"]
    assert meta["data"]["root"] is None and meta["data"]["download"] is False


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["model"].__setitem__("classifier.1.weight", torch.zeros(3, 7)), "has shape (3, 7)"),
    (lambda s: s["model"].__setitem__("features.0.bn.weight", torch.zeros(8, dtype=torch.int64)), "not floating point"),
    (lambda s: s["model"].pop("features.1.conv_dw.weight"), "1 missing"),
    (lambda s: s["config"]["model"].__setitem__("width_mult", 1.0), "has shape"),
])
def test_weights_that_do_not_fit_their_configuration_get_one_line(trained, tmp_path, capsys, edit, message):
    forged = _forged(trained, tmp_path, edit)
    for command in (["evaluate", forged], ["probe", forged, "--out", str(tmp_path / "p")]):
        capsys.readouterr()
        assert main(command) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
