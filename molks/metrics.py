"""Distribution metrics of generated molecules against a reference set: FCD and the MOSES set.

>>> from molks.metrics import distribution_metrics
>>> m = distribution_metrics(generated_smiles, reference_smiles, train=training_canonical_smiles)
>>> m["fcd"], m["snn"], m["frag"], m["scaf"], m["int_div1"], m["filters"], m["logp_wasserstein"]

One job: given SMILES lists (no model inside), compute what the molecular-generation literature
reports, following the definitions of MOSES:

    D. Polykovskiy, A. Zhebrak, B. Sanchez-Lengeling, et al. "Molecular Sets (MOSES): A
    Benchmarking Platform for Molecular Generation Models." Front. Pharmacol. 11:565644 (2020),
    doi:10.3389/fphar.2020.565644 (section "Metrics"), and its reference code
    (github.com/molecularsets/moses, ``moses/metrics``).

We implement the metrics here instead of depending on ``molsets`` (MOSES's package) because it
pins dependencies incompatible with ours; its metrics module does not even import with pandas 2
(it calls ``DataFrame.append`` at import). ChemNet, for the Fréchet ChemNet Distance, comes from
the ``fcd`` package (its weights ship inside the wheel, so it works offline).

Every metric is computed on the *valid* generated molecules (RDKit reads them), duplicates kept,
as MOSES does; ``valid`` is their fraction of the input. All SMILES are canonicalised first.

* ``unique@k``: distinct / k among the first k valid molecules (on all of them when fewer than k
  are valid, as MOSES does, which warns).
* ``novelty``: distinct valid molecules not in the training set / distinct valid molecules.
* ``fcd``: Fréchet distance between Gaussians fitted to ChemNet's penultimate activations of the
  generated and the reference molecules (Preuer et al., J. Chem. Inf. Model. 58, 1736, 2018);
  ChemNet runs through ``fcd``, the distance through :func:`frechet_distance`.
* ``snn``: mean over generated molecules of the largest Tanimoto similarity to a reference
  molecule, on Morgan fingerprints of radius 2 with 1024 bits (MOSES's ``fingerprint``).
* ``frag`` / ``scaf``: cosine similarity of the count vectors of BRICS fragments / Bemis-Murcko
  scaffolds of the two sets (scaffolds with fewer than two rings are left out, as MOSES's code does).
* ``int_div1`` / ``int_div2``: internal diversity, ``1 - mean_i (mean_j T(i, j)^p)^(1/p)`` over all
  ordered pairs of generated molecules (the diagonal included) for p = 1, 2. This is how MOSES's
  code (``average_agg_tanimoto``) computes the published numbers; the paper prints
  ``1 - (mean_ij T^p)^(1/p)``, which is the same for p = 1 and at most a little smaller for p = 2.
* ``filters``: fraction passing the MOSES filters: no ring of 8 or more atoms, no charged atom,
  only C, N, S, O, F, Cl, Br, H, and no match of the MCF list (:data:`MCF_SMARTS`) or of RDKit's
  PAINS definitions (Baell & Holloway, J. Med. Chem. 53, 2719, 2010). RDKit's curated PAINS SMARTS
  differ a little from MOSES's own copy: of 10,000 MOSES test molecules (all passed MOSES's
  filters) one, ``CNC(=O)Cn1c(C)c(C)sc1=NC(=O)c1cccc(C)c1``, matches RDKit's PAINS (99.99% pass).
* ``logp_wasserstein``, ``sa_wasserstein``, ``qed_wasserstein``, ``weight_wasserstein``: the 1-D
  Wasserstein distance (``scipy.stats.wasserstein_distance``) between the two sets' values of
  Crippen logP, synthetic accessibility, QED and molecular weight.

A fraction or similarity that has nothing to measure (no valid molecule, no scaffold) is None.
Fingerprints, fragments, scaffolds, properties and ChemNet statistics of a set are computed once
(:class:`MoleculeSet`) and reused by every metric, so one reference can serve many generated sets,
and a prepared reference can be kept on disk (``molecule_set(..., cache=True)``, see
:func:`metrics_cache_dir`): a later evaluation against the same reference only reads it.

Speed (``benchmarks/metrics_speed.py``, ``benchmarks/RESULTS.md``): ChemNet is most of the cost
(about 5 ms a molecule on one CPU core: its 512-unit LSTM runs over 88 steps of every SMILES, which
``fcd`` pads to 350 characters; we keep that, as it changes the activations), so it runs in a
background thread (torch releases the GIL) while the calling thread or the worker processes do
the RDKit work; each distinct string of a set is featurised once, each distinct canonical SMILES
sent through ChemNet once (a collapsed generator repeats a few molecules thousands of times).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rdkit import Chem, RDConfig
from rdkit.Chem import QED, AllChem, rdFingerprintGenerator, rdSubstructLibrary
from rdkit.Chem.Scaffolds import MurckoScaffold

from molks.dataset.errors import CacheWarning
from molks.progress import progress_bar
from molks.chemistry import novelty, read_molecule, sa_score
from molks.errors import InputError
from molks.files import atomic_write
from molks.workers import map_in_workers

__all__ = [
    "MCF_SMARTS",
    "METRIC_NAMES",
    "MOSES_ALLOWED_ATOMS",
    "PROPERTY_NAMES",
    "MetricsError",
    "MoleculeSet",
    "aggregated_tanimoto",
    "brics_fragments",
    "chemnet_activations",
    "chemnet_statistics",
    "count_similarity",
    "distribution_metrics",
    "frechet_distance",
    "internal_diversities",
    "internal_diversity",
    "metrics_cache_dir",
    "molecule_properties",
    "molecule_set",
    "molecule_set_key",
    "morgan_fingerprints",
    "murcko_scaffold",
    "passes_filters",
    "property_histograms",
    "snn",
    "tanimoto_pairs",
    "unique_at",
]

# MOSES's "MCF" list (``moses/metrics/mcf.csv`` of github.com/molecularsets/moses, used for the
# "Filters" metric of Polykovskiy et al. 2020): structural alerts of medicinal chemistry, matched
# on the molecule with explicit hydrogens as MOSES does (several patterns name [H] atoms).
MCF_SMARTS: tuple[tuple[str, str], ...] = (
    ("AMINAL", "[#7]-&!@[#6&!H0&!H1]-&!@[#7]"),
    ("MICHAEL1", "[#6]=&!@[#6]-[#6]#[#7]"),
    ("ACETAL", "[#6&!H0](-&!@[#8])-&!@[#8]"),
    ("DISULFIDE", "[#16]~[#16]"),
    ("ISOCYANATE", "[#6]-[#7]=[#6]=[#8]"),
    ("IMINE", "[#6](=&!@[#7&!H0])-&!@[#6,#7,#8,#16]"),
    ("HYDRAZINE", "[#6]~&!@[#7]~&!@[#7]~&!@[#6]"),
    ("ALDEHYDE", "[#6&!H0]=[#8]"),
    ("AZO", "[#7]=&!@[#7]"),
    ("AZIRIDINE", "[#6]1-[#7]-[#6]-1"),
    ("EPOXIDE", "[#6]1-[#8]-[#6]-1"),
    (">2 Br", "[#35].[#35].[#35]"),
    (">3 Cl", "[#17].[#17].[#17].[#17]"),
    (">6 F", "[#9].[#9].[#9].[#9].[#9].[#9].[#9]"),
    ("AZIDE", "[#7]~&!@[#7]~&!@[#7]"),
    ("MICHAEL2", "[#6]=&!@[#6]-[#16](=[#8])=[#8]"),
    ("MICHAEL6", "[#6]=&!@[#6&!H0]-&!@[#6](=[#8])-&!@[#7]"),
    ("FURAN", "[H][#6]-1=[#6]([H])-[#6]=[#6](-*)-[#8]-1"),
    ("THIOPHENE", "[H][#6]-1=[#6]([H])-[#6]=[#6](-*)-[#16]-1"),
    ("ALKYLHALIDE", "[H]C([H])([#6])[F,Cl,Br,I]"),
    ("ANILINE", "[H][#7]([H])-[#6]-1=[#6]-[#6]=[#6]-[#6]=[#6]-1"),
    ("ARO_HALO", "[#17,#35,#53]-c(:*):[!#1!#6]:*"),
)
MOSES_ALLOWED_ATOMS = frozenset({"C", "N", "S", "O", "F", "Cl", "Br", "H"})
MOSES_FINGERPRINT_BITS = 1024  # Morgan radius 2, as MOSES's SNN and IntDiv
PROPERTY_NAMES = ("logP", "SA", "QED", "weight")  # MOSES's names, in its order
# The keys of distribution_metrics(), in the order reports print them.
METRIC_NAMES = (
    "n", "valid", "unique@1000", "unique@10000", "novelty", "n_reference", "fcd", "snn", "frag", "scaf",
    "int_div1", "int_div2", "filters", "logp_wasserstein", "sa_wasserstein", "qed_wasserstein",
    "weight_wasserstein", "png",
)  # fmt: skip
CHUNK_SIZE = 1000  # molecules per unit of work (a progress step, a task of a worker process)
BLOCK_ELEMENTS = 1 << 25  # Tanimoto blocks hold at most this many similarities (128 MiB of float32)


class MetricsError(InputError):
    """The metrics cannot be computed (nothing valid to compare, a missing RDKit data file, ...)."""


# ----------------------------------------------------------------------------------------------
# Fingerprints and Tanimoto similarity
# ----------------------------------------------------------------------------------------------


@cache
def _morgan_generator(n_bits: int, radius: int) -> Any:
    return rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)


def morgan_fingerprints(mols: Sequence[Chem.Mol], n_bits: int = MOSES_FINGERPRINT_BITS, radius: int = 2) -> np.ndarray:
    """Morgan bit fingerprints [N, n_bits] (uint8 0/1) through RDKit's rdFingerprintGenerator
    (the same bits as the older ``GetMorganFingerprintAsBitVect`` MOSES calls)."""
    generator = _morgan_generator(n_bits, radius)
    if not len(mols):
        return np.zeros((0, n_bits), dtype=np.uint8)
    return np.stack([generator.GetFingerprintAsNumPy(mol).astype(np.uint8, copy=False) for mol in mols])


def tanimoto_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Tanimoto similarity of row i of ``a`` with row i of ``b`` (bit arrays [N, B]) -> [N].

    Two empty fingerprints count as identical (1), as in MOSES.
    """
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise MetricsError(f"fingerprint arrays differ in shape: {a.shape} vs {b.shape}")
    both = np.count_nonzero(a & b, axis=1)
    either = np.count_nonzero(a | b, axis=1)
    return np.where(either > 0, both / np.maximum(either, 1), 1.0)


