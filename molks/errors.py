"""The one base of every molks exception: bad input, said in one line that names what is wrong.

Kept free of heavy imports (no torch), so that data commands and worker processes use it cheaply.

Every error molks raises for bad input derives from :class:`MolksError`, and from one of its kinds
(as BoTorch and lark group theirs), so that a caller can catch what it can act on:

* :class:`InputError` (also a ``ValueError``): the input is wrong -- a file's content, a string
  outside the grammar, an option's value, a damaged run or checkpoint. Each module names its own
  (``CodesError``, ``CheckpointError``, the grammar's ``ParseError`` ...) under this kind.
* :class:`UnsupportedError` (also a ``ValueError``): a well-formed request that this machine or
  installation cannot carry out (``--device cuda`` without a GPU).
* :class:`FileAccessError` (also an ``OSError``): a file cannot be read or written.
* ``molks.chemistry.ChemistryError`` (also a ``RuntimeError``): RDKit crashed on an input.

The command line treats a ``MolksError`` as the user's mistake (one line, exit code 2) and anything
else as a bug.

>>> str(MolksError("not a valid SMILES", path="in.smi", line=3))
'in.smi:3: not a valid SMILES'
>>> str(MolksError("too long", item=4))
'item 4: too long'
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["FileAccessError", "InputError", "MissingFileError", "MolksError", "UnsupportedError", "file_access"]


class MolksError(Exception):
    """Base of the molks exceptions, with optional structured fields.

    ``reason`` is what is wrong; ``path`` and ``line`` say where (a file, and a 1-based line of it),
    ``item`` which input (a 0-based index into a list the caller gave), ``option`` which setting
    (``"--device"``, ``"n_components"``). ``str(err)`` is the one-line message
    ``"PATH:LINE: item ITEM: OPTION: REASON"`` with the parts that are not given left out.
    """

    def __init__(
        self,
        reason: str = "",
        *,
        path: str | os.PathLike[str] | None = None,
        line: int | None = None,
        item: int | None = None,
        option: str | None = None,
    ) -> None:
        self.reason = reason
        self.path = None if path is None else str(path)
        self.line = line
        self.item = item
        self.option = option
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The one-line message (what ``str`` gives)."""
        parts = []
        if self.path is not None:
            parts.append(self.path if self.line is None else f"{self.path}:{self.line}")
        elif self.line is not None:
            parts.append(f"line {self.line}")
        if self.item is not None:
            parts.append(f"item {self.item}")
        if self.option is not None:
            parts.append(self.option)
        parts.append(self.reason or type(self).__name__)
        return ": ".join(parts)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:  # subclasses have other signatures: restore the fields
        state = dict(self.__dict__)
        if isinstance(self, OSError):
            state.update(errno=self.errno, strerror=self.strerror, filename=self.filename)
        return (_restore, (type(self), self.args, state))


def _restore(cls: type[MolksError], args: tuple[Any, ...], state: dict[str, Any]) -> MolksError:
    err = cls.__new__(cls, *args)
    err.args = args
    for name, value in state.items():
        setattr(err, name, value)
    return err


class InputError(MolksError, ValueError):
    """The input is wrong: a file's content, a string, an option's value, a damaged run or checkpoint."""


class UnsupportedError(MolksError, ValueError):
    """A well-formed request this machine or installation cannot carry out (a GPU that is not here)."""


class FileAccessError(MolksError, OSError):
    """A file molks was asked to read or write cannot be (missing, a directory, no permission, a full
    disk). ``filename`` is the file, ``errno`` the system's error number where there is one;
    ``str(err)`` is ``"PATH: REASON"``."""

    def __init__(self, path: str | os.PathLike[str], reason: str, *, errno: int | None = None) -> None:
        super().__init__(reason, path=path)
        self.errno = errno
        self.strerror = reason
        self.filename = self.path

    @classmethod
    def from_os_error(cls, err: OSError, path: str | os.PathLike[str] | None = None, doing: str = "") -> FileAccessError:
        """``err`` said for ``path`` (default: the file ``err`` names): ``"PATH: DOING: STRERROR"``."""
        if isinstance(err, FileAccessError):
            return err
        where = path if path is not None else err.filename if err.filename is not None else "?"
        what = err.strerror or str(err) or type(err).__name__
        kind = MissingFileError if isinstance(err, FileNotFoundError) and cls is FileAccessError else cls
        return kind(where, f"{doing}: {what}" if doing else what, errno=err.errno)


class MissingFileError(FileAccessError, FileNotFoundError):
    """A file molks was asked to read does not exist (a FileNotFoundError too)."""


class file_access:  # noqa: N801 -- used as a context manager, like contextlib's
    """``with file_access(path, "cannot read"):`` turns an OSError inside into a
    :class:`FileAccessError` naming ``path`` (a MolksError inside passes unchanged)."""

    def __init__(self, path: str | os.PathLike[str] | None = None, doing: str = "") -> None:
        self.path = path
        self.doing = doing

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, traceback: Any) -> bool:
        if isinstance(err, OSError) and not isinstance(err, MolksError):
            raise FileAccessError.from_os_error(err, self.path, self.doing) from err
        return False
