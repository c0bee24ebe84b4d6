"""Molecules through RDKit: validity check with RDKit's reason, and canonical SMILES.

RDKit's own logging is blocked while molks checks molecules (it would print lines per bad
molecule to stderr); the message of a failure is captured instead and becomes the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from rdkit import Chem, RDLogger, rdBase

from molks.errors import MolksError

__all__ = ["MAX_SMILES_LENGTH", "MoleculeError", "check_smiles", "quiet_rdkit", "silence_rdkit", "too_long"]

# RDKit takes seconds on a SMILES of ten thousand atoms and crashes (or runs for minutes) on fifty
# thousand, so longer strings never reach it. Drug-like datasets stay far below (ZINC: ~120 characters).
MAX_SMILES_LENGTH = 3000

_TIMESTAMP = re.compile(r"^\[\d\d:\d\d:\d\d\]\s*")
_PREFIX = "SMILES Parse Error: "


class MoleculeError(MolksError, ValueError):
    """RDKit rejects a SMILES string; the message is RDKit's reason."""


def check_smiles(smiles: str, *, canonicalize: bool = True) -> str:
    """``smiles`` checked by RDKit (parsed and sanitised) and, if ``canonicalize``, rewritten in
    RDKit's canonical isomeric form (``Chem.MolToSmiles`` defaults).

    >>> check_smiles("OCC")
    'CCO'

    Raises :class:`MoleculeError` with RDKit's reason when RDKit cannot read it, or when it has no
    atoms, or without asking RDKit when it is longer than :data:`MAX_SMILES_LENGTH`.
    """
    reason = too_long(smiles)
    if reason is not None:
        raise MoleculeError(reason)
    with rdBase.BlockLogs():  # costs nothing measurable; keeps RDKit from printing to stderr
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise MoleculeError(_rdkit_reason(smiles))
    if mol.GetNumAtoms() == 0:
        raise MoleculeError("RDKit reads no atoms in it")
    return Chem.MolToSmiles(mol) if canonicalize else smiles


def too_long(smiles: str) -> str | None:
    """Why ``smiles`` is too long to hand to RDKit, or None if it is not."""
    if len(smiles) <= MAX_SMILES_LENGTH:
        return None
    return f"{len(smiles):,} characters, more than the {MAX_SMILES_LENGTH:,} molks hands to RDKit"


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
