"""FCD and the MOSES metrics on small hand-made sets whose answers are known (real RDKit, real fcd)."""

from __future__ import annotations

import csv
import math
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rdkit import Chem, DataStructs, RDConfig
from rdkit.Chem import QED, Crippen, Descriptors, rdFingerprintGenerator
from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogParams

from molks.dataset import CacheWarning
from molks.errors import MolksError
from molks.metrics import (
    MCF_SMARTS,
    METRIC_NAMES,
    PROPERTY_NAMES,
    MetricsError,
    MoleculeSet,
    _chemnet_predict,
    _pains_hits,
    aggregated_tanimoto,
    brics_fragments,
    chemnet_activations,
    chemnet_statistics,
    count_similarity,
    distribution_metrics,
    frechet_distance,
    internal_diversities,
    internal_diversity,
    metrics_cache_dir,
    molecule_properties,
    molecule_set,
    molecule_set_key,
    morgan_fingerprints,
    murcko_scaffold,
    passes_filters,
    snn,
    tanimoto_pairs,
    unique_at,
)

# Two molecules on one two-ring scaffold (naphthalene) and two on another (biphenyl).
NAPHTHALENES = ["Cc1ccc2ccccc2c1", "Oc1ccc2ccccc2c1", "Nc1ccc2ccccc2c1", "CCc1ccc2ccccc2c1"]
BIPHENYLS = ["Cc1ccc(-c2ccccc2)cc1", "Oc1ccc(-c2ccccc2)cc1"]
ACYCLIC = ["CCO", "CCN", "CCCC", "CC(C)O"]


def mols(smiles: list[str]) -> list[Chem.Mol]:
    return [Chem.MolFromSmiles(s) for s in smiles]


def rdkit_tanimoto(a: str, b: str) -> float:
    """Tanimoto of two molecules through RDKit's own bit vectors (independent of our numpy path)."""
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    return DataStructs.TanimotoSimilarity(generator.GetFingerprint(Chem.MolFromSmiles(a)),
                                          generator.GetFingerprint(Chem.MolFromSmiles(b)))  # fmt: skip


# -- identical, disjoint, one scaffold ---------------------------------------------------------


def test_identical_sets_score_perfectly(moses_smiles: list[str]) -> None:
    sample = moses_smiles[:60]
    m = distribution_metrics(sample, sample, train=set())
    assert tuple(m) == METRIC_NAMES
    assert m["valid"] == 1.0 and m["n"] == 60 and m["n_reference"] == 60
    assert m["snn"] == pytest.approx(1.0) and m["frag"] == pytest.approx(1.0) and m["scaf"] == pytest.approx(1.0)
    assert m["fcd"] == pytest.approx(0.0, abs=1e-3)
    for name in ("logp", "sa", "qed", "weight"):
        assert m[f"{name}_wasserstein"] == pytest.approx(0.0, abs=1e-12)
    assert m["novelty"] == 1.0 and m["unique@1000"] == 1.0 and m["filters"] == 1.0  # MOSES data passes its filters


def test_disjoint_sets(moses_smiles: list[str]) -> None:
    m = distribution_metrics(NAPHTHALENES, BIPHENYLS + ACYCLIC, train=set(NAPHTHALENES[:1]))
    assert m["scaf"] == 0.0  # no shared scaffold
    assert m["novelty"] == pytest.approx(3 / 4)
    assert 0.0 < m["snn"] < 1.0
    assert m["fcd"] > 1.0  # far apart
    # Methane against ethane: every property differs by one constant, the Wasserstein distance.
    w = distribution_metrics(["C"] * 3, ["CC"] * 5, fcd=False)
    assert w["weight_wasserstein"] == pytest.approx(Descriptors.MolWt(Chem.MolFromSmiles("CC")) - Descriptors.MolWt(Chem.MolFromSmiles("C")))
    assert w["frag"] == 0.0 and w["scaf"] is None  # disjoint fragments; no molecule has a scaffold
    assert w["fcd"] is None and w["snn"] == 0.0  # --no-fcd; no shared Morgan bit


