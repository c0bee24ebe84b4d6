"""What every command shares: bad input ends in one clear line on stderr, not a traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])

EMBEDDED_DATA = {"moses-sample": "moses_sample.smi", "expressions": "expressions.txt"}


def resolve_data_file(name_or_path: str) -> Path:
    """A data file path, or the name of a dataset embedded in molks (moses-sample, expressions)."""
    path = Path(name_or_path)
    if not path.exists() and name_or_path in EMBEDDED_DATA:
        import molks.default_data

        return Path(molks.default_data.__file__).resolve().parent / EMBEDDED_DATA[name_or_path]
    return path


def fail(message: str) -> NoReturn:
    """End the command: one line on stderr, exit code 2 (bad input, for every command)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def fail_cleanly(command: F) -> F:
    """Turn the library's input errors (all ValueError subclasses) and OSErrors into exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (ValueError, OSError) as err:
            if isinstance(err, typer.BadParameter):
                raise
            fail(str(err))

    return wrapper  # type: ignore[return-value]
