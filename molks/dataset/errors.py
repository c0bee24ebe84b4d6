"""Errors raised while reading and parsing datasets."""

from __future__ import annotations

import os

from molks.errors import InputError


class DatasetError(InputError):
    """A dataset file cannot be used: it is missing, unreadable, binary, empty, lacks the column
    asked for, or (with ``strict=True``) holds an item that does not parse.

    ``str(err)`` is ``"FILE:LINE: reason"``, or ``"FILE: reason"`` when no line applies, or just
    the reason when no file does (e.g. a failed download).
    """

    def __init__(self, path: str | os.PathLike[str] | None, reason: str, *, line: int | None = None) -> None:
        super().__init__(reason, path=path, line=line)


class CacheWarning(UserWarning):
    """A dataset cache file was unreadable or inconsistent and is being rebuilt, or could not be written."""
