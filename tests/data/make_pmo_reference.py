"""Make ``tests/data/pmo_reference.csv``: the PMO objectives scored by the reference implementation.

Not run by the tests (it needs PyTDC, which cannot be installed beside molks: PyTDC 1.1.15 pins
``rdkit<2024.3.1`` and ``numpy<2``, molks needs ``rdkit>=2024.3``). It was run once, in a throwaway
environment, as follows (Python 3.11.7)::

    python3.11 -m venv tdcenv
    tdcenv/bin/pip install "rdkit==2023.9.6" "numpy<2" "pandas<3" scipy tqdm fuzzywuzzy \\
        requests scikit-learn packaging huggingface_hub networkx
    tdcenv/bin/pip install --no-deps PyTDC==1.1.15
    tdcenv/bin/python tests/data/make_pmo_reference.py > tests/data/pmo_reference.csv

(``--no-deps`` because PyTDC's other requirements -- transformers, tiledbsoma, cellxgene-census,
... -- are not used by its oracles; the packages listed are the ones ``tdc.Oracle`` imports.)

Every objective is scored in a fresh Python process by ``tdc.Oracle(name=NAME)(list_of_smiles)``,
as PMO's own code calls it: PyTDC's ``deco_hop`` and ``scaffold_hop`` share module globals (the
pharmacophore fingerprint and a SMARTS scorer), so one process scoring both would score the second
with the first's settings; PMO runs one objective per process. The molecules: the first 250 lines of
``data/moses_sample.smi`` and, so that every branch of every objective is exercised (similarity 1,
SMARTS matches, exact isomers, charges, stereo), the objectives' own reference molecules and a few
chosen ones (``EXTRA`` below). Scores are written with ``repr`` (every digit of the float).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

# The same list as molks.optimize.pmo.PMO_OBJECTIVES, written out: this script runs in an
# environment with PyTDC's old RDKit, where molks itself cannot be installed or imported.
OBJECTIVES = [
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
]

EXTRA = [
    "CC(C)(C)NCC(O)c1ccc(O)c(CO)c1",  # albuterol
    "Clc1ccccc1C2C(=C(/N/C(=C2/C(=O)OCC)COCCN)C)\\C(=O)OC",  # amlodipine
    "CC1=CC=C(C=C1)C1=CC(=NN1C1=CC=C(C=C1)S(N)(=O)=O)C(F)(F)F",  # celecoxib
    "CCCOc1cc2ncnc(Nc3ccc4ncsc4c3)c2cc1S(=O)(=O)C(C)(C)C",  # the hops' pharmacophore molecule
    "CCCOc1cc2ncnc(Nc3ccc4ncsc4c3)c2cc1O",  # deco hop: scaffold kept, decorations gone
    "CCCOc1ccc(Nc2ccc3ncsc3c2)cc1",  # scaffold hop: decoration kept, scaffold gone
    "CC(C)(C(=O)O)c1ccc(cc1)C(O)CCCN2CCC(CC2)C(O)(c3ccccc3)c4ccccc4",  # fexofenadine
    "Cc1ccc(N)c([N+](=O)[O-])c1",  # an isomer of C7H8N2O2
    "NCc1ccc([N+](=O)[O-])cc1",  # another (C7H8N2O2)
    "O=C(O)c1ccc(N)cc1N",  # C7H8N2O2 again
    "CC(NC(=O)c1ccc(Cl)cc1)P(=O)(F)F",  # near C9H10N2O2PF2Cl
    "NC(=O)c1cc(Cl)ccc1NCCP(=O)(F)F",  # C9H11ClF2N2O2P: one H too many
    "CC1(C)C2CCC1(C)C(=O)C2",  # camphor
    "CC(C)C1CCC(C)CC1O",  # menthol
    "O=C1N(CC(N2C1CC3=C(C2C4=CC5=C(OCO5)C=C4)NC6=C3C=CC=C6)=O)C",  # tadalafil
    "CCCC1=NN(C2=C1N=C(NC2=O)C3=C(C=CC(=C3)S(=O)(=O)N4CCN(CC4)C)OCC)C",  # sildenafil
    "COc1ccc2[C@H]3CC[C@@]4(C)[C@@H](CC[C@@]4(O)C#C)[C@@H]3CCc2c1",  # mestranol
    "COc1cc(N(C)CCN(C)C)c(NC(=O)C=C)cc1Nc2nccc(n2)c3cn(C)c4ccccc34",  # osimertinib
    "O=C(OCC)C(NC(C(=O)N1C(C(=O)O)CC2CCCCC12)C)CCC",  # perindopril
    "COc1ccccc1OCC(O)CN2CCN(CC(=O)Nc3c(C)cccc3C)CC2",  # ranolazine
    "Fc1cc(c(F)cc1F)CC(N)CC(=O)N3Cc2nnc(n2CC3)C(F)(F)F",  # sitagliptin
    "CN(C)S(=O)(=O)c1ccc2Sc3ccccc3C(=CCCN4CCN(C)CC4)c2c1",  # thiothixene
    "Cc1c(C)c2OC(C)(COc3ccc(CC4SC(=O)NC4=O)cc3)CCc2c(C)c1O",  # troglitazone
    "CCCCC(=O)N(Cc1ccc(cc1)-c1ccccc1-c1nn[nH]n1)[C@@H](C(C)C)C(O)=O",  # valsartan
    "CN(C=O)Cc1ccc(-c2ccccc2)cc1",  # valsartan's SMARTS itself
    "O=C(C)N(CC)C1=CC=CC(C2=CC=NC3=C(C=NN23)C#N)=C1",  # zaleplon
    "[2H]C([2H])([2H])c1ccccc1",  # isotopes
    "C[N+](C)(C)CC(=O)[O-]",  # a zwitterion
    "[Na+].[Cl-]",  # two fragments, no carbon
    "C",  # methane
    "*c1ccccc1",  # a dummy atom (the SMILES grammar has '*')
    "C[C@H](N)C(=O)O",  # L-alanine: a stereocentre
    "c1ccc2c(c1)[nH]c1ccccc12",  # carbazole
]

_WORKER = """
import json, sys
from tdc import Oracle
name, smiles = sys.argv[1], json.loads(sys.stdin.read())
print(json.dumps([float(v) for v in Oracle(name=name)(smiles)]))
"""


def molecules() -> list[str]:
    root = Path(__file__).resolve().parents[2]
    lines = (root / "data" / "moses_sample.smi").read_text().splitlines()
    return [line.split()[0] for line in lines[:250]] + EXTRA


def main() -> None:
    smiles = molecules()
    columns = {}
    for name in OBJECTIVES:
        done = subprocess.run(
            [sys.executable, "-c", _WORKER, name], input=json.dumps(smiles), capture_output=True, text=True, check=True
        )
        columns[name] = json.loads(done.stdout.strip().splitlines()[-1])
        assert len(columns[name]) == len(smiles), name
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["smiles", *OBJECTIVES])
    for i, text in enumerate(smiles):
        writer.writerow([text, *(repr(columns[name][i]) for name in OBJECTIVES)])


if __name__ == "__main__":
    main()
