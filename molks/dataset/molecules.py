"""Molecules through RDKit: validity check with RDKit's reason, and canonical SMILES.

RDKit's own logging is blocked while molks checks molecules (it would print lines per bad
molecule to stderr); the message of a failure is captured instead and becomes the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from rdkit import Chem, RDLogger, rdBase

from molks.errors import InputError

__all__ = ["MAX_SMILES_LENGTH", "MoleculeError", "check_smiles", "quiet_rdkit", "read_smiles", "silence_rdkit", "too_long"]

# RDKit takes seconds on a SMILES of ten thousand atoms and crashes (or runs for minutes) on fifty
# thousand, so longer strings never reach it. Drug-like datasets stay far below (ZINC: ~120 characters).
MAX_SMILES_LENGTH = 3000

_TIMESTAMP = re.compile(r"^\[\d\d:\d\d:\d\d\]\s*")
_PREFIX = "SMILES Parse Error: "


class MoleculeError(InputError):
    """RDKit rejects a SMILES string; the message is RDKit's reason."""


def read_smiles(smiles: str | None) -> Chem.Mol | None:
    """RDKit's molecule of ``smiles``, or None where molks sees no molecule: None or empty, longer
    than :data:`MAX_SMILES_LENGTH` (never handed to RDKit), unreadable, or without atoms.

    The one rule of what a molecule is (:class:`molks.domain.Molecules` applies it everywhere);
    one RDKit parse, its log blocked, no reason worked out (:func:`check_smiles` gives one).
    """
    if not smiles or too_long(smiles) is not None:
        return None
    with rdBase.BlockLogs():  # costs nothing measurable; keeps RDKit from printing to stderr
        mol = Chem.MolFromSmiles(smiles)
    return mol if mol is not None and mol.GetNumAtoms() > 0 else None


def check_smiles(smiles: str, *, canonicalize: bool = True) -> str:
    """``smiles`` checked by RDKit (parsed and sanitised) and, if ``canonicalize``, rewritten in
    RDKit's canonical isomeric form (``Chem.MolToSmiles`` defaults).

    >>> check_smiles("OCC")
    'CCO'

    Raises :class:`MoleculeError` with the reason when :func:`read_smiles` finds no molecule in it:
    longer than :data:`MAX_SMILES_LENGTH` (RDKit is not asked), RDKit's reason, or no atoms.
    """
    mol = read_smiles(smiles)
    if mol is None:
        raise MoleculeError(_why_not_a_molecule(smiles))
    return Chem.MolToSmiles(mol) if canonicalize else smiles


def _why_not_a_molecule(smiles: str) -> str:
    """Why :func:`read_smiles` gives None for ``smiles`` (RDKit parses it again: failures are rare)."""
    reason = too_long(smiles)
    if reason is not None:
        return reason
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    return "RDKit reads no atoms in it" if mol is not None else _rdkit_reason(smiles)


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