def aggregated_tanimoto(
    query: np.ndarray, stock: np.ndarray, agg: str = "max", p: float = 1.0, *, block: int = 2048, progress: bool = False
) -> np.ndarray:
    """For each query fingerprint, its Tanimoto similarities to every stock fingerprint, aggregated:
    ``max_j T(i, j)`` or ``(mean_j T(i, j)^p)^(1/p)``; query [N, B], stock [M, B] bit arrays -> [N].

    MOSES's ``average_agg_tanimoto`` without the final mean. The intersections are one float32
    matrix product per block of ``block`` query rows (exact: counts stay below 2^24), on torch so
    that its thread setting applies; the quotients are float32 as in MOSES (within 1e-7);
    memory is about ``2 * block * M * 4`` bytes, ``block`` lowered so that ``block * M`` stays
    within :data:`BLOCK_ELEMENTS` (each row's result does not depend on the block size).
    """
    if agg not in ("max", "mean"):
        raise MetricsError(f"agg must be 'max' or 'mean', got {agg!r}")
    if query.ndim != 2 or stock.ndim != 2 or query.shape[1] != stock.shape[1] or not len(stock):
        raise MetricsError(f"need fingerprints [N, B] and [M>0, B], got {query.shape} and {stock.shape}")
    block = max(1, min(block, BLOCK_ELEMENTS // len(stock)))
    s = torch.from_numpy(np.ascontiguousarray(stock, dtype=np.float32))
    s_bits = s.sum(1)
    out = np.empty(len(query), dtype=np.float64)
    with progress_bar(len(query), f"Tanimoto ({agg})", progress) as bar:
        for start in range(0, len(query), block):
            q = torch.from_numpy(np.ascontiguousarray(query[start : start + block], dtype=np.float32))
            both = q @ s.T  # [b, M]
            sim = both / (q.sum(1, keepdim=True) + s_bits - both)
            sim = torch.nan_to_num(sim, nan=1.0)  # two empty fingerprints: identical, as MOSES
            if agg == "max":
                out[start : start + len(q)] = sim.max(1).values.double().numpy()
            else:
                out[start : start + len(q)] = (sim.double() ** p).mean(1).pow(1.0 / p).numpy()
            bar.update(len(q))
    return out


def snn(generated: np.ndarray, reference: np.ndarray, *, progress: bool = False) -> float:
    """Similarity to a nearest neighbour: mean over generated fingerprints [N, B] of the largest
    Tanimoto similarity to a reference fingerprint [M, B] (MOSES's SNN)."""
    return float(aggregated_tanimoto(generated, reference, "max", progress=progress).mean())


def internal_diversity(fingerprints: np.ndarray, p: float = 1.0, *, progress: bool = False) -> float:
    """MOSES's IntDiv_p of a set of fingerprints [N, B]: ``1 - mean_i (mean_j T(i, j)^p)^(1/p)``
    over all ordered pairs, the diagonal included (0 for N copies of one molecule)."""
    return internal_diversities(fingerprints, (p,), progress=progress)[0]


def internal_diversities(
    fingerprints: np.ndarray, ps: Sequence[float] = (1.0, 2.0), *, block: int = 1024, progress: bool = False
) -> list[float]:
    """:func:`internal_diversity` for each p of ``ps`` from one pass over the Tanimoto matrix.

    The matrix is symmetric (the same float32 quotient either way round), so only the blocks on and
    above the diagonal are computed, each adding to the row sums of both its rows and its columns:
    about half the matrix products of one :func:`aggregated_tanimoto` call, shared by every p.
    """
    if fingerprints.ndim != 2 or not len(fingerprints):
        raise MetricsError(f"need fingerprints [N>0, B], got {fingerprints.shape}")
    fps = torch.from_numpy(np.ascontiguousarray(fingerprints, dtype=np.float32))
    bits = fps.sum(1)
    n = len(fps)
    block = max(1, min(block, BLOCK_ELEMENTS // n))
    sums = torch.zeros(len(ps), n, dtype=torch.float64)
    with progress_bar(n, "Tanimoto (internal)", progress) as bar:
        for start in range(0, n, block):
            stop = min(start + block, n)
            both = fps[start:stop] @ fps[start:].T  # [b, n - start]: this block's rows, columns from start on
            sim = both / (bits[start:stop, None] + bits[None, start:] - both)
            sim = torch.nan_to_num(sim, nan=1.0).double()  # two empty fingerprints: identical, as MOSES
            for k, p in enumerate(ps):
                powered = sim if p == 1 else sim**p
                sums[k, start:stop] += powered.sum(1)
                sums[k, stop:] += powered[:, stop - start :].sum(0)  # the mirrored blocks below the diagonal
            bar.update(stop - start)
    return [float(1.0 - (sums[k] / n).pow(1.0 / p).mean()) for k, p in enumerate(ps)]


# ----------------------------------------------------------------------------------------------
# Fragments, scaffolds, properties, filters of single molecules
# ----------------------------------------------------------------------------------------------


def brics_fragments(mol: Chem.Mol) -> list[str]:
    """The BRICS fragments of a molecule as SMILES (MOSES's ``fragmenter``: break the BRICS bonds,
    write the pieces, split at '.'), with their dummy attachment atoms."""
    return Chem.MolToSmiles(AllChem.FragmentOnBRICSBonds(mol)).split(".")


def murcko_scaffold(mol: Chem.Mol, min_rings: int = 2) -> str | None:
    """The Bemis-Murcko scaffold's SMILES, or None when it has fewer than ``min_rings`` rings
    (MOSES's ``compute_scaffold``, whose default is 2) or RDKit cannot build it."""
    try:
        scaffold = MurckoScaffold.GetScaffoldForMol(mol)
    except (ValueError, RuntimeError):
        return None
    smiles = Chem.MolToSmiles(scaffold)
    if not smiles or scaffold.GetRingInfo().NumRings() < min_rings:
        return None
    return smiles


def molecule_properties(mol: Chem.Mol) -> tuple[float, float, float, float]:
    """(Crippen logP, synthetic accessibility, QED, molecular weight): :data:`PROPERTY_NAMES`.

    QED's inputs (``QED.properties``) are computed once and give logP and the weight too: they are
    ``Crippen.MolLogP`` and ``Descriptors.MolWt`` of the molecule without explicit hydrogens, the
    same numbers for a molecule read from SMILES (tested), and Crippen's logP, the slowest of
    them, is no longer computed twice.
    """
    inputs = QED.properties(mol)
    return inputs.ALOGP, sa_score(mol), QED.qed(mol, qedProperties=inputs), inputs.MW


def _passes_atom_rules(mol: Chem.Mol) -> bool:
    """MOSES's filters other than the substructure lists: no ring of 8+ atoms, no charge, only
    allowed elements, and a non-isomeric SMILES that RDKit reads back."""
    if any(len(ring) >= 8 for ring in mol.GetRingInfo().AtomRings()):
        return False
    if any(atom.GetFormalCharge() != 0 or atom.GetSymbol() not in MOSES_ALLOWED_ATOMS for atom in mol.GetAtoms()):
        return False
    smiles = Chem.MolToSmiles(mol, isomericSmiles=False)
    return bool(smiles) and read_molecule(smiles) is not None


@cache
def _mcf_queries() -> tuple[Chem.Mol, ...]:
    return tuple(Chem.MolFromSmarts(smarts) for _, smarts in MCF_SMARTS)


@cache
def _pains_queries() -> tuple[Chem.Mol, ...]:
    """RDKit's PAINS definitions: the curated ``Data/Pains/wehi_pains.csv`` RDKit ships and builds
    its FilterCatalog PAINS catalogue (families A, B, C; 480 SMARTS) from, read with merged
    hydrogens as RDKit's README for that file says."""
    path = Path(RDConfig.RDDataDir) / "Pains" / "wehi_pains.csv"
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = [row for row in csv.reader(f) if row]
    except OSError as err:
        raise MetricsError(f"this RDKit installation lacks its PAINS definitions: {path} ({err})") from None
    return tuple(Chem.MolFromSmarts(row[0], mergeHs=True) for row in rows)


def _pains_hits(mols: Sequence[Chem.Mol]) -> set[int]:
    """Indices of the molecules matching a PAINS pattern.

    Each pattern is searched in a SubstructLibrary, whose pattern fingerprints rule most molecules
    out before any atom matching: the same answers as ``FilterCatalog.HasMatch`` with RDKit's
    PAINS catalogue (tested), about 6x faster (12 s vs 2 s for 3,000 molecules, one core).
    """
    if not mols:
        return set()  # an empty library rejects every search
    holder, fingerprints = rdSubstructLibrary.MolHolder(), rdSubstructLibrary.PatternHolder()
    for mol in mols:
        holder.AddMol(mol)
        fingerprints.AddFingerprint(fingerprints.MakeFingerprint(mol))
    library = rdSubstructLibrary.SubstructLibrary(holder, fingerprints)
    hits: set[int] = set()
    for query in _pains_queries():
        hits.update(library.GetMatches(query, maxResults=len(mols), numThreads=1))
    return hits


def passes_filters(mols: Sequence[Chem.Mol]) -> np.ndarray:
    """Whether each molecule passes the MOSES filters -> [N] bool (see the module docstring)."""
    ok = np.array([_passes_atom_rules(mol) for mol in mols], dtype=bool)
    candidates = np.flatnonzero(ok)
    for index in _pains_hits([mols[i] for i in candidates]):
        ok[candidates[index]] = False
    for i in np.flatnonzero(ok):
        with_h = Chem.AddHs(mols[i])  # MOSES matches its lists on explicit hydrogens
        ok[i] = not any(with_h.HasSubstructMatch(query) for query in _mcf_queries())
    return ok


# ----------------------------------------------------------------------------------------------
# ChemNet (the fcd package) and the Fréchet distance
# ----------------------------------------------------------------------------------------------


def _chemnet_predict(model: torch.nn.Module, smiles: Sequence[str], batch_size: int, device: str) -> np.ndarray:
    """``fcd.get_predictions`` without its worker processes and its ``np.row_stack`` (deprecated in
    NumPy 2): the same one-hot batches (``fcd.utils.SmilesDataset``, padded to 350 characters),
    the same model call, the same float32 activations [N, 512]."""
    from fcd.utils import SmilesDataset, todevice
    from torch.utils.data import DataLoader

    loader = DataLoader(SmilesDataset(list(smiles)), batch_size=batch_size, num_workers=0)
    with todevice(model, device), torch.no_grad():
        parts = [model(batch.transpose(1, 2).float().to(device)).to("cpu").numpy().astype(np.float32)
                 for batch in loader]  # fmt: skip
    return np.concatenate(parts)


def chemnet_activations(
    smiles: Sequence[str], *, device: str = "cpu", batch_size: int = 256, progress: bool = False
) -> np.ndarray:
    """ChemNet's penultimate activations [N, 512] (float32) of SMILES, through ``fcd``'s model and
    one-hot encoding.

    SMILES of 350 characters or more make ``fcd`` pad their batch further, which changes the
    activations slightly (``fcd`` warns); MOSES-like molecules are far shorter.
    """
    import fcd

    model = fcd.load_ref_model()  # cached by fcd: loaded once per process
    parts = []
    with progress_bar(len(smiles), "ChemNet", progress) as bar:
        for start in range(0, len(smiles), CHUNK_SIZE):
            chunk = list(smiles[start : start + CHUNK_SIZE])
            parts.append(_chemnet_predict(model, chunk, batch_size, device))
            bar.update(len(chunk))
    return np.concatenate(parts) if parts else np.zeros((0, 512), dtype=np.float32)


class _BackgroundChemNet:
    """ChemNet on the distinct SMILES of a set, chunk by chunk, in one background thread: torch
    releases the GIL, so it runs while the calling thread (or worker processes) do the RDKit work.
    ``seconds``: the CPU time of that thread (with more than one torch thread, the others' time
    is not in it)."""

    def __init__(self, device: str, batch_size: int) -> None:
        import fcd

        self.model = fcd.load_ref_model()  # in the calling thread: fcd caches it
        self.device, self.batch_size = device, batch_size
        self.rows: dict[str, int] = {}  # distinct SMILES -> row of the activations
        self.jobs: list[tuple[Future[np.ndarray] | None, int]] = []  # (job, input strings it stands for)
        self.reported = 0  # jobs already counted in the progress bar
        self.seconds = 0.0
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="molks-chemnet")

    def submit(self, smiles: Sequence[str], n_inputs: int) -> None:
        new = [s for s in dict.fromkeys(smiles) if s not in self.rows]
        for s in new:
            self.rows[s] = len(self.rows)
        self.jobs.append((self.executor.submit(self._run, new) if new else None, n_inputs))

    def _run(self, smiles: list[str]) -> np.ndarray:
        started = time.thread_time()
        try:
            return _chemnet_predict(self.model, smiles, self.batch_size, self.device)
        finally:
            self.seconds += time.thread_time() - started  # one thread: no race

    def report(self, bar: Any, wait: bool = False) -> None:
        """Count finished jobs (in order) in the progress bar; ``wait``: wait for all of them."""
        while self.reported < len(self.jobs):
            job, n_inputs = self.jobs[self.reported]
            if job is not None and not wait and not job.done():
                return
            if job is not None:
                job.result()  # an error in the thread is raised here
            bar.update(n_inputs)
            self.reported += 1

    def activations(self, smiles: Sequence[str]) -> np.ndarray:
        """The activations [len(smiles), 512] of the submitted SMILES (waits for the thread)."""
        parts = [job.result() for job, _ in self.jobs if job is not None]
        distinct = np.concatenate(parts) if parts else np.zeros((0, 512), dtype=np.float32)
        return distinct[np.fromiter((self.rows[s] for s in smiles), dtype=np.intp, count=len(smiles))]

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


def chemnet_statistics(activations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean [512], covariance [512, 512]) of ChemNet activations [N >= 2, 512], float64.

    Linear algebra here and in :func:`frechet_distance` runs on torch, whose thread setting
    applies (numpy's BLAS threads fight other jobs: its eigh took 1.5 s instead of 0.07 s here).
    """
    if len(activations) < 2:
        raise MetricsError(f"the Fréchet ChemNet Distance needs at least 2 molecules, got {len(activations)}")
    act = torch.from_numpy(np.asarray(activations, dtype=np.float64))
    return act.mean(0).numpy(), torch.cov(act.T).numpy()


def frechet_distance(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """Fréchet distance between Gaussians (mean [d], covariance [d, d]):
    ``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))``.

    The formula of ``fcd.calculate_frechet_distance`` (equal to it within 1e-9, tested), with the
    trace of the matrix square root taken as the sum of square roots of the eigenvalues of the
    symmetric ``S_a^(1/2) S_b S_a^(1/2)`` (which has the eigenvalues of ``S_a S_b``): much faster
    than scipy's ``sqrtm`` for d = 512, never complex, and free of the ``disp`` argument that
    fcd 1.2 passes to ``sqrtm`` and SciPy 1.18 removes. Round-off below 0 is clipped to 0.
    """
    (mu_a, cov_a), (mu_b, cov_b) = [(torch.as_tensor(m, dtype=torch.float64), torch.as_tensor(c, dtype=torch.float64))
                                    for m, c in (a, b)]  # fmt: skip
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = (vectors * values.clamp(min=0.0).sqrt()) @ vectors.T
    middle = root_a @ cov_b @ root_a
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0.0).sqrt().sum()
    diff = mu_a - mu_b
    return max(0.0, float(diff @ diff + cov_a.trace() + cov_b.trace() - 2.0 * trace_root))


# ----------------------------------------------------------------------------------------------
# A set of molecules, prepared once
# ----------------------------------------------------------------------------------------------


@dataclass
class MoleculeSet:
    """What the metrics need of one set of molecules, computed once and reused.

    ``n_input`` strings were given; ``smiles`` [N] are the canonical SMILES of the valid ones, in
    input order, duplicates kept. ``fingerprints`` [N, 1024] uint8 (Morgan r=2, MOSES's).
    ``fragments`` / ``scaffolds``: counts of BRICS fragments / Bemis-Murcko scaffolds (2+ rings).
    ``properties``: name (:data:`PROPERTY_NAMES`) -> values [N]. ``filters`` [N] bool (None when not
    computed: MOSES filters generated molecules only). ``chemnet``: (mean [512], covariance
    [512, 512]) of ChemNet activations (None when not computed or N < 2). ``seconds``: CPU seconds
    per step (RDKit steps summed over worker processes; ``chemnet``: its thread), or
    ``{"cache": wall seconds}`` when read from the cache. ``cached``: read from the on-disk cache.
    """

    n_input: int
    smiles: list[str]
    fingerprints: np.ndarray
    fragments: Counter[str]
    scaffolds: Counter[str]
    properties: dict[str, np.ndarray]
    filters: np.ndarray | None = None
    chemnet: tuple[np.ndarray, np.ndarray] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    cached: bool = False

    def __len__(self) -> int:
        return len(self.smiles)


@dataclass
class _ChunkFeatures:
    """The RDKit features of one chunk of input strings (a picklable result of a worker)."""

    smiles: list[str]
    fingerprints: np.ndarray
    fragments: Counter[str]
    scaffolds: Counter[str]
    properties: np.ndarray  # [n, 4]
    filters: np.ndarray | None
    seconds: dict[str, float]


def _timed(seconds: dict[str, float], name: str, started: float, clock: Any = time.perf_counter) -> float:
    now = clock()
    seconds[name] = seconds.get(name, 0.0) + now - started
    return now


def _chunk_features(task: tuple[list[str | None], bool]) -> _ChunkFeatures:
    """Every RDKit feature of a chunk of strings (runs in workers), computed once per distinct
    string and repeated for its copies (a collapsed generator repeats a few strings thousands of
    times). Distinct strings, not distinct molecules: Crippen's logP sums its atoms' terms in atom
    order, so two spellings of one molecule can differ in the last bit, and every number stays
    what featurising each string alone gives (tested)."""
    texts, with_filters = task
    seconds: dict[str, float] = {}
    clock = time.thread_time  # CPU seconds of this thread: other jobs on the machine do not count
    t = clock()
    parsed: dict[str | None, int | None] = {}  # input string -> index into mols (None: invalid)
    mols: list[Chem.Mol] = []
    smiles: list[str] = []  # canonical SMILES of the distinct valid strings
    index: list[int] = []  # for each valid input string, its index into mols
    for text in texts:
        if text not in parsed:
            mol = read_molecule(text)
            parsed[text] = None if mol is None else len(mols)
            if mol is not None:
                mols.append(mol)
                smiles.append(Chem.MolToSmiles(mol))
        if (i := parsed[text]) is not None:
            index.append(i)
    rows = np.asarray(index, dtype=np.intp)
    copies = np.bincount(rows, minlength=len(mols)).tolist()
    smiles = [smiles[i] for i in index]
    t = _timed(seconds, "parse", t, clock)
    fingerprints = morgan_fingerprints(mols)[rows]
    t = _timed(seconds, "fingerprints", t, clock)
    fragments: Counter[str] = Counter()
    for mol, n in zip(mols, copies):
        for fragment in brics_fragments(mol):
            fragments[fragment] += n
    t = _timed(seconds, "fragments", t, clock)
    scaffolds: Counter[str] = Counter()
    for mol, n in zip(mols, copies):
        if (scaffold := murcko_scaffold(mol)) is not None:
            scaffolds[scaffold] += n
    t = _timed(seconds, "scaffolds", t, clock)
    properties = np.array([molecule_properties(m) for m in mols], dtype=np.float64).reshape(len(mols), 4)[rows]
    t = _timed(seconds, "properties", t, clock)
    filters = passes_filters(mols)[rows] if with_filters else None
    if with_filters:
        _timed(seconds, "filters", t, clock)
    return _ChunkFeatures(smiles, fingerprints, fragments, scaffolds, properties, filters, seconds)


def _build_set(
    texts: Sequence[str | None], filters: bool, fcd: bool, device: str, processes: int, progress: bool,
    description: str, chunk_size: int,
) -> MoleculeSet:  # fmt: skip
    """Prepare a set: RDKit features chunk by chunk (here or in workers) while ChemNet runs on each
    finished chunk's SMILES in a background thread."""
    tasks = [(list(texts[i : i + chunk_size]), filters) for i in range(0, len(texts), chunk_size)]
    chemnet = _BackgroundChemNet(device, batch_size=256) if fcd else None
    parts: list[_ChunkFeatures] = []
    steps = "RDKit + ChemNet" if fcd else "RDKit"
    try:
        with progress_bar(len(texts) * (2 if fcd else 1), f"{description}: {steps}", progress) as bar:
            if processes <= 1 or len(tasks) <= 1:
                results: Iterable[_ChunkFeatures] = map(_chunk_features, tasks)
            else:
                results = map_in_workers(_chunk_features, tasks, min(processes, len(tasks)))
            for task, part in zip(tasks, results):
                parts.append(part)
                bar.update(len(task[0]))
                if chemnet is not None:
                    chemnet.submit(part.smiles, len(task[0]))
                    chemnet.report(bar)
            smiles = [s for part in parts for s in part.smiles]
            activations = None
            if chemnet is not None:
                chemnet.report(bar, wait=True)
                activations = chemnet.activations(smiles)
    finally:
        if chemnet is not None:
            chemnet.close()
    seconds: dict[str, float] = {}
    for part in parts:
        for name, value in part.seconds.items():
            seconds[name] = seconds.get(name, 0.0) + value
    properties = np.concatenate([p.properties for p in parts]) if parts else np.zeros((0, 4))
    result = MoleculeSet(
        n_input=len(texts),
        smiles=smiles,
        fingerprints=np.concatenate([p.fingerprints for p in parts]) if parts else morgan_fingerprints([]),
        fragments=sum((p.fragments for p in parts), Counter()),
        scaffolds=sum((p.scaffolds for p in parts), Counter()),
        properties={name: properties[:, j] for j, name in enumerate(PROPERTY_NAMES)},
        filters=np.concatenate([p.filters for p in parts]) if filters and parts else None,  # type: ignore[misc]
        seconds=seconds,
    )
    if chemnet is not None:
        started = time.thread_time()
        if activations is not None and len(activations) >= 2:
            result.chemnet = chemnet_statistics(activations)
        result.seconds["chemnet"] = chemnet.seconds + time.thread_time() - started
    return result


def molecule_set(
    texts: Sequence[str | None],
    *,
    filters: bool = False,
    fcd: bool = True,
    device: str = "cpu",
    processes: int = 1,
    progress: bool = False,
    description: str = "molecules",
    chunk_size: int = CHUNK_SIZE,
    cache: bool | str | os.PathLike[str] | None = False,
) -> MoleculeSet:
    """Prepare a set of molecules for :func:`distribution_metrics` (see :class:`MoleculeSet`).

    ``texts``: SMILES, None or unreadable strings allowed (they count as invalid). ``filters``:
    also run the MOSES filters (generated sets). ``fcd``: also compute ChemNet statistics (the slow
    part: about 5 ms a molecule on one CPU core), on ``device``, in a background thread that
    overlaps the RDKit work (torch's thread setting applies to it). ``processes``: worker processes
    for the RDKit features, ``chunk_size`` molecules per task.

    ``cache``: keep the prepared set on disk and read it back when the same strings are prepared
    again with the same settings (see :func:`molecule_set_key`); True for :func:`metrics_cache_dir`,
    or a directory (False or None: no cache). Meant for reference sets, which are prepared again and again. The set read
    back is the one that was built (tested); an unreadable or inconsistent file is rebuilt with a
    :class:`~molks.dataset.CacheWarning`, and a failure to write is a warning too.
    """
    if isinstance(texts, str):
        raise MetricsError("pass a list of SMILES, not a single string")
    if chunk_size < 1 or processes < 1:
        raise MetricsError(f"chunk_size and processes must be at least 1, got {chunk_size} and {processes}")
    path = None
    if cache is not False and cache is not None:
        root = metrics_cache_dir() if cache is True else Path(cache).expanduser()
        path = root / f"molecule-set-{molecule_set_key(texts, filters=filters, fcd=fcd, device=device)}.npz"
        started = time.perf_counter()
        cached = _read_cached_set(path, filters, fcd)
        if cached is not None:
            cached.seconds = {"cache": time.perf_counter() - started}
            return cached
    result = _build_set(texts, filters, fcd, device, processes, progress, description, chunk_size)
    if path is not None:
        _write_cached_set(path, result)
    return result


# ----------------------------------------------------------------------------------------------
# The on-disk cache of prepared sets
# ----------------------------------------------------------------------------------------------

CACHE_FORMAT = 1  # of the files below; part of the key


def metrics_cache_dir() -> Path:
    """Where prepared sets are cached: ``$MOLKS_CACHE_DIR/metrics`` if that is set (as for the
    dataset cache), else ``$XDG_CACHE_HOME/molks/metrics``, else ``~/.cache/molks/metrics``."""
    from molks.dataset.cache import default_cache_dir

    return default_cache_dir() / "metrics"


def molecule_set_key(texts: Sequence[str | None], *, filters: bool, fcd: bool, device: str = "cpu") -> str:
    """The cache key of a prepared set: SHA-256 of the input strings (in order, None included:
    the set records how many were given and which were invalid) and of everything the features
    depend on: the settings, the fingerprint size, the RDKit and ``fcd`` versions, the device
    type ChemNet ran on, this file format. Any change of the strings is a new key."""
    import rdkit

    digest = hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode("utf-8")).hexdigest()
    parts: dict[str, Any] = {
        "format": CACHE_FORMAT, "texts_sha256": digest, "filters": bool(filters), "fcd": bool(fcd),
        "fingerprint": [MOSES_FINGERPRINT_BITS, 2], "scaffold_min_rings": 2, "rdkit": rdkit.__version__,
    }  # fmt: skip
    if fcd:
        from importlib.metadata import version

        parts.update(fcd=version("fcd"), device=torch.device(device).type)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


def _write_cached_set(path: Path, result: MoleculeSet) -> None:
    """One ``.npz`` (no pickle): arrays, plus the strings and counts as a JSON byte array, written
    atomically, so a reader sees a whole file or none."""
    meta = {
        "format": CACHE_FORMAT, "key": path.stem.removeprefix("molecule-set-"), "n_input": result.n_input,
        "smiles": result.smiles, "fragments": list(result.fragments.items()),
        "scaffolds": list(result.scaffolds.items()), "build_seconds": result.seconds,
    }  # fmt: skip
    arrays = {
        "meta": np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8),
        "fingerprints": np.packbits(result.fingerprints.astype(bool), axis=1),
        "properties": np.stack([result.properties[name] for name in PROPERTY_NAMES], axis=1),
    }
    if result.filters is not None:
        arrays["filters"] = result.filters
    if result.chemnet is not None:
        arrays["chemnet_mean"], arrays["chemnet_covariance"] = result.chemnet
    try:
        atomic_write(path, lambda f: np.savez(f, **arrays))
    except OSError as err:
        warnings.warn(f"could not write the metrics cache {path}: {err}", CacheWarning, stacklevel=3)


def _read_cached_set(path: Path, filters: bool, fcd: bool) -> MoleculeSet | None:
    """The set cached at ``path``, or None when there is none or it is unusable (with a warning)."""
    if not path.exists():
        return None
    try:
        return _load_cached_set(path, filters, fcd)
    except Exception as err:  # noqa: BLE001 -- any unreadable cache is rebuilt, never fatal
        warnings.warn(f"ignoring the unusable metrics cache {path} ({type(err).__name__}: {err}); rebuilding it",
                      CacheWarning, stacklevel=3)  # fmt: skip
        return None


def _load_cached_set(path: Path, filters: bool, fcd: bool) -> MoleculeSet:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
    if meta["format"] != CACHE_FORMAT or meta["key"] != path.stem.removeprefix("molecule-set-"):
        raise ValueError("the file belongs to another cache entry")
    smiles = meta["smiles"]
    n = len(smiles)
    if not all(isinstance(s, str) for s in smiles) or not 0 <= n <= int(meta["n_input"]):
        raise ValueError("bad SMILES list")
    packed, properties = arrays["fingerprints"], arrays["properties"]
    if packed.dtype != np.uint8 or packed.shape != (n, MOSES_FINGERPRINT_BITS // 8):
        raise ValueError(f"fingerprints of shape {packed.shape}, expected ({n}, {MOSES_FINGERPRINT_BITS // 8})")
    if properties.dtype != np.float64 or properties.shape != (n, len(PROPERTY_NAMES)):
        raise ValueError(f"properties of shape {properties.shape}")
    flags = arrays.get("filters")
    if filters != (flags is not None) or (flags is not None and (flags.dtype != bool or flags.shape != (n,))):
        raise ValueError("filters missing or malformed")
    chemnet = None
    if fcd and n >= 2:
        mean, covariance = arrays["chemnet_mean"], arrays["chemnet_covariance"]
        if mean.shape != (512,) or covariance.shape != (512, 512) or mean.dtype != np.float64 \
                or covariance.dtype != np.float64 or not (np.isfinite(mean).all() and np.isfinite(covariance).all()):
            raise ValueError("ChemNet statistics malformed")  # fmt: skip
        chemnet = (mean, covariance)
    counts = {}
    for name in ("fragments", "scaffolds"):
        pairs = [(str(k), int(v)) for k, v in meta[name]]
        if any(v < 1 for _, v in pairs):
            raise ValueError(f"{name}: counts below 1")
        counts[name] = Counter(dict(pairs))
    return MoleculeSet(
        n_input=int(meta["n_input"]),
        smiles=smiles,
        fingerprints=np.unpackbits(packed, axis=1, count=MOSES_FINGERPRINT_BITS),
        fragments=counts["fragments"],
        scaffolds=counts["scaffolds"],
        properties={name: properties[:, j].copy() for j, name in enumerate(PROPERTY_NAMES)},
        filters=flags,
        chemnet=chemnet,
        cached=True,
    )


# ----------------------------------------------------------------------------------------------
# Comparing sets
# ----------------------------------------------------------------------------------------------


def unique_at(smiles: Sequence[str], k: int) -> float | None:
    """MOSES's unique@k: distinct / count among the first k of ``smiles`` (canonical, valid);
    on all of them when there are fewer than k, as MOSES does. None for an empty list."""
    if k < 1:
        raise MetricsError(f"k must be at least 1, got {k}")
    first = smiles[:k]
    return len(set(first)) / len(first) if first else None


def count_similarity(a: Counter[str], b: Counter[str]) -> float | None:
    """Cosine similarity of two count vectors {key: count} (absent keys count 0); None when either
    is empty (MOSES gives NaN). MOSES's ``cos_similarity``, behind Frag and Scaf."""
    if not a or not b:
        return None
    keys = sorted(a.keys() | b.keys())
    u = np.array([a.get(k, 0) for k in keys], dtype=np.float64)
    v = np.array([b.get(k, 0) for k in keys], dtype=np.float64)
    return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))


