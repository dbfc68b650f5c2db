"""Checksum-verified, atomic download and extraction of dataset archives.

The archive is streamed into a temporary file beside its destination while
its sha256 is computed; only a matching digest renames it into place, so a
failed or interrupted download never leaves a file that looks complete.
Extraction goes into a temporary folder first (with tarfile's ``data``
filter: no absolute paths, no ``..``, no links out of the tree) and its
top-level entries are renamed into place at the end.

Bounds and leftovers: besides the per-read ``timeout``, a whole download has
an overall ``deadline`` (a server that trickles bytes cannot hold it forever).
The temporaries of a download or an extraction killed midway (named with the
pid of their process) are removed by the next call once that process is gone.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

from manifold_lab.errors import UsageError
from manifold_lab.io import atomic_path, remove_stale_folders, remove_temporaries

CHUNK = 1 << 20
#: Seconds a whole download may take (the archives are 160-170 MB).
DEADLINE = 3600.0
_EXTRACT_PREFIX = ".extract-"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: str | os.PathLike, *, sha256: str, timeout: float = 60.0,
             deadline: float = DEADLINE) -> Path:
    """Download ``url`` to ``dest`` unless a file with the right ``sha256`` is already there.

    ``timeout`` bounds each network operation, ``deadline`` the whole download (seconds).

    Raises
    ------
    UsageError
        The downloaded bytes do not have the expected sha256 (nothing is
        written at ``dest``), the server could not be reached, or the download
        took longer than ``deadline``.
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    remove_temporaries(dest.parent)  # of downloads killed midway (their process is gone)
    end = time.monotonic() + deadline
    try:
        with atomic_path(dest) as tmp:
            h = hashlib.sha256()
            with urllib.request.urlopen(url, timeout=min(timeout, deadline)) as resp, open(tmp, "wb") as out:
                total = int(resp.headers.get("Content-Length") or 0) or None
                read = getattr(resp, "read1", resp.read)  # read1: what has arrived, without waiting for CHUNK
                with tqdm(total=total, desc=dest.name, unit="B", unit_scale=True, disable=None, leave=False) as bar:
                    for block in iter(lambda: read(CHUNK), b""):
                        if time.monotonic() > end:
                            raise UsageError(
                                f"downloading {url} took longer than {deadline:g} s; nothing was written "
                                f"to {dest}; try again later or download it by hand"
                            )
                        h.update(block)
                        out.write(block)
                        bar.update(len(block))
                out.flush()
                os.fsync(out.fileno())
            if h.hexdigest() != sha256:
                raise UsageError(
                    f"checksum mismatch for {url}: expected sha256 {sha256}, got {h.hexdigest()}; "
                    f"nothing was written to {dest}"
                )
    except OSError as exc:  # URLError, HTTPError, timeouts
        raise UsageError(f"could not download {url} to {dest}: {exc}") from exc
    return dest


def extract(archive: str | os.PathLike, dest_dir: str | os.PathLike) -> list[Path]:
    """Extract a tar archive into ``dest_dir``, atomically per top-level entry.

    Entries already present in ``dest_dir`` are kept as they are (a previous
    extraction completed them). Returns the top-level paths.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_folders(dest_dir, _EXTRACT_PREFIX)  # of extractions killed midway
    tmp = Path(tempfile.mkdtemp(dir=dest_dir, prefix=f"{_EXTRACT_PREFIX}{os.getpid()}-"))
    try:
        with tarfile.open(archive) as tf:
            tf.extractall(tmp, filter="data")
        tops = []
        for entry in sorted(tmp.iterdir()):
            target = dest_dir / entry.name
            if not target.exists():
                try:
                    os.replace(entry, target)
                except OSError:
                    # another process (a second DDP rank) put it there first: keep theirs
                    if not target.exists():
                        raise
            tops.append(target)
        return tops
    except tarfile.TarError as exc:
        raise UsageError(f"cannot extract {archive}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def download_and_extract(url: str, dest_dir: str | os.PathLike, *, sha256: str, filename: str | None = None) -> Path:
    """Download ``url`` into ``dest_dir`` (checksum verified) and extract it there.

    Returns the archive's path.
    """
    dest_dir = Path(dest_dir)
    archive = download(url, dest_dir / (filename or url.rsplit("/", 1)[-1]), sha256=sha256)
    extract(archive, dest_dir)
    return archive
