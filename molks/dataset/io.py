"""Reading dataset files: one item per line (``.smi``, ``.smiles``, ``.txt``) or a column of a table
(``.csv``, ``.tsv``), each optionally gzipped (``.gz``).

Every item keeps the 1-based line number it starts on, so later failures can point at it.
Files that cannot be used (missing, binary, corrupt gzip, not UTF-8, empty, no such column)
raise :class:`DatasetError` naming the file, the line when there is one, and the reason.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import zlib
from pathlib import Path

from molks.dataset.errors import DatasetError

__all__ = ["load_texts", "read_bytes", "texts_from_bytes", "LINE_SUFFIXES", "TABLE_DELIMITERS"]

LINE_SUFFIXES = (".smi", ".smiles", ".txt")
TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t"}
_GZIP_MAGIC = b"\x1f\x8b"
_DEFAULT_COLUMNS = ("smiles", "SMILES")


def load_texts(
    path: str | os.PathLike[str], column: str | None = None, *, whole_lines: bool = False
) -> list[tuple[int, str]]:
    """The items of a dataset file as ``(line_number, text)`` pairs, 1-based, in file order.

    Line files (``.smi``, ``.smiles``, ``.txt``): one item per line, surrounding whitespace
    stripped, blank lines skipped. A SMILES may be followed by whitespace and a name, which is
    dropped -- unless ``whole_lines`` (for grammars whose sentences contain spaces, e.g.
    arithmetic expressions), which keeps the whole stripped line. A first line reading just
    ``smiles`` (any case) is taken as a header and skipped.

    Tables (``.csv``, ``.tsv``): the first row is the header; the item is the cell of ``column``
    (default: a column named ``smiles`` or ``SMILES``, or the only column of a one-column table; a
    table of several columns without such a column is an error that lists them -- never a silent
    guess), whitespace stripped (ZINC-250k stores each
    SMILES with a newline inside its quotes). A row without that cell gives an empty item, which
    the parsing pipeline reports as a failure. The line number is that of the row's first line.

    Raises :class:`DatasetError` if the file cannot be read, is binary or a corrupt gzip, is not
    UTF-8, holds no items, or lacks the column.
    """
    path = Path(path)
    return texts_from_bytes(path, read_bytes(path), column, whole_lines=whole_lines)


def read_bytes(path: Path) -> bytes:
    """The raw bytes of ``path``; a :class:`DatasetError` says why it cannot be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(path, "no such file") from None
    except IsADirectoryError:
        raise DatasetError(path, "is a directory, not a dataset file") from None
    except PermissionError:
        raise DatasetError(path, "cannot be read: permission denied") from None
    except OSError as err:
        raise DatasetError(path, f"cannot be read: {err.strerror or err}") from None


def texts_from_bytes(
    path: Path, data: bytes, column: str | None = None, *, whole_lines: bool = False
) -> list[tuple[int, str]]:
    """Like :func:`load_texts` for a file already read into ``data`` (``path`` gives its type and name)."""
    suffix = _format_suffix(path)
    text = _decode(path, _decompress(path, data))
    if suffix in TABLE_DELIMITERS:
        items = _table_items(path, text, TABLE_DELIMITERS[suffix], column)
    else:
        if column is not None:
            raise DatasetError(path, f"column={column!r} applies only to .csv and .tsv files, not {suffix} files")
        items = _line_items(text, whole_lines)
        if not items:
            raise DatasetError(path, "is empty: no items (every line is blank)")
    return items


def _format_suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[: -len(".gz")]
    suffix = os.path.splitext(name)[1]
    if suffix not in LINE_SUFFIXES and suffix not in TABLE_DELIMITERS:
        known = ", ".join((*LINE_SUFFIXES, *TABLE_DELIMITERS))
        raise DatasetError(path, f"unknown file type {suffix or '(no suffix)'!r}: expected {known}, optionally .gz")
    return suffix


def _decompress(path: Path, data: bytes) -> bytes:
    # Trust the bytes, not the name: gzip data is recognised by its magic number.
    if not data.startswith(_GZIP_MAGIC):
        if path.name.lower().endswith(".gz") and data:
            raise DatasetError(path, "is not gzip-compressed (no gzip header) although its name ends in .gz")
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetError(path, f"is a corrupt or truncated gzip file: {err}") from None


def _decode(path: Path, data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DatasetError(
            path, f"is not UTF-8 text (byte 0x{data[err.start]:02x}): a binary file?", line=line
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        raise DatasetError(path, "contains NUL bytes: a binary file?", line=text.count("\n", 0, nul) + 1)
    return text


def _line_items(text: str, whole_lines: bool) -> list[tuple[int, str]]:
    items: list[tuple[int, str]] = []
    # split("\n"), not splitlines(): line numbers must match what editors and `grep -n` show.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.strip()
        if not line:
            continue
        item = line if whole_lines else line.split(None, 1)[0]
        if number == 1 and item.lower() == "smiles":
            continue
        items.append((number, item))
    return items


def _table_items(path: Path, text: str, delimiter: str, column: str | None) -> list[tuple[int, str]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    items: list[tuple[int, str]] = []
    try:
        header: list[str] | None = None
        for row in reader:  # leading blank lines come as empty rows
            if row:
                header = [cell.strip() for cell in row]
                break
        if header is None:
            raise DatasetError(path, "is empty: no header row")
        index = _column_index(path, header, column, reader.line_num)
        previous_end = reader.line_num
        for row in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue  # a blank line
            items.append((start, row[index].strip() if index < len(row) else ""))
    except csv.Error as err:
        kind = "CSV" if delimiter == "," else "TSV"
        raise DatasetError(path, f"is not valid {kind}: {err}", line=reader.line_num) from None
    if not items:
        raise DatasetError(path, "has a header but no rows")
    return items


def _column_index(path: Path, header: list[str], column: str | None, line: int) -> int:
    for name in (column,) if column is not None else _DEFAULT_COLUMNS:
        places = [i + 1 for i, cell in enumerate(header) if cell == name]
        if len(places) > 1:  # taking the first would be a guess: the other may be the one meant
            raise DatasetError(
                path, f"the header names {len(places)} columns {name!r} (columns {', '.join(map(str, places))}); "
                "rename all but one", line=line,
            )  # fmt: skip
    if column is not None:
        if column in header:
            return header.index(column)
        folded = [i for i, name in enumerate(header) if name.lower() == column.lower()]
        if len(folded) == 1:
            return folded[0]
        wanted = f"no column {column!r}"
    else:
        for name in _DEFAULT_COLUMNS:
            if name in header:
                return header.index(name)
        if len(header) == 1:  # one column: nothing to choose between (its header may be any name)
            return 0
        wanted = "no 'smiles' or 'SMILES' column (choose one with column=... or --column)"
    columns = ", ".join(repr(name) for name in header)
    raise DatasetError(path, f"{wanted}; the columns are: {columns}", line=line)