def test_one_scaffold() -> None:
    assert {murcko_scaffold(m) for m in mols(NAPHTHALENES)} == {"c1ccc2ccccc2c1"}
    assert murcko_scaffold(Chem.MolFromSmiles("Cc1ccccc1")) is None  # one ring: left out, as MOSES does
    m = distribution_metrics(NAPHTHALENES[:2], NAPHTHALENES[2:], fcd=False)
    assert m["scaf"] == pytest.approx(1.0)  # same single scaffold, different substituents
    assert m["frag"] < 1.0 and m["snn"] < 1.0


# -- each metric by hand -----------------------------------------------------------------------


def test_internal_diversity_by_hand() -> None:
    one = morgan_fingerprints(mols(["c1ccccc1O"] * 5))
    assert internal_diversity(one) == pytest.approx(0.0) and internal_diversity(one, 2) == pytest.approx(0.0)
    a, b = "CCOc1ccccc1", "CCNc1ccccc1"
    t = rdkit_tanimoto(a, b)
    pair = morgan_fingerprints(mols([a, b]))
    # All ordered pairs with the diagonal: (1 + t + t + 1) / 4; IntDiv2 as MOSES's code averages.
    assert internal_diversity(pair) == pytest.approx((1 - t) / 2)
    assert internal_diversity(pair, 2) == pytest.approx(1 - math.sqrt((1 + t * t) / 2))


def test_snn_and_tanimoto_agree_with_rdkit(moses_smiles: list[str]) -> None:
    gen, ref = moses_smiles[:25], moses_smiles[100:140]
    expected = np.mean([max(rdkit_tanimoto(g, r) for r in ref) for g in gen])
    # float32 quotients, as MOSES's torch code: within 1e-6
    assert snn(morgan_fingerprints(mols(gen)), morgan_fingerprints(mols(ref))) == pytest.approx(expected, abs=1e-6)
    pairs = tanimoto_pairs(morgan_fingerprints(mols(gen)), morgan_fingerprints(mols(ref[:25])))
    assert pairs == pytest.approx([rdkit_tanimoto(g, r) for g, r in zip(gen, ref)], abs=1e-12)
    with pytest.raises(MetricsError, match="differ in shape"):
        tanimoto_pairs(np.zeros((2, 8)), np.zeros((3, 8)))


def test_unique_at_and_count_similarity() -> None:
    assert unique_at(["CCO", "CCO", "CCN"], 2) == 0.5
    assert unique_at(["CCO", "CCO", "CCN"], 1000) == pytest.approx(2 / 3)  # fewer than k: all, as MOSES
    assert unique_at([], 10) is None
    assert count_similarity(Counter(a=1, b=1), Counter(a=3)) == pytest.approx(1 / math.sqrt(2))
    assert count_similarity(Counter(a=2, b=4), Counter(a=1, b=2)) == pytest.approx(1.0)
    assert count_similarity(Counter(), Counter(a=1)) is None
    assert sorted(brics_fragments(Chem.MolFromSmiles("CCOC(=O)c1ccccc1"))) == sorted(
        Chem.MolToSmiles(Chem.rdmolops.FragmentOnBRICSBonds(Chem.MolFromSmiles("CCOC(=O)c1ccccc1"))).split(".")
    )


