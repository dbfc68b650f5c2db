"""Atomic file writes that never go through a symbolic link, and their leftovers.

A reader never sees a half-written file: either the old content (or no file)
or the complete new one. Every file the toolkit produces goes through here.

Links: a write, a read and a results folder's tree (the runner, ``report`` and
``train`` check their folder before touching it) refuse a symbolic link; the folder
itself may be a link: the user chose it. Leftovers: a process killed mid-write leaves
its temporary behind (``TEMPORARY``); ``remove_temporaries`` deletes those whose
writer is gone. Reading: ``read_bytes`` reads a regular file only, at most a bounded
number of bytes. Tables: every CSV file is written by ``csv_text`` and every markdown
table cell escaped by ``md_cell``, so a label from a results folder can neither run as
a spreadsheet formula nor break a table.
"""

from __future__ import annotations

import csv
import errno
import io as _stdio
import json
import os
import re
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from manifold_lab.errors import UsageError

#: A temporary of ``atomic_path``: ``.<name>.<pid>.<8 random characters><suffix>``.
TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[a-z0-9_]{8}(?:\.[^.]*)?$")


def _link_error(path: Path) -> UsageError:
    return UsageError(f"{path} is a symbolic link; manifold-lab never writes, reads or deletes through a link "
                      "it did not create: remove the link (or copy the real files there)")


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


#: Largest record of a run or a results folder read (metrics.json, metrics.jsonl, status.json,
#: probe.json, relu_stats.json, provenance.json, config.yaml, spec.yaml): the committed ones
#: are at most about 30 kB, a training of thousands of epochs logs a few MB.
MAX_RECORD_BYTES = 16 << 20


def read_bytes(path: str | os.PathLike, *, limit: int = MAX_RECORD_BYTES, what: str = "a record",
               follow: bool = False, single_link: bool = False) -> bytes:
    """The bytes of a regular file, at most ``limit`` of them read (``UsageError`` naming the file beyond).

    Refuses, with one ``UsageError`` line, a link (unless ``follow``), a folder,
    fifo, socket or device (opened non-blocking, so a fifo never hangs), and a
    file with more than ``limit`` bytes: the bound counts the bytes actually read
    (``limit + 1`` at most), not ``st_size``. ``what`` names the kind of file in
    that message. ``single_link``: refuse a file with other hard links too (a copy
    must not take a file from outside the folder).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0)) if follow else open_nofollow(path, flags)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{path} is not a regular file (a folder, fifo, socket or device); "
                             "manifold-lab reads regular files only")
        if single_link and st.st_nlink > 1:
            raise UsageError(f"{path} has {st.st_nlink} hard links (it is also another file); "
                             "manifold-lab does not copy it: remove it")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UsageError(f"{path} has more than {limit:,} bytes, the limit for {what}; "
                         "it was not read further: remove it or regenerate it")
    return data


def read_text(path: str | os.PathLike, **kwargs: Any) -> str:
    """``read_bytes(path, **kwargs)`` decoded as UTF-8 (``UnicodeDecodeError``, a ``ValueError``, if it is not)."""
    return read_bytes(path, **kwargs).decode("utf-8")


def disk_full(exc: BaseException | None, where: str | os.PathLike) -> str | None:
    """One line for a full disk or quota (``ENOSPC``, ``EDQUOT`` in ``exc`` or what it was raised from),
    naming the folder of the file being written (else ``where``) and that the work resumes; None otherwise."""
    for _ in range(32):  # a chain of causes is short; never loop on a cycle
        if exc is None:
            return None
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            folder = Path(exc.filename).parent if exc.filename else where
            return (f"the disk is full (no space left writing in {folder}); free some space and run the same "
                    "command again: what finished is kept and a run resumes from its last checkpoint")
        exc = exc.__cause__ or exc.__context__
    return None


#: A CSV cell beginning with one of these is a formula to a spreadsheet (CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(text: str) -> str:
    """``text`` as a CSV cell that a spreadsheet shows and never runs: ``'`` is put before a text
    beginning with ``= + - @``, a tab or a carriage return; a number (``-0.5``, ``+1e3``) stays as it is."""
    if text.startswith(FORMULA_START):
        try:
            float(text)
        except ValueError:
            return "'" + text
    return text


def _plain(value: Any) -> str:
    return "" if value is None else str(value)


def csv_text(rows: Sequence[Mapping], columns: Sequence[str], cell: Callable[[Any], str] = _plain) -> str:
    """``rows`` as CSV text under the header ``columns``: each cell ``cell(row.get(column))`` (default:
    ``str``, empty for None), every cell and column name through ``spreadsheet_text``."""
    buffer = _stdio.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([spreadsheet_text(str(c)) for c in columns])
    for row in rows:
        writer.writerow([spreadsheet_text(cell(row.get(c))) for c in columns])
    return buffer.getvalue()


def md_cell(text: str) -> str:
    """``text`` as one markdown table cell: ``\\`` and ``|`` escaped, line breaks turned into spaces."""
    return " ".join(text.replace("\\", "\\\\").replace("|", "\\|").splitlines())


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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                               suffix=suffix if suffix is not None else path.suffix)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        refuse_link(path)
        os.replace(tmp_path, path)
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        if disk_full(exc, path.parent) and not getattr(exc, "filename", None):  # name the file written
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc
        raise


@contextmanager
def staged_folder(root: str | os.PathLike, last: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield an empty folder ``root/.staged-<pid>-<random>``; on success move every file written
    there to the same place under ``root`` (replacing it; the names in ``last`` at the end), then
    delete the folder. On an exception nothing under ``root`` changes: a set of files (a report and
    its tables) is replaced as a set or not at all. Links below ``root`` are refused."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=root, prefix=f".staged-{os.getpid()}-"))
    try:
        yield stage
        files = sorted((p.relative_to(stage) for p in stage.rglob("*") if p.is_file()),
                       key=lambda rel: (rel.as_posix() in last, rel.as_posix()))
        for rel in files:
            target = check_inside(root, root / rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / rel, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


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
    return write_text(path, json.dumps(obj, **{"indent": 2, "sort_keys": True, **kwargs}) + "\n")


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


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (one of another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True
    except (ProcessLookupError, OverflowError):
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
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        match = re.fullmatch(re.escape(prefix) + r"(\d+)-.*", path.name)
        if match and not path.is_symlink() and path.is_dir() and not pid_alive(int(match[1])):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed
