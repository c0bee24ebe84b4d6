"""Files whose SHA-256 is recorded beside them when written and compared when they are read back.

The record is ``NAME.sha256`` beside ``NAME.EXT`` in ``sha256sum`` format (``HEX  NAME.EXT``), the
format of the training checkpoints' records (:func:`molks.training.checkpoint.save_weights`).
Writing is crash-safe: while the new file is being written the record lists the old file's hash
and the new one, so a process killed at any point leaves a record that accepts the file on disk.

Kept free of heavy imports (no torch), like :mod:`molks.files`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from molks.errors import InputError
from molks.files import atomic_write_bytes, atomic_write_text, file_sha256

__all__ = ["ChecksumError", "record_of", "verify_checksum", "write_checksummed"]


class ChecksumError(InputError):
    """A file's bytes are not the ones recorded when it was written (or its record is unreadable)."""


def record_of(path: str | os.PathLike[str]) -> Path:
    """Where the SHA-256 of ``path`` is recorded: ``NAME.sha256`` beside ``NAME.EXT``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.sha256")


def write_checksummed(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and record its SHA-256 in :func:`record_of` ``path``."""
    path = Path(path)
    new = hashlib.sha256(data).hexdigest()
    record = record_of(path)
    old = file_sha256(path) if path.is_file() else None
    if old is not None and old != new:
        atomic_write_text(record, f"{old}  {path.name}\n{new}  {path.name}\n")
    atomic_write_bytes(path, data)
    atomic_write_text(record, f"{new}  {path.name}\n")


def verify_checksum(path: str | os.PathLike[str], what: str = "the file", record: str | os.PathLike[str] | None = None) -> None:
    """Refuse ``path`` if its SHA-256 is not one its ``record`` (default :func:`record_of` ``path``)
    holds: a :class:`ChecksumError` naming the file, the record and ``what`` the file is. A file
    without a record (written before records existed) is not checked."""
    path = Path(path)
    record = record_of(path) if record is None else Path(record)
    if not record.is_file() or not path.is_file():
        return
    try:
        lines = record.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ChecksumError(f"{record}: unreadable record of the SHA-256 of {path.name} ({err})") from None
    recorded = []
    for line in lines:
        digest, _, name = line.strip().partition("  ")
        if name.lstrip("*") == path.name and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest.lower()):
            recorded.append(digest.lower())
    if not recorded:
        raise ChecksumError(f"{record}: holds no SHA-256 of {path.name} (expected lines 'HEX  {path.name}')")
    actual = file_sha256(path)
    if actual not in recorded:
        raise ChecksumError(
            f"{path}: its SHA-256 {actual[:16]}... is not the {recorded[-1][:16]}... recorded in {record.name} when it "
            f"was written: {what}, altered or damaged on disk since (restore the file, or delete {record.name} if "
            "the change is intended)"
        )