def _wasserstein(a: np.ndarray, b: np.ndarray) -> float | None:
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(a, b)) if len(a) and len(b) else None


def _as_set(texts: Sequence[str | None] | MoleculeSet, filters: bool, fcd: bool, device: str, processes: int,
            progress: bool, description: str, cache: bool | str | os.PathLike[str] = False) -> MoleculeSet:  # fmt: skip
    if isinstance(texts, MoleculeSet):
        if filters and texts.filters is None:
            raise MetricsError("the generated MoleculeSet was prepared without filters (molecule_set(..., filters=True))")
        return texts
    return molecule_set(texts, filters=filters, fcd=fcd, device=device, processes=processes, progress=progress,
                        description=description, cache=cache)  # fmt: skip


def distribution_metrics(
    generated: Sequence[str | None] | MoleculeSet,
    reference: Sequence[str | None] | MoleculeSet,
    train: set[str] | None = None,
    *,
    fcd: bool = True,
    png: str | Path | None = None,
    unique_k: Iterable[int] = (1000, 10000),
    device: str = "cpu",
    processes: int = 1,
    progress: bool = False,
    timings: dict[str, float] | None = None,
    reference_cache: bool | str | os.PathLike[str] = False,
) -> dict[str, Any]:
    """FCD and the MOSES metrics of ``generated`` against ``reference`` (module docstring).

    Both are SMILES lists (None and unreadable strings count as invalid) or :class:`MoleculeSet`
    (prepare a reference once to compare many sets with it). ``train``: canonical SMILES of the
    training set, for novelty (None: novelty is None). ``fcd=False`` skips ChemNet, the slow part
    (``fcd`` is then None). ``png``: write overlaid property histograms there. ``timings``: filled
    with the CPU seconds of each step. ``reference_cache``: the ``cache`` of :func:`molecule_set`
    for a reference given as SMILES (True: :func:`metrics_cache_dir`). Returns the keys
    :data:`METRIC_NAMES` (with ``unique@k`` for each of ``unique_k``), JSON-ready.
    """
    clock: dict[str, float] = {}
    gen = _as_set(generated, True, fcd, device, processes, progress, "generated")
    ref = _as_set(reference, False, fcd, device, processes, progress, "reference", reference_cache)
    if not len(ref):
        raise MetricsError(f"none of the {ref.n_input} reference molecules is valid")
    result: dict[str, Any] = {"n": gen.n_input, "valid": len(gen) / gen.n_input if gen.n_input else None}
    for k in unique_k:
        result[f"unique@{k}"] = unique_at(gen.smiles, k)
    result["novelty"] = None if train is None or not len(gen) else novelty(set(gen.smiles), train)
    result["n_reference"] = len(ref)
    result.update(dict.fromkeys(METRIC_NAMES[METRIC_NAMES.index("fcd") :]))
    if len(gen):
        _compare(gen, ref, result, fcd, clock, progress)
        if png is not None:
            started = time.perf_counter()
            result["png"] = str(property_histograms(gen.properties, ref.properties, png))
            clock["png"] = time.perf_counter() - started
    if timings is not None:
        for source in (gen, ref):
            for name, value in source.seconds.items():
                timings[name] = timings.get(name, 0.0) + value
        timings.update(clock)
    return result


