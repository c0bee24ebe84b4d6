"""Files written atomically: the one writer every output of molks goes through.

Kept free of heavy imports (no torch), so that data commands can use it cheaply;
:mod:`molks.training.checkpoint` re-exports it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from molks.errors import FileAccessError, file_access

__all__ = [
    "LOCK_FILE",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "file_sha256",
    "folder_lock",
    "foreign_entries",
    "umask_mode",
]

LOCK_FILE = ".molks.lock"
"""The file in a run or output folder that :func:`folder_lock` locks while a command writes there."""


def umask_mode() -> int:
    """The mode a plain open() would give a new file (temporary files are created 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write(f)`` on a temporary file next to ``path``, then rename it to ``path``: readers see
    the old or the new content, never a mix, and a failure leaves no temporary file behind.

    The one atomic writer of molks. The file gets the mode a plain ``open`` would give it (not the
    temporary file's 0600). An OSError (a full disk, a directory where the file should go) becomes
    a :class:`~molks.errors.FileAccessError` (still an OSError) naming ``path``.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except OSError as err:  # "No space left on device" alone does not say which file
        raise FileAccessError.from_os_error(err, path, "cannot write") from err
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in blocks; an unreadable file is a FileAccessError naming it."""
    digest = hashlib.sha256()
    with file_access(path, "cannot read"), open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], doing: str = "write") -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (created if missing) while the block runs: a second
    molks process that asks for it is refused at once with a :class:`FileAccessError` naming the
    folder and the process holding it, so two runs can never write into one folder.

    The lock is ``flock`` on ``folder/.molks.lock``, which the system releases when the process ends
    however it ends (a kill leaves no stale lock). The file stays; if it is removed while held (a
    failed start cleaning up), the next process locks a new file and checks that it locked the file
    still at that path. A folder this call created and the block left empty (a failed start) is
    removed again. Where ``fcntl`` does not exist (Windows) nothing is locked.
    """
    folder = Path(folder)
    created = not folder.is_dir()
    with file_access(folder, "cannot create the folder"):
        folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover -- Windows
        yield
        return
    path = folder / LOCK_FILE
    while True:
        with file_access(path, "cannot open the lock file"):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, umask_mode())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by another process (BlockingIOError), or a file system without locks
            holder = os.read(fd, 64).decode("ascii", "replace").strip()
            os.close(fd)
            raise FileAccessError(
                folder, f"in use by another molks process{f' (pid {holder})' if holder.isdigit() else ''}; "
                f"wait for it to end or choose another folder to {doing} into",
            ) from None
        try:
            same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        os.close(fd)  # removed (or replaced) between our open and our lock: lock the file there now
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield
    finally:
        if created and not foreign_entries(folder):  # nothing was written: leave no folder behind
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
                folder.rmdir()
        os.close(fd)


def foreign_entries(folder: str | os.PathLike[str], own: tuple[str, ...] = ()) -> list[str]:
    """The names in ``folder`` besides its lock file and ``own``, sorted ([] for a missing folder):
    what a command about to write there would overwrite or mix its files with."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    with file_access(folder, "cannot list"):
        return sorted(name for name in os.listdir(folder) if name != LOCK_FILE and name not in own)
