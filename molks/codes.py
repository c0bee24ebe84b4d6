"""Codes files: latent codes [N, D] saved as ``.npy`` or ``.csv``, the format ``molks encode``
writes and ``molks decode`` reads.

``.npy``: a float array [N, D], read without pickle. ``.csv``: ``write_codes`` writes the columns
``line, smiles|text, z0 .. z{D-1}`` (those given); ``read_codes`` takes the ``z0 ..`` columns of a
CSV with a header, or every column of a CSV without one (a first row of numbers).

Kept free of torch: numpy only.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import TextIO

import numpy as np

from molks.errors import InputError, file_access
from molks.files import atomic_write, atomic_write_text

__all__ = ["CODE_SUFFIXES", "CodesError", "check_codes_suffix", "read_codes", "write_codes", "write_codes_csv"]

CODE_SUFFIXES = (".npy", ".csv")


class CodesError(InputError):
    """A codes file is unreadable, malformed, or does not fit the model."""


def check_codes_suffix(path: Path, what: str) -> str:
    """``path``'s suffix, .npy or .csv; anything else is a CodesError naming ``what`` (e.g. "--out")."""
    suffix = path.suffix.lower()
    if suffix not in CODE_SUFFIXES:
        raise CodesError(f"{path}: {what} must end in .npy or .csv, not {suffix or '(no suffix)'!r}")
    return suffix


def read_codes(path: Path, latent_dim: int | None = None) -> np.ndarray:
    """Latent codes [N, D] (float32) from a .npy or .csv file; checks D against ``latent_dim``."""
    path = Path(path)
    suffix = check_codes_suffix(path, "a codes file")
    if not path.is_file():
        raise CodesError(f"{path}: no such file")
    if suffix == ".npy":
        _check_npy_size(path)
        try:
            codes = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise CodesError(f"{path}: not a readable .npy array ({err})") from None
        if not isinstance(codes, np.ndarray) or not np.issubdtype(codes.dtype, np.number):
            raise CodesError(f"{path}: holds {getattr(codes, 'dtype', type(codes))}, not numbers")
    else:
        codes = _read_csv_codes(path)
    if codes.ndim == 1:
        codes = codes.reshape(1, -1)
    if codes.ndim != 2 or codes.shape[0] == 0:
        raise CodesError(f"{path}: codes must be a non-empty [N, D] array, got shape {list(codes.shape)}")
    if latent_dim is not None and codes.shape[1] != latent_dim:
        raise CodesError(f"{path}: codes have {codes.shape[1]} dimensions but the model's latent dimension is {latent_dim}")
    codes = codes.astype(np.float32)
    if not np.isfinite(codes).all():
        raise CodesError(f"{path}: codes contain NaN or infinite values")
    return codes


def _check_npy_size(path: Path) -> None:
    """Refuse a .npy file whose header claims other data than the file holds, before numpy reads
    it: a header saying [10**11, 8] would otherwise have numpy allocate 3 TiB for a file of bytes."""
    npy = np.lib.format
    with file_access(path, "cannot read"), open(path, "rb") as f:
        try:
            version = npy.read_magic(f)
            read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, _, dtype = read_header(f)
        except (ValueError, EOFError) as err:
            raise CodesError(f"{path}: not a readable .npy array ({err})") from None
        data_bytes = path.stat().st_size - f.tell()
    if dtype.hasobject:
        raise CodesError(f"{path}: holds Python objects, not numbers")
    claimed = math.prod(shape) * dtype.itemsize
    if claimed != data_bytes:
        raise CodesError(
            f"{path}: its header says {dtype} {list(shape)} ({claimed:,} bytes), but the file holds "
            f"{data_bytes:,} bytes of data (truncated, or not written by numpy)"
        )


def _read_csv_codes(path: Path) -> np.ndarray:
    try:
        with file_access(path, "cannot read"):
            text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise CodesError(f"{path}: not UTF-8 text") from None
    rows = [(number, row) for number, row in enumerate(csv.reader(io.StringIO(text)), start=1) if any(c.strip() for c in row)]
    if not rows:
        raise CodesError(f"{path}: empty")
    columns = list(range(len(rows[0][1])))
    if not all(_is_number(cell) for cell in rows[0][1]):  # a header: take the z0, z1, ... columns
        header = [cell.strip() for cell in rows[0][1]]
        named = sorted((int(name[1:]), i) for i, name in enumerate(header) if name[:1] == "z" and name[1:].isdigit())
        if not named:
            raise CodesError(f"{path}:1: a header without z0, z1, ... columns; the columns are {header}")
        if [k for k, _ in named] != list(range(len(named))):
            raise CodesError(f"{path}:1: the z columns must be z0 .. z{len(named) - 1} without gaps")
        columns = [i for _, i in named]
        rows = rows[1:]
    values = []
    for number, row in rows:
        try:
            values.append([float(row[i]) for i in columns])
        except (ValueError, IndexError):
            raise CodesError(f"{path}:{number}: expected {len(columns)} numbers, got {row}") from None
    return np.asarray(values, dtype=np.float64).reshape(len(values), len(columns))


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def write_codes(path: Path, codes: np.ndarray, texts: list[str] | None = None, lines: list[int] | None = None,
                text_column: str = "smiles") -> None:
    """Write codes [N, D] to .npy (the array only) or .csv (with line and text columns when given)."""
    if check_codes_suffix(path, "--out") == ".npy":
        array = codes.astype(np.float32)
        atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))
        return
    text = io.StringIO()
    write_codes_csv(text, codes, texts, lines, text_column)
    atomic_write_text(path, text.getvalue())


def write_codes_csv(f: TextIO, codes: np.ndarray, texts: list[str] | None, lines: list[int] | None, text_column: str) -> None:
    """Codes as CSV into the text stream ``f`` (a file, or stdout)."""
    writer = csv.writer(f, lineterminator="\n")
    head = (["line"] if lines is not None else []) + ([text_column] if texts is not None else [])
    writer.writerow(head + [f"z{j}" for j in range(codes.shape[1])])
    for i, row in enumerate(codes.tolist()):
        lead = ([lines[i]] if lines is not None else []) + ([texts[i]] if texts is not None else [])
        writer.writerow(lead + [repr(float(v)) for v in row])
