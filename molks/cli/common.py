"""What every command shares: bad input (a MolksError) ends in one clear line on stderr, not a traceback."""

from __future__ import annotations

import functools
import io
import os
import sys
from collections.abc import Callable
from enum import Enum
from typing import Any, NoReturn, TypeVar

import typer

from molks.errors import MolksError

F = TypeVar("F", bound=Callable[..., Any])


def choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A str Enum of ``values`` for an option's choices, each member named and valued as the library
    spells it (``Regularizer["cv-vae"].value == "cv-vae"``): built from the library's own list of
    names, so that the command line offers exactly what the library accepts."""
    return Enum(name, {value: value for value in values}, type=str)


def fail(message: str) -> NoReturn:
    """End the command: one line on stderr, exit code 2 (bad input, for every command)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that Python's final flush does not fail on the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):  # not a real file (e.g. a test runner's buffer)
        pass


def fail_cleanly(command: F) -> F:
    """Bad input -- a :class:`~molks.errors.MolksError`, which names the file, line, item or option --
    ends the command in one line with exit code 2. Anything else is a bug and shows as one (a
    traceback, exit code 1); typer's own usage errors are left to typer."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BrokenPipeError:  # `molks encode ... | head`: the reader has all it wanted
            _silence_stdout()
            raise typer.Exit(code=0) from None
        except MolksError as err:
            fail(str(err))

    return wrapper  # type: ignore[return-value]


def check_distinct_files(**paths: str | os.PathLike[str] | None) -> None:
    """Refuse two of a command's files that are one file (``--out`` and ``--codes``, an output and
    the input it is made from): the second write would replace the first, or the output the input.
    Keyword names are the options (``out`` is said as ``--out``); None (not given) is skipped."""
    seen: dict[str, str] = {}
    for name, path in paths.items():
        if path is None or str(path) in ("", "-"):
            continue
        real = os.path.realpath(path)  # the same file by another spelling, or through a link
        option = name if name.isupper() else f"--{name.replace('_', '-')}"
        if real in seen:
            raise MolksError(f"{seen[real]} and {option} are the same file ({path}): one would overwrite the other")
        seen[real] = option