def _compare(gen: MoleculeSet, ref: MoleculeSet, result: dict[str, Any], fcd: bool, clock: dict[str, float],
             progress: bool) -> None:  # fmt: skip
    """The metrics that need both sets (gen has at least one valid molecule), their CPU seconds
    (of every thread of this process, torch's included) into ``clock``."""
    cpu = time.process_time
    t = cpu()
    if fcd and gen.chemnet is not None and ref.chemnet is not None:
        result["fcd"] = frechet_distance(gen.chemnet, ref.chemnet)
    t = _timed(clock, "fcd (Fréchet distance)", t, cpu)
    result["snn"] = snn(gen.fingerprints, ref.fingerprints, progress=progress)
    t = _timed(clock, "snn", t, cpu)
    result["frag"] = count_similarity(gen.fragments, ref.fragments)
    result["scaf"] = count_similarity(gen.scaffolds, ref.scaffolds)
    t = _timed(clock, "frag + scaf (cosine)", t, cpu)
    result["int_div1"], result["int_div2"] = internal_diversities(gen.fingerprints, (1, 2), progress=progress)
    t = _timed(clock, "int_div1 + int_div2", t, cpu)
    result["filters"] = float(gen.filters.mean()) if gen.filters is not None else None
    for name in PROPERTY_NAMES:
        result[f"{name.lower()}_wasserstein"] = _wasserstein(gen.properties[name], ref.properties[name])
    _timed(clock, "wasserstein", t, cpu)


