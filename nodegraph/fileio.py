"""Durable file writes shared by the engine, the node pack, batch runs and the editor."""
from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import WriteError


@contextmanager
def writing(path: str | os.PathLike[str], what: str = "write") -> Iterator[None]:
    """Turn an OSError raised inside the block into a :class:`WriteError` naming ``path`` and saying,
    in plain words, why it failed and what to do (``what``: "write", "create the folder", …)."""
    try:
        yield
    except WriteError:
        raise
    except OSError as exc:
        raise WriteError(path, exc, what) from exc


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Make the content of the file at ``path`` durable."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a rename or link inside ``folder`` durable (POSIX; a no-op elsewhere or on failure)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_UMASK = os.umask(0o022)  # read the process umask (the only way is to set it) and put it back
os.umask(_UMASK)


def usual_mode() -> int:
    """The mode a plain new file gets here: 0666 less the process umask."""
    return 0o666 & ~_UMASK


def give_usual_mode(fd: int, replacing: str | os.PathLike[str] | None = None) -> None:
    """Give a ``tempfile.mkstemp`` file (private: 0600) the mode a plain new file would get (0666
    less the umask), or the mode of the file it is about to replace. A no-op where there is no fchmod."""
    if not hasattr(os, "fchmod"):
        return
    mode = usual_mode()
    if replacing is not None:
        try:
            mode = os.stat(replacing).st_mode & 0o7777
        except OSError:
            pass
    os.fchmod(fd, mode)


def write_text_atomic(path: str | os.PathLike[str], text: str, *, parents: bool = False) -> Path:
    """Replace ``path`` with ``text`` (UTF-8, ``\\n`` newlines) atomically: a temporary file in the
    same folder, fsync, rename. A reader sees the old file or the new one, never a partial one. A new
    file gets the usual mode (not mkstemp's private 0600); a replaced one keeps its mode. ``parents``:
    create missing folders first. Fails with a :class:`WriteError` naming the path and saying what to
    do; the temporary file is removed."""
    path = Path(path)
    with writing(path):
        if parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            give_usual_mode(fd, path)
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path
