"""Molecules through RDKit: validity check with RDKit's reason, and canonical SMILES.

RDKit's own logging is blocked while molks checks molecules (it would print lines per bad
molecule to stderr); the message of a failure is captured instead and becomes the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from rdkit import Chem, RDLogger, rdBase

__all__ = ["MoleculeError", "check_smiles", "quiet_rdkit", "silence_rdkit"]

_TIMESTAMP = re.compile(r"^\[\d\d:\d\d:\d\d\]\s*")
_PREFIX = "SMILES Parse Error: "


class MoleculeError(ValueError):
    """RDKit rejects a SMILES string; the message is RDKit's reason."""


def check_smiles(smiles: str, *, canonicalize: bool = True) -> str:
    """``smiles`` checked by RDKit (parsed and sanitised) and, if ``canonicalize``, rewritten in
    RDKit's canonical isomeric form (``Chem.MolToSmiles`` defaults).

    >>> check_smiles("OCC")
    'CCO'

    Raises :class:`MoleculeError` with RDKit's reason when RDKit cannot read it, or when it has no atoms.
    """
    with rdBase.BlockLogs():  # costs nothing measurable; keeps RDKit from printing to stderr
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise MoleculeError(_rdkit_reason(smiles))
    if mol.GetNumAtoms() == 0:
        raise MoleculeError("RDKit reads no atoms in it")
    return Chem.MolToSmiles(mol) if canonicalize else smiles


def _rdkit_reason(smiles: str) -> str:
    """RDKit's message for a SMILES it rejects (parsed again, rarely, with its error log captured)."""
    capture = getattr(rdBase, "CaptureErrorLog", None)
    if capture is not None:
        with capture() as log:
            Chem.MolFromSmiles(smiles)
        lines = [_TIMESTAMP.sub("", line).strip() for line in log.messages.splitlines()]
        lines = [line for line in lines if line]
        if lines:
            return "RDKit: " + lines[0].removeprefix(_PREFIX)
    # Older RDKit: sanitisation problems can still be named; syntax errors cannot.
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is not None:
        problems = Chem.DetectChemistryProblems(mol)
        if problems:
            return "RDKit: " + problems[0].Message()
        return "RDKit could not sanitize it"
    return "RDKit could not parse it"


def silence_rdkit() -> None:
    """Switch RDKit's logging off for the rest of this process (used in worker processes)."""
    RDLogger.DisableLog("rdApp.*")


@contextmanager
def quiet_rdkit() -> Iterator[None]:
    """RDKit's logging off within the block only (used in the caller's process)."""
    with rdBase.BlockLogs():
        yield
