"""The PMO objectives (molks.optimize.pmo) equal the reference implementation, PyTDC's oracles.

How the reference numbers in ``tests/data/pmo_reference.csv`` were made (once; PyTDC cannot be
installed beside molks, which needs ``rdkit>=2024.3`` where PyTDC 1.1.15 pins ``rdkit<2024.3.1`` and
``numpy<2``): in a throwaway Python 3.11.7 environment with PyTDC 1.1.15 (installed ``--no-deps``),
rdkit 2023.9.6, numpy 1.26.4, scipy 1.17.1 and the few packages ``tdc.Oracle`` imports::

    python3.11 -m venv tdcenv
    tdcenv/bin/pip install "rdkit==2023.9.6" "numpy<2" "pandas<3" scipy tqdm fuzzywuzzy \\
        requests scikit-learn packaging huggingface_hub networkx
    tdcenv/bin/pip install --no-deps PyTDC==1.1.15
    tdcenv/bin/python tests/data/make_pmo_reference.py > tests/data/pmo_reference.csv

``make_pmo_reference.py`` scores the first 250 molecules of ``data/moses_sample.smi`` and 33 chosen
ones (every objective's own reference molecules, SMARTS hits for the hops and valsartan, exact
isomers, charges, isotopes, a dummy atom, two fragments) with ``tdc.Oracle(name=NAME)(smiles)`` for
each objective, one fresh process per objective (as PMO runs them: PyTDC's ``deco_hop`` and
``scaffold_hop`` share module globals). Running it twice gives the same file, byte for byte.

molks (RDKit 2024.3 or later, its fingerprint generators) agrees with every number to 1e-12
(relative; the differences seen are of the order of 1e-15, the rounding of a geometric mean), with
one exception that is RDKit's, not the definition's: RDKit's QED counts the rotatable bonds of
deuterated toluene differently since 2023.9 (the D3C-c bond: 1 then, 0 now), so ``qed`` of
``[2H]C([2H])([2H])c1ccccc1`` is 0.4620 now, 0.5001 in the reference;
:func:`test_the_one_qed_difference_is_rdkits` pins that down.
"""

from __future__ import annotations

import csv
import math
import pickle
from pathlib import Path

import pytest
from rdkit import Chem
from rdkit.Chem import QED

from molks.optimize import pmo
from molks.optimize.targets import BUILTIN_TARGETS, get_target, score_many

REFERENCE = Path(__file__).parent / "data" / "pmo_reference.csv"
DEUTERATED_TOLUENE = "[2H]C([2H])([2H])c1ccccc1"
# Gobbi 2D pharmacophore fingerprints take ~70 ms a molecule: the hops are checked on a part of the file.
SLOW = {"deco_hop", "scaffold_hop"}


def _reference() -> list[dict[str, str]]:
    with REFERENCE.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_reference_file_covers_the_20_objectives() -> None:
    rows = _reference()
    assert len(rows) == 283
    assert set(rows[0]) - {"smiles"} == set(pmo.PMO_OBJECTIVES)
    assert len(pmo.PMO_OBJECTIVES) == 20
    assert not set(pmo.NOT_RDKIT_ONLY) & set(pmo.PMO_OBJECTIVES)


@pytest.mark.parametrize("name", pmo.PMO_OBJECTIVES)
def test_objective_equals_pytdc(name: str) -> None:
    rows = _reference()
    if name in SLOW:
        rows = rows[:30] + rows[250:]  # 30 MOSES molecules and all the chosen ones (the hops' hits among them)
    got = pmo.score(name, [r["smiles"] for r in rows])
    wrong = [
        (r["smiles"], value, float(r[name]))
        for r, value in zip(rows, got)
        if not (name == "qed" and r["smiles"] == DEUTERATED_TOLUENE)
        and (value is None or not math.isclose(value, float(r[name]), rel_tol=1e-12, abs_tol=1e-300))
    ]
    assert not wrong, f"{len(wrong)} of {len(rows)} differ from PyTDC, e.g. {wrong[:3]}"


def test_the_one_qed_difference_is_rdkits() -> None:
    """The reference's QED of deuterated toluene is RDKit 2023.9's; today's RDKit counts one rotatable bond fewer."""
    (row,) = [r for r in _reference() if r["smiles"] == DEUTERATED_TOLUENE]
    mol = Chem.MolFromSmiles(DEUTERATED_TOLUENE)
    assert pmo.score("qed", [DEUTERATED_TOLUENE]) == [QED.qed(mol)]
    assert QED.properties(mol).ROTB == 0
    assert float(row["qed"]) == pytest.approx(0.500102700230766)
    assert QED.qed(mol) == pytest.approx(0.4619990829, abs=1e-9)


def test_the_reference_molecules_score_one() -> None:
    """Each rediscovery and similarity target scores its own molecule 1; an exact isomer scores 1."""
    assert pmo.score("celecoxib_rediscovery", [pmo.CELECOXIB]) == [1.0]
    assert pmo.score("troglitazone_rediscovery", [pmo.TROGLITAZONE]) == [1.0]
    assert pmo.score("thiothixene_rediscovery", [pmo.THIOTHIXENE]) == [1.0]
    assert pmo.score("albuterol_similarity", [pmo.ALBUTEROL]) == [1.0]
    assert pmo.score("mestranol_similarity", [pmo.MESTRANOL]) == [1.0]
    assert pmo.score("isomers_c7h8n2o2", ["NCc1ccc([N+](=O)[O-])cc1"]) == [1.0]  # C7H8N2O2, charges ignored


def test_modifiers_by_hand() -> None:
    assert pmo.gaussian(3.0, 3.0, 0.5) == 1.0
    assert pmo.gaussian(4.0, 3.0, 0.5) == pytest.approx(math.exp(-2.0))
    assert pmo.min_gaussian(0.2, 1.0, 1.0) == 1.0 and pmo.min_gaussian(2.0, 1.0, 1.0) == pytest.approx(math.exp(-0.5))
    assert pmo.max_gaussian(120.0, 100.0, 10.0) == 1.0 and pmo.max_gaussian(90.0, 100.0, 10.0) == pytest.approx(math.exp(-0.5))
    assert pmo.clipped(0.375, 0.75) == pytest.approx(0.5)
    assert pmo.clipped(0.9, 0.75) == 1.0 and pmo.clipped(-0.1, 0.75) == 0.0
    assert pmo.geometric_mean([0.25, 1.0]) == pytest.approx(0.5)
    assert pmo.geometric_mean([0.0, 0.9]) == 0.0  # scipy's gmean: one zero term zeroes the product
    assert pmo.formula_counts("C9H10N2O2PF2Cl") == [("C", 9), ("H", 10), ("N", 2), ("O", 2), ("P", 1), ("F", 2), ("Cl", 1)]


def test_invalid_smiles_score_none() -> None:
    assert pmo.score("median1", ["not a molecule", "", "C1CC", "CCO"])[:3] == [None, None, None]


@pytest.mark.parametrize("name", pmo.PMO_OBJECTIVES)
def test_registered_as_a_target(name: str) -> None:
    target = get_target(name)
    assert target is BUILTIN_TARGETS[name] and target.maximize and target.invalid_score is None
    pickle.loads(pickle.dumps(target.score))  # worker processes get it by reference
    assert score_many(target, ["CCO", "xx"], processes=1) == [pmo.score(name, ["CCO"])[0], None]
