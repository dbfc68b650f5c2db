"""CIFAR-10 and CIFAR-100 from the official python archives (Krizhevsky, 2009).

``cifar-10-python.tar.gz`` holds ``cifar-10-batches-py/`` with pickled
batches ``data_batch_1..5`` (train, 5 x 10,000), ``test_batch`` and
``batches.meta``; ``cifar-100-python.tar.gz`` holds ``cifar-100-python/``
with ``train``, ``test`` and ``meta``. Each batch is a dict with ``data``
(uint8 ``(N, 3072)``, channel-major 3 x 32 x 32), ``labels`` (CIFAR-10) or
``fine_labels`` (CIFAR-100). Either the archive (read member by member, no
extraction) or the unpacked folder is accepted.

Pickles can run arbitrary code when loaded, so they are read with
``RestrictedUnpickler``: it admits only the built-in containers and scalars
the format uses and the few numpy functions that rebuild an ndarray; any
other global (``os.system``, ``builtins.eval``, ...) is refused.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np

from manifold_lab.data.base import (
    DATA_ENV,
    ImageData,
    channel_stats,
    check_split,
    data_search_roots,
    default_cache_dir,
    make_image_data,
    missing_data_error,
)
from manifold_lab.errors import UsageError

#: Per dataset: official URL and sha256, archive and folder names, batch files per split,
#: the meta file and the keys holding the labels and the class names.
CIFAR = {
    "cifar10": dict(
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        archive="cifar-10-python.tar.gz",
        folder="cifar-10-batches-py",
        train=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test=("test_batch",),
        meta="batches.meta",
        label_key="labels",
        names_key="label_names",
    ),
    "cifar100": dict(
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        sha256="85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
        archive="cifar-100-python.tar.gz",
        folder="cifar-100-python",
        train=("train",),
        test=("test",),
        meta="meta",
        label_key="fine_labels",
        names_key="fine_label_names",
    ),
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only rebuilds the types a CIFAR batch contains.

    dict, list, bytes, str and int come from pickle opcodes without any
    global lookup; the only globals admitted are in ``ALLOWED``: numpy's
    ndarray reconstruction (old and new module paths) and ``_codecs.encode``,
    which protocol-2 pickles written by Python 3 use for ``bytes``.
    """

    ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str):  # noqa: D102 - pickle API
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name} from a CIFAR pickle: only numpy arrays, "
                "dict, list, bytes, str and int are expected (the file is corrupt or not a CIFAR batch)"
            )
        return super().find_class(module, name)


def restricted_loads(data: bytes) -> object:
    """``pickle.loads`` through ``RestrictedUnpickler`` (latin1 for Python 2 strings, as numpy needs)."""
    return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()