# ----------------------------------------------------------------------------------------------
# The property plot
# ----------------------------------------------------------------------------------------------


def property_histograms(
    generated: dict[str, np.ndarray], reference: dict[str, np.ndarray], path: str | Path, bins: int = 40
) -> Path:
    """One PNG of four panels (:data:`PROPERTY_NAMES`): density histograms of the generated and the
    reference values overlaid, on shared bins, each panel titled with the Wasserstein distance."""
    from matplotlib.figure import Figure  # a bare Figure: no pyplot state, the caller's backend stays

    path = Path(path)
    fig = Figure(figsize=(13, 3))
    axes = fig.subplots(1, len(PROPERTY_NAMES))
    for ax, name in zip(axes, PROPERTY_NAMES):
        gen, ref = np.asarray(generated[name]), np.asarray(reference[name])
        values = np.concatenate([gen, ref])
        edges = np.histogram_bin_edges(values, bins=bins) if len(values) else bins
        ax.hist(ref, bins=edges, density=True, alpha=0.5, label=f"reference ({len(ref)})")
        ax.hist(gen, bins=edges, density=True, alpha=0.5, label=f"generated ({len(gen)})")
        distance = _wasserstein(gen, ref)
        ax.set_title(name if distance is None else f"{name}: W1 = {distance:.3g}")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    return path
