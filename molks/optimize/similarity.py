"""Tanimoto similarity of molecules to one reference molecule, on Morgan fingerprints of radius 2.

>>> from molks.optimize.similarity import SimilarityTo
>>> round(SimilarityTo("c1ccccc1O")(["c1ccccc1O", "c1ccccc1N"])[0], 2)
1.0

Two fingerprints (``FINGERPRINTS``), both RDKit's Morgan generator (radius 2, no chirality) and
RDKit's Tanimoto (``DataStructs.BulkTanimotoSimilarity``):

- ``"morgan2-counts"``: unhashed Morgan counts, what the JT-VAE code computes with
  ``AllChem.GetMorganFingerprint(mol, 2)`` for the similarity-constrained benchmark (the default).
- ``"morgan2-2048"``: 2,048-bit Morgan vectors (``GetMorganFingerprintAsBitVect(mol, 2, 2048)``),
  what HierG2G and later papers use.

Set-level fingerprint metrics (SNN, internal diversity) are :mod:`molks.metrics`'; this module is
the one-against-many similarity a lead optimisation constrains.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

from molks.domain import MOLECULES
from molks.errors import InputError

__all__ = ["DEFAULT_FINGERPRINT", "FINGERPRINTS", "SimilarityError", "SimilarityTo", "fingerprint"]

FINGERPRINTS = ("morgan2-counts", "morgan2-2048")
DEFAULT_FINGERPRINT = "morgan2-counts"


class SimilarityError(InputError):
    """An unknown fingerprint, or a reference that is not a molecule."""


@cache
def _generator(size: int) -> Any:
    return rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=size)


def fingerprint(mol: Chem.Mol, kind: str = DEFAULT_FINGERPRINT) -> Any:
    """The RDKit fingerprint of ``mol`` of the ``kind`` named (one of :data:`FINGERPRINTS`)."""
    if kind == "morgan2-counts":
        return _generator(2048).GetSparseCountFingerprint(mol)  # unhashed: fpSize does not apply
    if kind == "morgan2-2048":
        return _generator(2048).GetFingerprint(mol)
    raise SimilarityError(f"unknown fingerprint {kind!r}; choose one of {', '.join(FINGERPRINTS)}")


class SimilarityTo:
    """Tanimoto similarity to one reference molecule: ``SimilarityTo(smiles)(texts) -> [float | None]``,
    None where a text is not a molecule (:mod:`molks.domain`)."""

    def __init__(self, reference: str, kind: str = DEFAULT_FINGERPRINT) -> None:
        mol = MOLECULES.read(reference)
        if mol is None:
            raise SimilarityError(f"the reference {reference[:80]!r} is not a molecule")
        self.kind = kind
        self.reference = fingerprint(mol, kind)

    def __call__(self, texts: Sequence[str | None]) -> list[float | None]:
        mols = [MOLECULES.read(text) for text in texts]
        readable = [fingerprint(mol, self.kind) for mol in mols if mol is not None]
        values = iter(DataStructs.BulkTanimotoSimilarity(self.reference, readable) if readable else [])
        return [None if mol is None else float(next(values)) for mol in mols]
