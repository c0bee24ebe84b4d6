"""Data files named on the command line or in the API: a path, or the name of a dataset embedded in molks.

Kept free of heavy imports (no torch).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["EMBEDDED_DATA", "embedded_data_file", "resolve_data_file"]

EMBEDDED_DATA = {"moses-sample": "moses_sample.smi", "expressions": "expressions.txt"}


def embedded_data_file(name: str) -> Path:
    """The file of a dataset embedded in molks (a key of :data:`EMBEDDED_DATA`)."""
    import molks.default_data

    return Path(molks.default_data.__file__).resolve().parent / EMBEDDED_DATA[name]


def resolve_data_file(name_or_path: str) -> Path:
    """A data file path, or the name of a dataset embedded in molks (moses-sample, expressions).

    A file of that name in the working directory wins over the embedded dataset.
    """
    path = Path(name_or_path)
    if not path.exists() and name_or_path in EMBEDDED_DATA:
        return embedded_data_file(name_or_path)
    return path