def _batch(data: bytes, name: str) -> dict[str, object]:
    try:
        obj = restricted_loads(data)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise UsageError(f"cannot read CIFAR file {name}: {exc}") from exc
    if not isinstance(obj, dict):
        raise UsageError(f"CIFAR file {name} does not hold a dict (got {type(obj).__name__})")
    # Python 2 pickles read as latin1 have str keys, Python 3 ones bytes keys: use str.
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def cifar_search_roots(root: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """``data_search_roots(root)``, plus ``<cache_dir>/cifar`` (where ``download=True``
    puts the archive) when no ``root`` is given."""
    roots = data_search_roots(root)
    if root is None:
        roots.append(default_cache_dir(cache_dir) / "cifar")
    return roots


def find_cifar(
    name: str, root: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None
) -> Path | None:
    """The archive or unpacked folder of ``name`` under ``cifar_search_roots``, or None."""
    spec = CIFAR[name]
    for base in cifar_search_roots(root, cache_dir):
        for cand in (base / spec["folder"], base / spec["archive"]):
            if cand.exists():
                return cand
        if (base.name == spec["folder"] and base.is_dir()) or (base.name == spec["archive"] and base.is_file()):
            return base
    return None


def missing_cifar(name: str, root: str | os.PathLike | None = None,
                  cache_dir: str | os.PathLike | None = None) -> FileNotFoundError:
    """The error for a CIFAR release absent from every search root: the paths searched and how to get it."""
    spec = CIFAR[name]
    searched = [b / f for b in cifar_search_roots(root, cache_dir) for f in (spec["folder"], spec["archive"])]
    return missing_data_error(f"{name} ({spec['archive']})", searched,
                              f"Pass download=True (fetches {spec['url']}), or set ${DATA_ENV} / root= to the folder "
                              "holding it.")


#: The largest file a release may hold, a little above the real one (cifar-10: 31,035,704-byte batches;
#: cifar-100: its 155,249,918-byte train file): a larger member is refused before it is read.
MAX_MEMBER_BYTES = {"cifar10": 32 << 20, "cifar100": 160 << 20}


def _too_large(source: Path, name: str, size: int, limit: int) -> UsageError:
    return UsageError(f"{source}: {name} holds {size:,} bytes, more than the release's files ({limit:,} at most); "
                      f"not an official CIFAR release")


def _read_files(source: Path, wanted: set[str], limit: int) -> dict[str, bytes]:
    """Bytes of the files named ``wanted`` (base names) from the folder or the archive, each at most ``limit``."""
    found: dict[str, bytes] = {}
    if source.is_dir():
        for fname in wanted:
            p = source / fname
            if p.is_file():
                if p.stat().st_size > limit:
                    raise _too_large(source, fname, p.stat().st_size, limit)
                found[fname] = p.read_bytes()
    else:
        try:
            with tarfile.open(source, "r|*") as tf:
                for member in tf:
                    base = member.name.rsplit("/", 1)[-1]
                    if member.isfile() and base in wanted:
                        if member.size > limit:  # the header's size bounds what extractfile reads
                            raise _too_large(source, member.name, member.size, limit)
                        found[base] = tf.extractfile(member).read()
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise UsageError(f"cannot read CIFAR archive {source}: {exc}") from exc
    missing = sorted(wanted - set(found))
    if missing:
        raise UsageError(f"{source} is not a complete CIFAR release: missing {missing}")
    return found


def read_cifar_arrays(name: str, source: str | os.PathLike) -> dict[str, object]:
    """Both splits of an official CIFAR release.

    Returns
    -------
    dict with ``train_images`` / ``test_images`` uint8 (N, 3, 32, 32),
    ``train_labels`` / ``test_labels`` int64 (N,), ``classes`` list of str.
    """
    spec = CIFAR[name]
    source = Path(source)
    files = _read_files(source, {*spec["train"], *spec["test"], spec["meta"]}, MAX_MEMBER_BYTES[name])
    meta = _batch(files[spec["meta"]], spec["meta"])
    if spec["names_key"] not in meta:
        raise UsageError(f"{source}/{spec['meta']} has no {spec['names_key']!r} entry")
    names = meta[spec["names_key"]]
    out: dict[str, object] = {"classes": [c.decode("utf-8") if isinstance(c, bytes) else str(c) for c in names]}
    for split in ("train", "test"):
        images, labels = [], []
        for fname in spec[split]:
            batch = _batch(files[fname], fname)
            if "data" not in batch or spec["label_key"] not in batch:
                raise UsageError(f"{source}/{fname} lacks 'data' or {spec['label_key']!r}")
            data = np.asarray(batch["data"], dtype=np.uint8)
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                raise UsageError(f"{source}/{fname}: data has shape {data.shape}, expected (N, 3072)")
            images.append(data.reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[spec["label_key"]], dtype=np.int64))
        out[f"{split}_images"] = np.concatenate(images)
        out[f"{split}_labels"] = np.concatenate(labels)
    return out


def load_cifar(
    name: str,
    split: str = "train",
    *,
    root: str | os.PathLike | None = None,
    subset: int | None = None,
    seed: int = 0,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> ImageData:
    """One split of the official CIFAR-10 / CIFAR-100 release as ``ImageData``.

    Searched in ``cifar_search_roots(root, cache_dir)``. With ``download=True``
    and nothing found, the archive is fetched from the official URL (sha256
    checked) into ``root`` (or ``<cache_dir>/cifar``) and extracted there;
    later calls find it there without ``download``.
    """
    from manifold_lab.data.download import download_and_extract

    if name not in CIFAR:
        raise UsageError(f"name={name!r} is not one of {tuple(CIFAR)}")
    check_split(split)
    spec = CIFAR[name]
    source = find_cifar(name, root, cache_dir)
    if source is None and download:
        dest = data_search_roots(root)[0] if root is not None else default_cache_dir(cache_dir) / "cifar"
        download_and_extract(spec["url"], dest, sha256=spec["sha256"], filename=spec["archive"])
        source = dest / spec["folder"]
    if source is None:
        raise missing_cifar(name, root, cache_dir)
    arrays = read_cifar_arrays(name, source)
    mean, std = channel_stats(arrays["train_images"])
    return make_image_data(
        arrays[f"{split}_images"], arrays[f"{split}_labels"], arrays["classes"], mean, std, subset=subset, seed=seed
    )
