"""The objectives of the PMO benchmark that need only RDKit, with the field's exact definitions.

PMO (Gao et al., "Sample Efficiency Matters", NeurIPS 2022) scores its 23 objectives with PyTDC's
oracles (``tdc.Oracle(name=...)``, PyTDC 1.1.15, ``tdc/chem_utils/oracle/oracle.py``), most of them
GuacaMol's goal-directed benchmarks. PyTDC cannot be installed beside molks (it pins
``rdkit<2024.3.1`` and ``numpy<2``) and GuacaMol requires ``rdkit-pypi``, which clashes with
``rdkit``; so the 20 objectives that need only RDKit are defined here, term by term as PyTDC defines
them, with RDKit's current fingerprint generators in place of the deprecated functions PyTDC calls
(the same fingerprints). ``tests/test_pmo.py`` checks every objective against scores PyTDC itself
computed (``tests/data/pmo_reference.csv``, made by ``tests/data/make_pmo_reference.py``). The three
others (``drd2``, ``gsk3b``, ``jnk3``) score with classifiers PyTDC downloads: not here
(:data:`NOT_RDKIT_ONLY`).

The terms, as PyTDC names them:

- fingerprints, all *count* vectors compared by Tanimoto: ECFP4 / ECFP6 (Morgan radius 2 / 3),
  FCFP4 (Morgan radius 2 on feature invariants), AP (atom pairs up to distance 10), PHCO (Gobbi's 2D
  pharmacophores);
- modifiers mapping a raw value to [0, 1]: :func:`gaussian`, :func:`min_gaussian` (1 up to ``mu``),
  :func:`max_gaussian` (1 from ``mu``), :func:`clipped` (linear from 0 at 0 to 1 at ``upper_x``);
- :func:`geometric_mean` and the arithmetic mean of the terms (an objective says which);
- isomer scores: a Gaussian of every element count of a formula (sigma 1) and of the total atom
  count (sigma 2), hydrogens included, geometric mean.

``qed`` is RDKit's QED, which :mod:`molks.optimize.targets` already has under the same name.

>>> round(score("celecoxib_rediscovery", ["CC1=CC=C(C=C1)C1=CC(=NN1C1=CC=C(C=C1)S(N)(=O)=O)C(F)(F)F"])[0], 6)
1.0
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from rdkit import Chem, DataStructs
from rdkit.Chem import Crippen, Descriptors, rdFingerprintGenerator, rdMolDescriptors

from molks.dataset.molecules import read_smiles

__all__ = [
    "NOT_RDKIT_ONLY",
    "PMO_OBJECTIVES",
    "PmoScore",
    "clipped",
    "gaussian",
    "geometric_mean",
    "max_gaussian",
    "min_gaussian",
    "objective",
    "score",
]

PMO_OBJECTIVES: tuple[str, ...] = (
    "albuterol_similarity",
    "amlodipine_mpo",
    "celecoxib_rediscovery",
    "deco_hop",
    "fexofenadine_mpo",
    "isomers_c7h8n2o2",
    "isomers_c9h10n2o2pf2cl",
    "median1",
    "median2",
    "mestranol_similarity",
    "osimertinib_mpo",
    "perindopril_mpo",
    "qed",
    "ranolazine_mpo",
    "scaffold_hop",
    "sitagliptin_mpo",
    "thiothixene_rediscovery",
    "troglitazone_rediscovery",
    "valsartan_smarts",
    "zaleplon_mpo",
)
"""The 20 PMO objectives that need only RDKit, as PMO names them."""

NOT_RDKIT_ONLY: dict[str, str] = {
    name: "scored by a classifier PyTDC downloads (an old scikit-learn pickle), not by RDKit alone"
    for name in ("drd2", "gsk3b", "jnk3")
}
"""The other 3 PMO objectives, and why they are not here."""

ObjectiveFn = Callable[[Chem.Mol], float]

# ---------------------------------------------------------------- modifiers (PyTDC's ScoreModifiers)


def gaussian(x: float, mu: float, sigma: float) -> float:
    """``exp(-((x - mu) / sigma)**2 / 2)`` (PyTDC's GaussianModifier)."""
    return math.exp(-0.5 * ((x - mu) / sigma) ** 2)


def min_gaussian(x: float, mu: float, sigma: float) -> float:
    """1 for ``x <= mu``, a Gaussian falling off above (MinGaussianModifier: smaller is better)."""
    return gaussian(max(x, mu), mu, sigma)


def max_gaussian(x: float, mu: float, sigma: float) -> float:
    """1 for ``x >= mu``, a Gaussian falling off below (MaxGaussianModifier: larger is better)."""
    return gaussian(min(x, mu), mu, sigma)


def clipped(x: float, upper_x: float, lower_x: float = 0.0) -> float:
    """Linear from 0 at ``lower_x`` to 1 at ``upper_x``, clipped to [0, 1] (ClippedScoreModifier;
    its slope and intercept computed as PyTDC does, so that the rounding is the same)."""
    slope = 1.0 / (upper_x - lower_x)
    intercept = 1.0 - slope * upper_x
    return min(max(slope * x + intercept, 0.0), 1.0)


def geometric_mean(values: Sequence[float]) -> float:
    """``exp(mean(log(values)))``, 0 when a value is 0 (scipy's gmean, which PyTDC uses)."""
    with np.errstate(divide="ignore"):
        return float(np.exp(np.mean(np.log(np.asarray(values, dtype=np.float64)))))


# ---------------------------------------------------------------- fingerprints and similarity

Fingerprint = Any  # an RDKit sparse count vector


@cache
def _generators() -> dict[str, Any]:
    """RDKit's fingerprint generators for PyTDC's fingerprints (made once per process)."""
    return {
        "ECFP4": rdFingerprintGenerator.GetMorganGenerator(radius=2),
        "ECFP6": rdFingerprintGenerator.GetMorganGenerator(radius=3),
        "FCFP4": rdFingerprintGenerator.GetMorganGenerator(
            radius=2, atomInvariantsGenerator=rdFingerprintGenerator.GetMorganFeatureAtomInvGen()
        ),
        "AP": rdFingerprintGenerator.GetAtomPairGenerator(maxDistance=10),
    }


def fingerprint(mol: Chem.Mol, kind: str) -> Fingerprint:
    """PyTDC's fingerprint ``kind`` (ECFP4, ECFP6, FCFP4, AP: count vectors; PHCO: Gobbi 2D pharmacophores)."""
    if kind == "PHCO":
        from rdkit.Chem.Pharm2D import Generate, Gobbi_Pharm2D

        return Generate.Gen2DFingerprint(mol, Gobbi_Pharm2D.factory)
    return _generators()[kind].GetSparseCountFingerprint(mol)


@cache
def _reference(smiles: str, kind: str) -> Fingerprint:
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:  # a constant of this module: a bug, not bad input
        raise AssertionError(f"reference molecule {smiles!r} does not parse")
    return fingerprint(mol, kind)


def similarity(mol: Chem.Mol, reference: str, kind: str) -> float:
    """Tanimoto similarity of ``mol`` to the molecule ``reference`` on fingerprint ``kind``."""
    return DataStructs.TanimotoSimilarity(_reference(reference, kind), fingerprint(mol, kind))


@cache
def _smarts(pattern: str) -> Chem.Mol:
    query = Chem.MolFromSmarts(pattern)
    if query is None:
        raise AssertionError(f"SMARTS {pattern!r} does not parse")
    return query


def has(mol: Chem.Mol, pattern: str) -> float:
    """1.0 if ``mol`` contains the SMARTS ``pattern``, else 0.0."""
    return 1.0 if mol.HasSubstructMatch(_smarts(pattern)) else 0.0


# ---------------------------------------------------------------- isomers

_FORMULA_TERM = re.compile(r"([A-Z][a-z]*)(\d*)")


def formula_counts(formula: str) -> list[tuple[str, int]]:
    """``"C7H8N2O2"`` -> ``[("C", 7), ("H", 8), ("N", 2), ("O", 2)]`` (PyTDC's parse_molecular_formula:
    charges and ``*`` are not elements and are skipped)."""
    return [(element, int(count) if count else 1) for element, count in _FORMULA_TERM.findall(formula)]


def isomer_score(mol: Chem.Mol, formula: str) -> float:
    """How close ``mol``'s composition is to ``formula`` (PyTDC's Isomer_scoring): the geometric mean
    of a Gaussian (sigma 1) of the count of each element of the formula, hydrogens included, and a
    Gaussian (sigma 2) of the total number of atoms of the molecule's own formula."""
    target = formula_counts(formula)
    with_h = Chem.AddHs(mol)
    symbols = [atom.GetSymbol() for atom in with_h.GetAtoms()]
    scores = [gaussian(symbols.count(element), count, 1.0) for element, count in target]
    total = sum(count for _, count in formula_counts(rdMolDescriptors.CalcMolFormula(mol)))
    scores.append(gaussian(total, sum(count for _, count in target), 2.0))
    return geometric_mean(scores)


# ---------------------------------------------------------------- the objectives

CELECOXIB = "CC1=CC=C(C=C1)C1=CC(=NN1C1=CC=C(C=C1)S(N)(=O)=O)C(F)(F)F"
TROGLITAZONE = "Cc1c(C)c2OC(C)(COc3ccc(CC4SC(=O)NC4=O)cc3)CCc2c(C)c1O"
THIOTHIXENE = "CN(C)S(=O)(=O)c1ccc2Sc3ccccc3C(=CCCN4CCN(C)CC4)c2c1"
ALBUTEROL = "CC(C)(C)NCC(O)c1ccc(O)c(CO)c1"
MESTRANOL = "COc1ccc2[C@H]3CC[C@@]4(C)[C@@H](CC[C@@]4(O)C#C)[C@@H]3CCc2c1"
CAMPHOR, MENTHOL = "CC1(C)C2CCC1(C)C(=O)C2", "CC(C)C1CCC(C)CC1O"
TADALAFIL = "O=C1N(CC(N2C1CC3=C(C2C4=CC5=C(OCO5)C=C4)NC6=C3C=CC=C6)=O)C"
SILDENAFIL = "CCCC1=NN(C2=C1N=C(NC2=O)C3=C(C=CC(=C3)S(=O)(=O)N4CCN(CC4)C)OCC)C"
OSIMERTINIB = "COc1cc(N(C)CCN(C)C)c(NC(=O)C=C)cc1Nc2nccc(n2)c3cn(C)c4ccccc34"
FEXOFENADINE = "CC(C)(C(=O)O)c1ccc(cc1)C(O)CCCN2CCC(CC2)C(O)(c3ccccc3)c4ccccc4"
RANOLAZINE = "COc1ccccc1OCC(O)CN2CCN(CC(=O)Nc3c(C)cccc3C)CC2"
PERINDOPRIL = "O=C(OCC)C(NC(C(=O)N1C(C(=O)O)CC2CCCCC12)C)CCC"
AMLODIPINE = "Clc1ccccc1C2C(=C(/N/C(=C2/C(=O)OCC)COCCN)C)\\C(=O)OC"
SITAGLIPTIN = "Fc1cc(c(F)cc1F)CC(N)CC(=O)N3Cc2nnc(n2CC3)C(F)(F)F"
ZALEPLON = "O=C(C)N(CC)C1=CC=CC(C2=CC=NC3=C(C=NN23)C#N)=C1"
HOP_PHARMACOPHORE = "CCCOc1cc2ncnc(Nc3ccc4ncsc4c3)c2cc1S(=O)(=O)C(C)(C)C"
HOP_SCAFFOLD = "[#7]-c1n[c;h1]nc2[c;h1]c(-[#8])[c;h0][c;h1]c12"
VALSARTAN_SMARTS = "CN(C=O)Cc1ccc(c2ccccc2)cc1"


@cache
def _properties(smiles: str) -> tuple[float, float, float]:
    """(Crippen logP, TPSA, Bertz CT) of a reference molecule: the centres of some Gaussians."""
    mol = Chem.MolFromSmiles(smiles)
    return Crippen.MolLogP(mol), rdMolDescriptors.CalcTPSA(mol), Descriptors.BertzCT(mol)


def _tpsa(mol: Chem.Mol) -> float:
    return rdMolDescriptors.CalcTPSA(mol)


def _logp(mol: Chem.Mol) -> float:
    return Crippen.MolLogP(mol)


def _median1(mol: Chem.Mol) -> float:
    return geometric_mean([similarity(mol, CAMPHOR, "ECFP4"), similarity(mol, MENTHOL, "ECFP4")])


def _median2(mol: Chem.Mol) -> float:
    return geometric_mean([similarity(mol, TADALAFIL, "ECFP6"), similarity(mol, SILDENAFIL, "ECFP6")])


def _osimertinib_mpo(mol: Chem.Mol) -> float:
    return geometric_mean([
        max_gaussian(_tpsa(mol), 100, 10),
        min_gaussian(_logp(mol), 1, 1),
        clipped(similarity(mol, OSIMERTINIB, "FCFP4"), 0.8),
        min_gaussian(similarity(mol, OSIMERTINIB, "ECFP6"), 0.85, 0.1),
    ])  # fmt: skip


def _fexofenadine_mpo(mol: Chem.Mol) -> float:
    return geometric_mean([
        max_gaussian(_tpsa(mol), 90, 10),
        min_gaussian(_logp(mol), 4, 1),
        clipped(similarity(mol, FEXOFENADINE, "AP"), 0.8),
    ])  # fmt: skip


def _ranolazine_mpo(mol: Chem.Mol) -> float:
    fluorines = sum(atom.GetSymbol() == "F" for atom in mol.GetAtoms())
    return geometric_mean([
        max_gaussian(_tpsa(mol), 95, 20),
        max_gaussian(_logp(mol), 7, 1),
        clipped(similarity(mol, RANOLAZINE, "AP"), 0.7),
        gaussian(fluorines, 1, 1.0),
    ])  # fmt: skip


def _perindopril_mpo(mol: Chem.Mol) -> float:
    return geometric_mean([
        similarity(mol, PERINDOPRIL, "ECFP4"),
        gaussian(rdMolDescriptors.CalcNumAromaticRings(mol), 2, 0.5),
    ])  # fmt: skip


def _amlodipine_mpo(mol: Chem.Mol) -> float:
    return geometric_mean([similarity(mol, AMLODIPINE, "ECFP4"), gaussian(rdMolDescriptors.CalcNumRings(mol), 3, 0.5)])


def _sitagliptin_mpo(mol: Chem.Mol) -> float:
    logp, tpsa, _ = _properties(SITAGLIPTIN)
    return geometric_mean([
        gaussian(similarity(mol, SITAGLIPTIN, "ECFP4"), 0, 0.1),
        gaussian(_logp(mol), logp, 0.2),
        gaussian(_tpsa(mol), tpsa, 5),
        isomer_score(mol, "C16H15F6N5O"),
    ])  # fmt: skip


def _zaleplon_mpo(mol: Chem.Mol) -> float:
    return geometric_mean([similarity(mol, ZALEPLON, "ECFP4"), isomer_score(mol, "C19H17N3O2")])


def _valsartan_smarts(mol: Chem.Mol) -> float:
    logp, tpsa, bertz = _properties(SITAGLIPTIN)  # sic: PyTDC takes these centres from sitagliptin
    return geometric_mean([
        has(mol, VALSARTAN_SMARTS),
        gaussian(_tpsa(mol), tpsa, 5),
        gaussian(_logp(mol), logp, 0.2),
        gaussian(Descriptors.BertzCT(mol), bertz, 30),
    ])  # fmt: skip


def _deco_hop(mol: Chem.Mol) -> float:
    return float(np.mean([
        clipped(similarity(mol, HOP_PHARMACOPHORE, "PHCO"), 0.85),
        1.0 - has(mol, "CS([#6])(=O)=O"),
        1.0 - has(mol, "[#7]-c1ccc2ncsc2c1"),
        has(mol, HOP_SCAFFOLD),
    ]))  # fmt: skip


def _scaffold_hop(mol: Chem.Mol) -> float:
    return float(np.mean([
        clipped(similarity(mol, HOP_PHARMACOPHORE, "PHCO"), 0.75),
        has(mol, "[#6]-[#6]-[#6]-[#8]-[#6]~[#6]~[#6]~[#6]~[#6]-[#7]-c1ccc2ncsc2c1"),
        1.0 - has(mol, HOP_SCAFFOLD),
    ]))  # fmt: skip


def _qed(mol: Chem.Mol) -> float:
    from rdkit.Chem import QED

    return QED.qed(mol)


_OBJECTIVES: dict[str, ObjectiveFn] = {
    "albuterol_similarity": lambda mol: clipped(similarity(mol, ALBUTEROL, "FCFP4"), 0.75),
    "amlodipine_mpo": _amlodipine_mpo,
    "celecoxib_rediscovery": lambda mol: similarity(mol, CELECOXIB, "ECFP4"),
    "deco_hop": _deco_hop,
    "fexofenadine_mpo": _fexofenadine_mpo,
    "isomers_c7h8n2o2": lambda mol: isomer_score(mol, "C7H8N2O2"),
    "isomers_c9h10n2o2pf2cl": lambda mol: isomer_score(mol, "C9H10N2O2PF2Cl"),
    "median1": _median1,
    "median2": _median2,
    "mestranol_similarity": lambda mol: clipped(similarity(mol, MESTRANOL, "AP"), 0.75),
    "osimertinib_mpo": _osimertinib_mpo,
    "perindopril_mpo": _perindopril_mpo,
    "qed": _qed,
    "ranolazine_mpo": _ranolazine_mpo,
    "scaffold_hop": _scaffold_hop,
    "sitagliptin_mpo": _sitagliptin_mpo,
    "thiothixene_rediscovery": lambda mol: similarity(mol, THIOTHIXENE, "ECFP4"),
    "troglitazone_rediscovery": lambda mol: similarity(mol, TROGLITAZONE, "ECFP4"),
    "valsartan_smarts": _valsartan_smarts,
    "zaleplon_mpo": _zaleplon_mpo,
}
assert tuple(sorted(_OBJECTIVES)) == PMO_OBJECTIVES


def objective(name: str) -> ObjectiveFn:
    """The objective ``name`` (one of :data:`PMO_OBJECTIVES`) as a function of an RDKit molecule."""
    try:
        return _OBJECTIVES[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a PMO objective of this module: {', '.join(PMO_OBJECTIVES)}") from None


def score(name: str, smiles: Sequence[str]) -> list[float | None]:
    """Objective ``name`` of each SMILES (0..1); None where molks' rule of validity rejects it."""
    fn = objective(name)
    out: list[float | None] = []
    for text in smiles:
        mol = read_smiles(text)
        out.append(None if mol is None else float(fn(mol)))
    return out


@dataclass(frozen=True)
class PmoScore:
    """``score(name, ...)`` as a target's batch function (a class, so that it pickles for worker processes)."""

    name: str

    def __call__(self, smiles: list[str]) -> list[float | None]:
        return score(self.name, smiles)