def test_frechet_distance_of_known_gaussians_and_fcd_package() -> None:
    import fcd

    eye = np.eye(2)
    assert frechet_distance((np.zeros(2), eye), (np.ones(2), eye)) == pytest.approx(2.0)  # |mu|^2 only
    assert frechet_distance((np.zeros(2), eye), (np.zeros(2), 4 * eye)) == pytest.approx(2.0)  # (1 - 2)^2 per axis
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 16)), rng.normal(size=(300, 16)) * 1.3 + 0.2
    stats = [(x.mean(0), np.cov(x, rowvar=False)) for x in (a, b)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fcd 1.2 passes scipy's deprecated disp=
        reference = fcd.calculate_frechet_distance(stats[0][0], stats[0][1], stats[1][0], stats[1][1])
    assert frechet_distance(*stats) == pytest.approx(reference, rel=1e-9)


# -- filters ------------------------------------------------------------------------------------


def test_moses_filters_on_known_molecules() -> None:
    assert len(MCF_SMARTS) == 22 and all(Chem.MolFromSmarts(s) is not None for _, s in MCF_SMARTS)
    cases = {
        "CC(=O)Nc1ccc(O)cc1": True,  # paracetamol
        "C[N+](C)(C)C": False,  # charged
        "C1CCCCCCC1": False,  # ring of 8
        "CP(C)C": False,  # phosphorus is not allowed
        "CC=O": False,  # MCF: aldehyde
        "ClCCc1ccccc1": False,  # MCF: alkyl halide, a pattern of explicit [H] atoms
        "Cc1ccco1": True,  # MCF's FURAN is written with Kekule bonds: aromatic furans pass, as in MOSES
        "CC1CO1": False,  # MCF: epoxide
    }
    assert passes_filters(mols(list(cases))).tolist() == list(cases.values())


def test_pains_agree_with_rdkit_filter_catalog() -> None:
    path = Path(RDConfig.RDDataDir) / "Pains" / "test_data" / "wehi_mols.csv"
    with open(path, newline="") as f:
        molecules = [m for m in (Chem.MolFromSmiles(row[0]) for row in csv.reader(f)) if m is not None][:300]
    params = FilterCatalogParams()
    params.AddCatalog(FilterCatalogParams.FilterCatalogs.PAINS)
    catalog = FilterCatalog(params)
    expected = {i for i, m in enumerate(molecules) if catalog.HasMatch(m)}
    assert expected  # the WEHI test set has PAINS
    assert _pains_hits(molecules) == expected


# -- sets, invalid input, reuse, the PNG ---------------------------------------------------------


def test_invalid_molecules_and_errors(tmp_path: Path) -> None:
    m = distribution_metrics(["CCO", None, "C1CC", "not a molecule", "CCN", "CCO"], ACYCLIC, fcd=False)
    assert m["valid"] == pytest.approx(3 / 6) and m["unique@1000"] == pytest.approx(2 / 3)
    none_valid = distribution_metrics([None, "C1CC"], ACYCLIC, png=tmp_path / "never.png")
    assert none_valid["valid"] == 0.0 and none_valid["snn"] is None and none_valid["fcd"] is None
    assert none_valid["png"] is None and not (tmp_path / "never.png").exists()
    with pytest.raises(MetricsError, match="none of the 2 reference molecules") as err:
        distribution_metrics(ACYCLIC, ["C1CC", ""])
    assert isinstance(err.value, MolksError) and isinstance(err.value, ValueError)  # bad input: one line, exit 2
    with pytest.raises(MetricsError, match="list of SMILES"):
        molecule_set("CCO")


def test_a_prepared_reference_and_worker_processes_give_the_same_numbers(moses_smiles: list[str], tmp_path: Path) -> None:
    gen, ref = moses_smiles[:30], moses_smiles[30:70]
    direct = distribution_metrics(gen, ref, fcd=False)
    prepared = molecule_set(ref, fcd=False)
    parallel = molecule_set(gen, filters=True, fcd=False, processes=2, chunk_size=10)
    assert distribution_metrics(parallel, prepared, fcd=False) == direct
    assert parallel.smiles == [Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in gen]
    timings: dict[str, float] = {}
    png = tmp_path / "plots" / "properties.png"
    with_png = distribution_metrics(gen, prepared, fcd=False, png=png, timings=timings)
    assert with_png["png"] == str(png) and {"parse", "filters", "snn", "int_div1 + int_div2"} <= set(timings)
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > image.size[1] > 0


# -- speed-ups that must not change a number ------------------------------------------------------


def test_properties_computed_once_equal_rdkit_descriptors(moses_smiles: list[str]) -> None:
    # QED's own logP and weight stand in for Crippen.MolLogP and Descriptors.MolWt: the same numbers.
    odd = ["[2H]C([2H])([2H])O", "[H]OC([H])([H])C", "C[C@H](N)C(=O)O", "[NH4+].[Cl-]", "c1ccccc1[N+](=O)[O-]"]
    for mol in mols(moses_smiles[:300] + odd):
        logp, _, qed, weight = molecule_properties(mol)
        assert (logp, qed, weight) == (Crippen.MolLogP(mol), QED.qed(mol), Descriptors.MolWt(mol))


def test_internal_diversities_in_one_symmetric_pass(moses_smiles: list[str]) -> None:
    fps = morgan_fingerprints(mols(moses_smiles[:70] + moses_smiles[:5]))  # with duplicates
    fps = np.concatenate([fps, np.zeros((2, fps.shape[1]), dtype=np.uint8)])  # two empty fingerprints
    one, two = internal_diversities(fps, (1, 2), block=16)  # blocks that do not divide 77
    for p, value in ((1, one), (2, two)):
        expected = 1.0 - aggregated_tanimoto(fps, fps, "mean", p).mean()
        assert value == pytest.approx(expected, abs=1e-12)
        assert internal_diversity(fps, p) == pytest.approx(expected, abs=1e-12)


def test_chemnet_matches_the_fcd_package(moses_smiles: list[str]) -> None:
    import fcd

    sample = moses_smiles[:20]
    model = fcd.load_ref_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fcd 1.2 calls numpy's row_stack
        expected = fcd.get_predictions(model, sample, batch_size=8, n_jobs=0, device="cpu")
    assert np.array_equal(_chemnet_predict(model, sample, 8, "cpu"), expected)
    # Prepared with ChemNet in the background thread, distinct molecules once: the same statistics.
    texts = sample + sample[:6] + [None]
    prepared = molecule_set(texts, chunk_size=7)
    direct = chemnet_statistics(chemnet_activations(prepared.smiles))
    assert prepared.chemnet is not None and "chemnet" in prepared.seconds
    for got, want in zip(prepared.chemnet, direct):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    # With the RDKit work in worker processes, ChemNet still runs beside it: the same set.
    assert_same_set(molecule_set(texts, chunk_size=7, processes=2), prepared)


def test_duplicates_are_featurised_once_with_the_same_result(moses_smiles: list[str]) -> None:
    # A chunk computes features once per distinct string; chunks of one string cannot.
    spelled = ["OCC", "C(O)C", "CCO", "OCC"]  # one molecule, three spellings (their logP differ in the last bit)
    texts = moses_smiles[:12] + moses_smiles[:4] + spelled + [None, "C1CC"]
    together = molecule_set(texts, filters=True, fcd=False)
    alone = molecule_set(texts, filters=True, fcd=False, chunk_size=1)
    assert_same_set(together, alone)
    assert together.smiles[-4:] == ["CCO"] * 4


# -- the on-disk cache of prepared sets -----------------------------------------------------------


def assert_same_set(a: MoleculeSet, b: MoleculeSet) -> None:
    """Every field the metrics read is equal (seconds and the cached flag may differ)."""
    assert a.n_input == b.n_input and a.smiles == b.smiles
    assert a.fingerprints.dtype == b.fingerprints.dtype and np.array_equal(a.fingerprints, b.fingerprints)
    assert a.fragments == b.fragments and a.scaffolds == b.scaffolds
    assert set(a.properties) == set(b.properties) == set(PROPERTY_NAMES)
    for name in PROPERTY_NAMES:
        assert np.array_equal(a.properties[name], b.properties[name])
    assert (a.filters is None) == (b.filters is None)
    if a.filters is not None:
        assert np.array_equal(a.filters, b.filters)
    assert (a.chemnet is None) == (b.chemnet is None)
    if a.chemnet is not None and b.chemnet is not None:
        assert np.array_equal(a.chemnet[0], b.chemnet[0]) and np.array_equal(a.chemnet[1], b.chemnet[1])


def test_the_cache_gives_back_the_same_set_and_metrics(moses_smiles: list[str], tmp_path: Path) -> None:
    reference = moses_smiles[200:230] + [None, "not a molecule", moses_smiles[200]]
    generated = moses_smiles[:25]
    built = molecule_set(reference, cache=tmp_path)
    assert not built.cached and len(list(tmp_path.glob("molecule-set-*.npz"))) == 1
    read = molecule_set(reference, cache=tmp_path)
    assert read.cached and set(read.seconds) == {"cache"}
    assert_same_set(read, built)
    assert_same_set(read, molecule_set(reference))  # and no cache at all
    direct = distribution_metrics(generated, reference, train=set())
    assert distribution_metrics(generated, reference, train=set(), reference_cache=tmp_path) == direct
    # Generated sets (with filters) round-trip too; so does an empty set.
    flagged = molecule_set(generated, filters=True, fcd=False, cache=tmp_path)
    assert_same_set(molecule_set(generated, filters=True, fcd=False, cache=tmp_path), flagged)
    empty = molecule_set([None, "C1CC"], cache=tmp_path)
    assert_same_set(molecule_set([None, "C1CC"], cache=tmp_path), empty)


def test_a_corrupt_cache_file_is_rebuilt_with_a_warning(moses_smiles: list[str], tmp_path: Path) -> None:
    reference = moses_smiles[300:320]
    built = molecule_set(reference, fcd=False, cache=tmp_path)
    (path,) = tmp_path.glob("molecule-set-*.npz")
    good = path.read_bytes()
    for damage in (good[: len(good) // 2], b"not an npz file", b""):
        path.write_bytes(damage)
        with pytest.warns(CacheWarning, match="unusable metrics cache"):
            rebuilt = molecule_set(reference, fcd=False, cache=tmp_path)
        assert not rebuilt.cached
        assert_same_set(rebuilt, built)
        assert path.read_bytes() == good or molecule_set(reference, fcd=False, cache=tmp_path).cached  # rewritten
    # A whole file of another entry under this entry's name is refused too.
    other = molecule_set(moses_smiles[400:410], fcd=False, cache=tmp_path / "other")
    assert other is not None
    (other_path,) = (tmp_path / "other").glob("molecule-set-*.npz")
    path.write_bytes(other_path.read_bytes())
    with pytest.warns(CacheWarning, match="another cache entry"):
        assert_same_set(molecule_set(reference, fcd=False, cache=tmp_path), built)
    # A cache that cannot be written is a warning, not an error.
    blocked = tmp_path / "a file"
    blocked.write_text("")
    with pytest.warns(CacheWarning, match="could not write"):
        assert_same_set(molecule_set(reference, fcd=False, cache=blocked / "cache"), built)


def test_the_cache_key_changes_with_the_reference_and_the_settings(moses_smiles: list[str]) -> None:
    reference = moses_smiles[:50]
    key = molecule_set_key(reference, filters=False, fcd=True)
    assert key == molecule_set_key(list(reference), filters=False, fcd=True)
    changed = [
        reference[:49],  # one molecule fewer
        reference[:49] + ["CCO"],  # one molecule other
        reference[::-1],  # another order
        reference + [None],  # an invalid item more
        ["C(O)C" if s == reference[0] else s for s in reference],  # one respelled
    ]
    keys = {molecule_set_key(r, filters=False, fcd=True) for r in changed}
    keys |= {molecule_set_key(reference, filters=True, fcd=True), molecule_set_key(reference, filters=False, fcd=False)}
    assert key not in keys and len(keys) == len(changed) + 2


def test_the_cache_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MOLKS_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert metrics_cache_dir() == tmp_path / "xdg" / "molks" / "metrics"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # the XDG spec says: ignore it
    assert metrics_cache_dir() == Path.home() / ".cache" / "molks" / "metrics"
    monkeypatch.setenv("MOLKS_CACHE_DIR", str(tmp_path / "mine"))  # molks's own setting comes first
    assert metrics_cache_dir() == tmp_path / "mine" / "metrics"
    molecule_set(["CCO", "CCN"], fcd=False, cache=True)
    assert len(list((tmp_path / "mine" / "metrics").glob("molecule-set-*.npz"))) == 1
