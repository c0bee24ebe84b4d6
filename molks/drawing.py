"""PNG drawings: grids of molecules (RDKit ``Draw.MolsToGridImage``), the one place molks draws
molecules; tables of text items; matplotlib figures saved atomically.

>>> from molks.drawing import draw_molecules
>>> draw_molecules(["CCO", "c1ccccc1"], "grid.png", legends=["ethanol", "benzene"])
PosixPath('grid.png')

Used through :meth:`molks.domain.Domain.draw` by evaluation (sampled molecules) and Bayesian
optimisation (best proposals with their scores), and by notebooks (:func:`grid_png` gives the PNG
bytes, :func:`grid_image` a PIL image).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from molks.errors import InputError
from molks.files import atomic_write, atomic_write_bytes

__all__ = ["DrawingError", "draw_molecules", "draw_text_table", "figure", "grid_image", "grid_png", "save_figure"]

MAX_LEGEND = 40  # characters; longer legends (long SMILES) are shortened with an ellipsis


class DrawingError(InputError):
    """Nothing can be drawn (no molecule RDKit can read), or the arguments are inconsistent."""


def _molecules(
    smiles: Sequence[str], legends: Sequence[str] | None, max_molecules: int | None
) -> tuple[list[Any], list[str]]:
    """RDKit molecules of the readable SMILES (unreadable or empty ones are skipped), with legends."""
    from molks.dataset.molecules import read_smiles

    if isinstance(smiles, str):
        raise DrawingError("pass a list of SMILES strings, not a single string")
    if legends is not None and len(legends) != len(smiles):
        raise DrawingError(f"got {len(legends)} legends for {len(smiles)} molecules")
    if max_molecules is not None and max_molecules < 1:
        raise DrawingError(f"max_molecules must be at least 1, got {max_molecules}")
    mols, names = [], []
    for i, text in enumerate(smiles):
        mol = read_smiles(text)
        if mol is None:
            continue
        name = text if legends is None else str(legends[i])
        mols.append(mol)
        names.append(name if len(name) <= MAX_LEGEND else name[: MAX_LEGEND - 3] + "...")
        if max_molecules is not None and len(mols) == max_molecules:
            break
    if not mols:
        # RDKit's grid drawer fails with a C++ precondition violation on an empty list.
        raise DrawingError(f"none of the {len(smiles)} strings is a molecule RDKit can read; nothing to draw")
    return mols, names


def grid_png(
    smiles: Sequence[str],
    legends: Sequence[str] | None = None,
    *,
    per_row: int = 6,
    size: int = 250,
    max_molecules: int | None = 24,
) -> bytes:
    """PNG bytes of a grid of the readable molecules among ``smiles`` (at most ``max_molecules``).

    Unreadable strings (None-like empty strings, invalid SMILES) are skipped, together with their
    legend. ``legends`` default to the SMILES themselves; each is cut to 40 characters.
    Raises :class:`DrawingError` when nothing is readable.
    """
    from rdkit.Chem import Draw

    if per_row < 1 or size < 16:
        raise DrawingError(f"per_row must be >= 1 and size >= 16, got {per_row} and {size}")
    mols, names = _molecules(smiles, legends, max_molecules)
    png = Draw.MolsToGridImage(
        mols, molsPerRow=min(per_row, len(mols)), subImgSize=(size, size), legends=names, returnPNG=True
    )
    if not isinstance(png, bytes):  # IPythonConsole patches the drawer to return a display object
        png = getattr(png, "data", png)
    return bytes(png)


def grid_image(smiles: Sequence[str], legends: Sequence[str] | None = None, **options: Any) -> Any:
    """The grid of :func:`grid_png` as a ``PIL.Image.Image`` (for notebooks)."""
    from PIL import Image

    return Image.open(io.BytesIO(grid_png(smiles, legends, **options)))


def draw_molecules(
    smiles: Sequence[str],
    path: str | os.PathLike[str],
    legends: Sequence[str] | None = None,
    **options: Any,
) -> Path:
    """Write the grid of :func:`grid_png` to ``path`` (atomically; folders are created); returns the path."""
    data = grid_png(smiles, legends, **options)
    target = Path(path)
    atomic_write_bytes(target, data)  # an ordinary file's mode, not the temporary file's 0600
    return target


def draw_text_table(lines: Sequence[str], path: str | os.PathLike[str]) -> Path:
    """Write ``lines`` as a monospace text table to a PNG at ``path`` (atomically); returns the path.

    How items without a structure to draw (expressions, sentences of a user grammar) are shown.
    """
    if isinstance(lines, str):
        raise DrawingError("pass a list of lines, not a single string")
    fig = figure(8, 0.35 * len(lines) + 0.6)
    fig.text(0.02, 0.98, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=10)
    target = Path(path)
    save_figure(fig, target)
    return target


def figure(width: float, height: float) -> Any:
    """A matplotlib Figure drawn with Agg, without pyplot: the global backend (a notebook's) stays as it is."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def save_figure(fig: Any, path: str | os.PathLike[str]) -> None:
    """Write ``fig`` as a PNG (100 dpi) to ``path``, atomically."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
