"""Official CIFAR archives (restricted unpickler) and the checksum-verified download path.

The archives here are built by the tests in the genuine layout (pickled dict
batches with b'data' / b'labels' or b'fine_labels', a meta file, a tar.gz)
with a handful of images, and served from a local http.server on 127.0.0.1.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from manifold_lab.data import load_dataset
from manifold_lab.data import cifar as cifar_mod
from manifold_lab.data.cifar import CIFAR, RestrictedUnpickler, restricted_loads
from manifold_lab.data.download import download, download_and_extract, sha256_file
from manifold_lab.errors import UsageError

N_PER_BATCH = 6


def batch_arrays(index: int, n: int = N_PER_BATCH, n_classes: int = 10):
    rng = np.random.default_rng(index)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [(index + i) % n_classes for i in range(n)]
    return data, labels


class Py2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote for the official files: ``bytes`` as
    py2 ``str`` opcodes (BINSTRING, read back as latin1 ``str``) instead of
    ``_codecs.encode`` calls, and numpy under its old ``numpy.core`` module name."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + n.to_bytes(4, "little") + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_dumps(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def make_cifar_archive(path: Path, name: str = "cifar10", protocol: int | str = 2) -> dict:
    """Write a tiny archive in the official layout; return the arrays it holds.

    ``protocol="py2"`` writes the pickles as Python 2 did (the genuine files).
    """
    dumps = py2_dumps if protocol == "py2" else functools.partial(pickle.dumps, protocol=protocol)
    spec = CIFAR[name]
    n_classes = 10 if name == "cifar10" else 100
    members: dict[str, bytes] = {}
    expected = {"train": [], "test": []}
    for split in ("train", "test"):
        for k, fname in enumerate(spec[split]):
            data, labels = batch_arrays(len(members) + 1, n_classes=n_classes)
            batch = {b"batch_label": b"batch", b"data": data, b"filenames": [b"x.png"] * len(labels)}
            if name == "cifar10":
                batch[b"labels"] = labels
            else:
                batch[b"fine_labels"] = labels
                batch[b"coarse_labels"] = [lab // 5 for lab in labels]
            members[fname] = dumps(batch)
            expected[split].append((data, labels))
    names = [f"class{i:02d}".encode() for i in range(n_classes)]
    meta = {spec["names_key"].encode(): names, b"num_cases_per_batch": N_PER_BATCH}
    members[spec["meta"]] = dumps(meta)
    with tarfile.open(path, "w:gz") as tf:
        for fname, blob in members.items():
            info = tarfile.TarInfo(f"{spec['folder']}/{fname}")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return expected


class Evil:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


# --------------------------------------------------------------------------- restricted unpickler


def test_restricted_unpickler_rejects_os_system(tmp_path):
    sentinel = tmp_path / "pwned"
    blob = pickle.dumps({b"data": Evil(sentinel)}, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load global .*system"):
        restricted_loads(blob)
    assert not sentinel.exists()
    # the ordinary unpickler would have run it: the test pickle really is dangerous
    pickle.loads(blob)
    assert sentinel.exists()


def test_restricted_unpickler_rejects_eval():
    blob = pickle.dumps(functools.partial(eval, "1+1"))
    with pytest.raises(pickle.UnpicklingError, match="functools.partial"):
        restricted_loads(blob)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_restricted_unpickler_reads_numpy_batches(protocol):
    data, labels = batch_arrays(3)
    obj = restricted_loads(pickle.dumps({b"data": data, b"labels": labels, b"name": "x"}, protocol=protocol))
    assert np.array_equal(obj[b"data"], data) and obj[b"labels"] == labels and obj[b"name"] == "x"
    assert isinstance(RestrictedUnpickler.ALLOWED, frozenset)


def test_malicious_batch_in_archive_is_a_clear_error(tmp_path):
    make_cifar_archive(tmp_path / "cifar-10-python.tar.gz")
    # replace data_batch_3 by the os.system pickle
    sentinel = tmp_path / "pwned"
    src = tmp_path / "cifar-10-python.tar.gz"
    bad = tmp_path / "bad" / "cifar-10-python.tar.gz"
    bad.parent.mkdir()
    with tarfile.open(src) as tin, tarfile.open(bad, "w:gz") as tout:
        for m in tin:
            blob = tin.extractfile(m).read()
            if m.name.endswith("data_batch_3"):
                blob = pickle.dumps({b"data": Evil(sentinel)}, protocol=2)
                m.size = len(blob)
            tout.addfile(m, io.BytesIO(blob))
    with pytest.raises(UsageError, match="data_batch_3.*refusing"):
        load_dataset("cifar10", root=bad.parent)
    assert not sentinel.exists()


# --------------------------------------------------------------------------- official layout


@pytest.mark.parametrize("unpacked", [False, True])
def test_cifar10_archive_and_folder(tmp_path, unpacked):
    expected = make_cifar_archive(tmp_path / "cifar-10-python.tar.gz")
    if unpacked:
        with tarfile.open(tmp_path / "cifar-10-python.tar.gz") as tf:
            tf.extractall(tmp_path / "x", filter="data")
        (tmp_path / "cifar-10-python.tar.gz").unlink()
        root = tmp_path / "x"
    else:
        root = tmp_path
    train = load_dataset("cifar10", root=root)
    test = load_dataset("cifar10", root=root, split="test")
    assert train.images.shape == (5 * N_PER_BATCH, 3, 32, 32) and test.images.shape == (N_PER_BATCH, 3, 32, 32)
    assert train.classes == [f"class{i:02d}" for i in range(10)]
    # batch order kept, channel-major 3072 -> (3, 32, 32)
    data2, labels2 = expected["train"][1]
    assert np.array_equal(train.images[N_PER_BATCH : 2 * N_PER_BATCH].numpy(), data2.reshape(-1, 3, 32, 32))
    assert train.labels[N_PER_BATCH : 2 * N_PER_BATCH].tolist() == labels2
    all_train = np.concatenate([d for d, _ in expected["train"]]).reshape(-1, 3, 32, 32) / 255.0
    np.testing.assert_allclose(test.mean, all_train.mean(axis=(0, 2, 3)), rtol=1e-10)
    assert test.images.dtype == torch.uint8 and test.labels.dtype == torch.int64


def test_python2_pickles_as_in_the_official_files(tmp_path):
    expected = make_cifar_archive(tmp_path / "cifar-10-python.tar.gz", protocol="py2")
    raw = tarfile.open(tmp_path / "cifar-10-python.tar.gz").extractfile("cifar-10-batches-py/test_batch").read()
    assert b"cnumpy.core.multiarray\n_reconstruct" in raw and b"_codecs" not in raw  # really the py2 form
    test = load_dataset("cifar10", root=tmp_path, split="test")
    data, labels = expected["test"][0]
    assert np.array_equal(test.images.numpy(), data.reshape(-1, 3, 32, 32)) and test.labels.tolist() == labels
    assert test.classes[3] == "class03"


def test_cifar100_fine_labels(tmp_path):
    expected = make_cifar_archive(tmp_path / "cifar-100-python.tar.gz", name="cifar100", protocol=4)
    train = load_dataset("cifar100", root=tmp_path)
    assert len(train.classes) == 100
    assert train.labels.tolist() == expected["train"][0][1]


def test_missing_cifar_names_paths_url_and_env(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("cifar10", root=tmp_path / "none")
    msg = str(err.value)
    for part in (str(tmp_path / "none" / "cifar-10-python.tar.gz"), CIFAR["cifar10"]["url"], "download=True", "MANIFOLD_LAB_DATA"):
        assert part in msg


def test_incomplete_archive(tmp_path):
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tf:
        blob = b"hello"
        info = tarfile.TarInfo("cifar-10-batches-py/readme.html")
        info.size = len(blob)
        tf.addfile(info, io.BytesIO(blob))
    with pytest.raises(UsageError, match="missing.*data_batch_1"):
        load_dataset("cifar10", root=tmp_path)


# --------------------------------------------------------------------------- download


@pytest.fixture
def http_root(tmp_path):
    """A folder served over HTTP on 127.0.0.1; yields (folder, base url)."""
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_download_checksum_ok_extracts(http_root, tmp_path):
    served, base = http_root
    make_cifar_archive(served / "cifar-10-python.tar.gz")
    digest = sha256_file(served / "cifar-10-python.tar.gz")
    dest = tmp_path / "dest"
    archive = download_and_extract(f"{base}/cifar-10-python.tar.gz", dest, sha256=digest)
    assert archive == dest / "cifar-10-python.tar.gz" and sha256_file(archive) == digest
    assert sorted(p.name for p in (dest / "cifar-10-batches-py").iterdir()) == sorted(
        [*CIFAR["cifar10"]["train"], "test_batch", "batches.meta"]
    )
    assert sorted(p.name for p in dest.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]  # no temp left


def test_download_wrong_checksum_writes_nothing(http_root, tmp_path):
    served, base = http_root
    make_cifar_archive(served / "cifar-10-python.tar.gz")
    dest = tmp_path / "dest"
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(UsageError, match=f"checksum mismatch.*expected sha256 {wrong}"):
        download_and_extract(f"{base}/cifar-10-python.tar.gz", dest, sha256=wrong)
    assert not dest.exists() or list(dest.iterdir()) == []


def test_download_unreachable_is_usage_error(http_root, tmp_path):
    _, base = http_root
    with pytest.raises(UsageError, match="could not download"):
        download(f"{base}/absent.tar.gz", tmp_path / "a.tar.gz", sha256="0" * 64)
    assert not (tmp_path / "a.tar.gz").exists()


def test_load_dataset_download_true(http_root, tmp_path, monkeypatch):
    served, base = http_root
    expected = make_cifar_archive(served / "cifar-10-python.tar.gz")
    spec = dict(CIFAR["cifar10"], url=f"{base}/cifar-10-python.tar.gz", sha256=sha256_file(served / "cifar-10-python.tar.gz"))
    monkeypatch.setitem(cifar_mod.CIFAR, "cifar10", spec)
    root = tmp_path / "data"
    test = load_dataset("cifar10", root=root, split="test", download=True)
    assert test.labels.tolist() == expected["test"][0][1]
    assert (root / "cifar-10-batches-py" / "test_batch").is_file()
    # second call finds the extracted folder: no network needed
    served.joinpath("cifar-10-python.tar.gz").unlink()
    assert len(load_dataset("cifar10", root=root, split="test", download=True)) == N_PER_BATCH


def test_download_into_cache_is_found_again_without_download(http_root, tmp_path, monkeypatch):
    served, base = http_root
    make_cifar_archive(served / "cifar-10-python.tar.gz")
    spec = dict(CIFAR["cifar10"], url=f"{base}/cifar-10-python.tar.gz", sha256=sha256_file(served / "cifar-10-python.tar.gz"))
    monkeypatch.setitem(cifar_mod.CIFAR, "cifar10", spec)
    monkeypatch.setenv("MANIFOLD_LAB_DATA", str(tmp_path / "no-data-here"))
    cache = tmp_path / "cache"
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_dataset("cifar10", cache_dir=cache)
    assert len(load_dataset("cifar10", cache_dir=cache, download=True)) == 5 * N_PER_BATCH
    assert (cache / "cifar" / "cifar-10-batches-py").is_dir()
    served.joinpath("cifar-10-python.tar.gz").unlink()
    assert len(load_dataset("cifar10", cache_dir=cache)) == 5 * N_PER_BATCH


@pytest.mark.parametrize("unpacked", [False, True])
def test_a_member_larger_than_the_release_is_refused_before_it_is_read(tmp_path, monkeypatch, unpacked):
    """The size in the member's header (or on disk) is checked against the release's before reading."""
    from manifold_lab.data import cifar

    make_cifar_archive(tmp_path / "cifar-10-python.tar.gz")
    root = tmp_path
    if unpacked:
        with tarfile.open(tmp_path / "cifar-10-python.tar.gz") as tf:
            tf.extractall(tmp_path / "x", filter="data")
        (tmp_path / "cifar-10-python.tar.gz").unlink()
        root = tmp_path / "x"
    read = []
    monkeypatch.setattr(cifar, "MAX_MEMBER_BYTES", {"cifar10": 1000, "cifar100": 1000})  # below the tiny batches
    monkeypatch.setattr(tarfile.TarFile, "extractfile", lambda self, m: read.append(m) or None)
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self) or b"")
    with pytest.raises(UsageError, match=r"holds [\d,]+ bytes, more than the release's files \(1,000 at most\)"):
        load_dataset("cifar10", root=root)
    # nothing over the limit was read (a small member such as batches.meta may come first in listing order)
    sizes = [m.size if isinstance(m, tarfile.TarInfo) else Path(m).stat().st_size for m in read]
    assert all(size <= 1000 for size in sizes), sizes
