"""Chemistry every layer of molks shares: reading a molecule, its canonical SMILES, novelty, and
the synthetic-accessibility score.

A low module: :mod:`molks.evaluation`, :mod:`molks.metrics` and :mod:`molks.optimize.targets`
import it downwards, and it imports none of them. What counts as a molecule is the rule of
:class:`molks.domain.Molecules` (RDKit reads it into at least one atom); these are its
molecule-only spellings.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Set as AbstractSet
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING

from molks.domain import MOLECULES
from molks.errors import MolksError

if TYPE_CHECKING:
    from rdkit import Chem

__all__ = ["ChemistryError", "canonical_smiles", "novelty", "read_molecule", "sa_score", "sascorer"]


class ChemistryError(MolksError, RuntimeError):
    """This RDKit installation lacks a part molks needs (its Contrib SA_Score module)."""


def read_molecule(smiles: str | None) -> Chem.Mol | None:
    """RDKit's molecule of a SMILES, or None for None, empty, unreadable or atom-less strings
    (the rule of :class:`molks.domain.Molecules`)."""
    return MOLECULES.read(smiles)


def canonical_smiles(smiles: str | None) -> str | None:
    """RDKit's canonical SMILES, or None for None, empty, unreadable or atom-less strings."""
    return MOLECULES.canonical(smiles)


def novelty(distinct: AbstractSet[str], train: AbstractSet[str]) -> float | None:
    """Distinct items not in ``train`` / distinct items (both in canonical form); None for none.

    The novelty of MOSES (Polykovskiy et al. 2020) when the items are canonical SMILES.
    """
    return len(distinct - train) / len(distinct) if distinct else None


@cache
def sascorer() -> ModuleType:
    """RDKit Contrib's SA_Score module (not importable as a package), loaded once per process:
    the one SA-score loader of molks."""
    from rdkit import RDConfig

    path = os.path.join(RDConfig.RDContribDir, "SA_Score", "sascorer.py")
    spec = importlib.util.spec_from_file_location("molks_rdkit_sascorer", path)
    if not os.path.isfile(path) or spec is None or spec.loader is None:
        raise ChemistryError(f"this RDKit installation lacks its Contrib SA_Score module: {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # Its fragment table (RDKit's own fpscores.pkl.gz) is read lazily; read it now so that
    # worker processes forked after the first score inherit it.
    module.readFragmentScores()
    return module


def sa_score(mol: Chem.Mol) -> float:
    """Synthetic accessibility of a molecule, 1 (easy) .. 10 (hard) (Ertl & Schuffenhauer 2009)."""
    return float(sascorer().calculateScore(mol))
