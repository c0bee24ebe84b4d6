"""PNG grids of molecules (RDKit ``Draw.MolsToGridImage``), the one place molks draws molecules.

>>> from molks.drawing import draw_molecules
>>> draw_molecules(["CCO", "c1ccccc1"], "grid.png", legends=["ethanol", "benzene"])
PosixPath('grid.png')

Used by evaluation (sampled molecules), Bayesian optimisation (best proposals with their
scores) and notebooks (:func:`grid_png` gives the PNG bytes, :func:`grid_image` a PIL image).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from molks.errors import MolksError
from molks.files import atomic_write_bytes

__all__ = ["DrawingError", "draw_molecules", "grid_image", "grid_png"]

MAX_LEGEND = 40  # characters; longer legends (long SMILES) are shortened with an ellipsis


class DrawingError(MolksError, ValueError):
    """Nothing can be drawn (no molecule RDKit can read), or the arguments are inconsistent."""


def _molecules(
    smiles: Sequence[str], legends: Sequence[str] | None, max_molecules: int | None
) -> tuple[list[Any], list[str]]:
    """RDKit molecules of the readable SMILES (unreadable or empty ones are skipped), with legends."""
    from rdkit import Chem, rdBase

    if isinstance(smiles, str):
        raise DrawingError("pass a list of SMILES strings, not a single string")
    if legends is not None and len(legends) != len(smiles):
        raise DrawingError(f"got {len(legends)} legends for {len(smiles)} molecules")
    if max_molecules is not None and max_molecules < 1:
        raise DrawingError(f"max_molecules must be at least 1, got {max_molecules}")
    mols, names = [], []
    with rdBase.BlockLogs():  # RDKit would print a line for every unreadable string
        for i, text in enumerate(smiles):
            mol = Chem.MolFromSmiles(text) if text else None
            if mol is None or mol.GetNumAtoms() == 0:
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
