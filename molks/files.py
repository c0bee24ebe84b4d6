"""Files written atomically: the one writer every output of molks goes through.

Kept free of heavy imports (no torch), so that data commands can use it cheaply;
:mod:`molks.training.checkpoint` re-exports it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from molks.errors import FileAccessError, file_access

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "file_sha256", "umask_mode"]


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
