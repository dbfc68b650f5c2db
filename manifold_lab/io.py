"""Atomic file writes that never go through a symbolic link, and their leftovers.

A reader never sees a half-written file: either the old content (or no file)
or the complete new one. Every file the toolkit produces goes through here.

Links: a write refuses a target that is a symbolic link (``refuse_link``), and
``check_inside(root, path)`` refuses a link anywhere between a results folder
and a path inside it. ``check_tree(root)`` refuses any link inside a folder
tree (the runner, ``report`` and ``train`` check their folder before touching
it). ``open_nofollow`` opens a file with ``O_NOFOLLOW``. The folder ``root``
itself may be a link: the user chose it.

Leftovers: a temporary file is named ``.<name>.<pid>.<random><suffix>`` beside
its target; a process killed mid-write leaves it behind, and
``remove_temporaries`` deletes those whose writer is gone.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from manifold_lab.errors import UsageError

#: A temporary of ``atomic_path``: ``.<name>.<pid>.<8 random characters><suffix>``.
TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[a-z0-9_]{8}(?:\.[^.]*)?$")


# --------------------------------------------------------------------------- links


def _link_error(path: Path) -> UsageError:
    return UsageError(
        f"{path} is a symbolic link; manifold-lab never writes, reads or deletes through a link "
        "it did not create: remove the link (or copy the real files there)"
    )


def refuse_link(path: str | os.PathLike) -> Path:
    """``path`` itself, or ``UsageError`` naming it if it is a symbolic link."""
    path = Path(path)
    if path.is_symlink():
        raise _link_error(path)
    return path


def check_inside(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """``path``, after checking that no component below ``root`` (``path`` included) is a link."""
    root, path = Path(root), Path(path)
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        raise UsageError(f"{path} is outside the results folder {root}") from None
    if ".." in parts:
        raise UsageError(f"{path} leaves the results folder {root} ('..')")
    current = root
    for part in parts:
        current = current / part
        refuse_link(current)
    return path


def check_tree(root: str | os.PathLike) -> None:
    """``UsageError`` naming the first symbolic link, or other non-regular file, below ``root``.

    Links are not entered. Fifos, sockets and devices are refused too (opening
    one for writing can block forever or write into a device).
    """
    root = Path(root)
    if not root.is_dir():
        return
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in sorted(dirs + files):
            path = Path(folder) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise _link_error(path)
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise UsageError(f"{path} is not a regular file or a folder (a fifo, socket or device); remove it")


def open_nofollow(path: str | os.PathLike, flags: int, mode: int = 0o666) -> int:
    """``os.open(path, flags | O_NOFOLLOW)``; a link at ``path`` is a ``UsageError`` naming it.

    Opened for writing, ``path`` must be a regular file with no other hard
    link (writing in place into a second name of a user's file would change
    that file); ``O_TRUNC`` is applied only after that check.
    """
    writing = flags & (os.O_WRONLY | os.O_RDWR)
    try:
        fd = os.open(path, (flags & ~os.O_TRUNC) | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
                     | (getattr(os, "O_NONBLOCK", 0) if writing else 0), mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _link_error(Path(path)) from None
        if exc.errno == errno.ENXIO:  # a fifo without a reader
            raise UsageError(f"{path} is not a regular file; remove it") from None
        raise
    if writing:
        st = os.fstat(fd)
        problem = (None if stat.S_ISREG(st.st_mode) and st.st_nlink <= 1 else
                   "is not a regular file" if not stat.S_ISREG(st.st_mode) else
                   f"has {st.st_nlink} hard links (it is also another file)")
        if problem:
            os.close(fd)
            raise UsageError(f"{path} {problem}; manifold-lab does not write into it in place: remove it")
        if flags & os.O_TRUNC:
            os.ftruncate(fd, 0)
        os.set_blocking(fd, True)
    return fd


def read_bytes(path: str | os.PathLike, *, single_link: bool = False) -> bytes:
    """The bytes of a regular file, never through a link (``UsageError``) nor from a fifo or device.

    ``single_link``: refuse a file with other hard links too (a copy must not
    take a file from outside the folder).
    """
    fd = open_nofollow(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{path} is not a regular file")
        if single_link and st.st_nlink > 1:
            raise UsageError(f"{path} has {st.st_nlink} hard links (it is also another file); "
                             "manifold-lab does not copy it: remove it")
        return f.read()


# --------------------------------------------------------------------------- atomic writes


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary name keeps the suffix of ``path`` (so writers that infer the
    format from it, like matplotlib's ``savefig``, still work) and holds the
    writer's pid (``remove_temporaries``). On an exception the temporary file
    is removed and ``path`` is left untouched. A ``path`` that is a symbolic
    link is refused (``UsageError``), before and after the write.
    """
    path = refuse_link(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
        suffix=suffix if suffix is not None else path.suffix,
    )
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        refuse_link(path)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, **kwargs: Any) -> Path:
    kwargs.setdefault("indent", 2)
    kwargs.setdefault("sort_keys", True)
    return write_text(path, json.dumps(obj, **kwargs) + "\n")


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (figures go to files, never to a display), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def savefig(fig: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """``fig.savefig`` through a temporary file (format taken from the suffix)."""
    path = Path(path)
    kwargs.setdefault("format", path.suffix.lstrip(".") or "png")
    if kwargs["format"] == "pdf":
        kwargs.setdefault("metadata", {"CreationDate": None})  # same figure, same bytes
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **kwargs)
    return path


# --------------------------------------------------------------------------- leftovers


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (one of another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def remove_temporaries(folder: str | os.PathLike, *, recursive: bool = False, all_writers: bool = False) -> int:
    """Delete the temporaries of ``atomic_path`` in ``folder`` whose writer process is gone.

    With ``all_writers`` (the caller holds the folder's exclusive lock, so no
    one else writes there) every temporary goes, whatever its pid. Links are
    never entered nor followed; returns the number of files removed.
    """
    folder = Path(folder)
    if not folder.is_dir() or folder.is_symlink():
        return 0
    walker = os.walk(folder, followlinks=False) if recursive else [(str(folder), [], os.listdir(folder))]
    removed = 0
    for here, _dirs, files in walker:
        for name in files:
            match = TEMPORARY.match(name)
            if not match or not (all_writers or not pid_alive(int(match["pid"]))):
                continue
            path = Path(here) / name
            if stat.S_ISREG(path.lstat().st_mode):
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def remove_stale_folders(folder: str | os.PathLike, prefix: str) -> int:
    """Delete folders ``<prefix><pid>-*`` in ``folder`` whose creating process is gone."""
    folder = Path(folder)
    removed = 0
    if not folder.is_dir():
        return 0
    for path in folder.iterdir():
        match = re.fullmatch(re.escape(prefix) + r"(\d+)-.*", path.name)
        if match and not path.is_symlink() and path.is_dir() and not pid_alive(int(match[1])):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed
