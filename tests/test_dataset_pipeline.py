"""load_dataset: RDKit checks, parsing, failures with line numbers, strict mode, caching, workers."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from molks.dataset import CacheWarning, DatasetError, ParsedDataset, load_dataset
from molks.dataset.cache import cache_files
from molks.grammar import Grammar

ROOT = Path(__file__).resolve().parents[1]
SMILES = Grammar.load("smiles")
ARITHMETIC = Grammar.load("arithmetic")


def load(path: Path, grammar: Grammar = SMILES, **options: object) -> ParsedDataset:
    options.setdefault("cache_dir", path.parent / "cache")
    options.setdefault("processes", 1)
    options.setdefault("progress", False)
    return load_dataset(path, grammar, **options)  # type: ignore[arg-type]


@pytest.fixture
def mixed_smi(tmp_path: Path) -> Path:
    """Good molecules with names, a blank line, and one failure of each SMILES kind."""
    path = tmp_path / "mixed.smi"
    path.write_text(
        "OCC ethanol\n"  # 1: canonicalised to CCO
        "C1CC broken_ring\n"  # 2: RDKit syntax error
        "\n"  # 3: blank, skipped
        "c1ccccc1 benzene\n"  # 4
        "N(C)(C)(C)(C)C too_many_bonds\n"  # 5: RDKit valence error
        "[U] uranium\n"  # 6: valid molecule, element not in the grammar
        "CC(=O)O acetic_acid\n",  # 7
        encoding="utf-8",
    )
    return path


def test_invalid_items_are_skipped_with_line_and_reason(mixed_smi: Path) -> None:
    ds = load(mixed_smi)
    assert ds.texts == ["CCO", "c1ccccc1", "CC(=O)O"]
    assert ds.line_numbers.tolist() == [1, 4, 7]
    assert [f.line for f in ds.failures] == [2, 5, 6]
    assert ds.failures[0].reason == "invalid SMILES: RDKit: unclosed ring for input: 'C1CC'"
    assert ds.failures[1].category == "invalid SMILES" and "valence" in ds.failures[1].reason
    assert ds.failures[2].category == "token outside the grammar" and "'U'" in ds.failures[2].reason
    summary = ds.summary()
    assert summary["n_items"] == 6 and summary["n_parsed"] == 3 and summary["n_failed"] == 3
    assert summary["failures_by_reason"] == {"invalid SMILES": 2, "token outside the grammar": 1}
    assert summary["first_failures"][0] == {"line": 2, "reason": ds.failures[0].reason}
    json.dumps(summary)  # JSON-ready


def test_rdkit_prints_nothing(mixed_smi: Path, capfd: pytest.CaptureFixture[str]) -> None:
    load(mixed_smi, use_cache=False)
    assert capfd.readouterr().err == ""


def test_derivations_padded_and_exact(mixed_smi: Path) -> None:
    ds = load(mixed_smi)
    assert ds.ids.dtype == np.int16 and ds.lengths.tolist() == [len(SMILES.parse(t)) for t in ds.texts]
    padded = ds.padded()
    assert padded.shape == (3, ds.longest) and ds.longest == max(ds.lengths)
    for row, text, n in zip(padded, ds.texts, ds.lengths, strict=True):
        assert row[:n].tolist() == SMILES.parse(text)
        assert (row[n:] == SMILES.padding_index).all()
        assert SMILES.derive(row) == text
    wide = ds.padded(max_length=ds.longest + 5, dtype=np.int64)
    assert wide.dtype == np.int64 and (wide[:, ds.longest :] == SMILES.padding_index).all()
    with pytest.raises(ValueError, match="shorter than the longest derivation"):
        ds.padded(max_length=ds.longest - 1)
    picked = ds.select([2, 0])
    assert picked.texts == ["CC(=O)O", "CCO"] and picked.line_numbers.tolist() == [7, 1]
    assert picked.ids_of(0).tolist() == ds.ids_of(2).tolist() and picked.ids_of(1).tolist() == ds.ids_of(0).tolist()


def test_canonicalisation_switch(tmp_path: Path) -> None:
    path = tmp_path / "m.smi"
    path.write_text("OCC\nC(C)(C)O\n")
    assert load(path).texts == ["CCO", "CC(C)O"]
    assert load(path, canonicalize=False).texts == ["OCC", "C(C)(C)O"]


def test_strict_names_file_and_line(mixed_smi: Path) -> None:
    with pytest.raises(DatasetError) as err:
        load(mixed_smi, strict=True, use_cache=False)
    assert str(err.value).startswith(f"{mixed_smi}:2: invalid SMILES: RDKit: unclosed ring")
    assert err.value.line == 2
    load(mixed_smi)  # cache the lenient result: a strict load from the cache must still fail
    with pytest.raises(DatasetError, match=r"mixed\.smi:2: invalid SMILES"):
        load(mixed_smi, strict=True)


def test_max_length_and_empty_cells(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("name,smiles\na,C\nb,CCCCCCCCCCCCCCCCCCCC\nc,\n")
    ds = load(path, max_length=10)
    assert ds.texts == ["C"]
    assert [(f.line, f.category) for f in ds.failures] == [(3, "longer than max_length"), (4, "empty")]


def test_token_outside_grammar_without_canonicalisation(tmp_path: Path) -> None:
    path = tmp_path / "m.smi"
    path.write_text("CC\nC%(123)CC%(123)\n")  # RDKit reads %(nnn) ring bonds; the grammar does not
    ds = load(path, canonicalize=False)
    assert ds.texts == ["CC"] and ds.failures[0].line == 2
    assert ds.failures[0].category == "token outside the grammar"
    assert load(path).texts == ["CC", "C1CC1"]  # canonical SMILES renumbers the ring


def test_expressions_skip_rdkit_and_keep_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "e.txt"
    path.write_text("x + 1\nsin( x ) * 2\nx + y\nx + + 1\n")
    ds = load(path, ARITHMETIC)
    assert ds.texts == ["x + 1", "sin( x ) * 2"]
    assert [(f.line, f.category) for f in ds.failures] == [(3, "token outside the grammar"), (4, "does not parse")]
    assert ds.options["rdkit"] is False and ds.options["canonicalize"] is False


def test_nothing_parses_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.smi"
    path.write_text("hello\nworld\n")
    with pytest.raises(DatasetError, match=r"junk\.smi: none of its 2 items could be used; the first, line 1"):
        load(path)


def test_gzipped_csv_end_to_end(tmp_path: Path) -> None:
    path = tmp_path / "m.csv.gz"
    path.write_bytes(gzip.compress(b'SMILES,logP\n"OCC\n",1.0\n"CCN\n",2.0\n'))
    ds = load(path)
    assert ds.texts == ["CCO", "CCN"] and ds.line_numbers.tolist() == [2, 4]


def test_cache_hit_returns_identical_arrays(mixed_smi: Path) -> None:
    first = load(mixed_smi)
    second = load(mixed_smi)
    assert not first.cache_hit and second.cache_hit
    assert second.texts == first.texts and second.failures == first.failures
    for name in ("ids", "lengths", "line_numbers"):
        a, b = getattr(first, name), getattr(second, name)
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert second.summary() | {"cache_hit": 0, "seconds": 0} == first.summary() | {"cache_hit": 0, "seconds": 0}
    # Other options, or other file content, are other entries.
    assert not load(mixed_smi, canonicalize=False).cache_hit
    assert not load(mixed_smi, max_length=30).cache_hit
    mixed_smi.write_text(mixed_smi.read_text() + "CCC\n")
    assert not load(mixed_smi).cache_hit
    assert not load(mixed_smi, use_cache=False).cache_hit


@pytest.mark.parametrize("damage", ["npz_junk", "npz_truncated", "json_junk", "json_other_key", "ids_out_of_range"])
def test_corrupt_cache_is_rebuilt_with_a_warning(mixed_smi: Path, damage: str) -> None:
    first = load(mixed_smi)
    npz_paths = list((mixed_smi.parent / "cache" / "datasets").glob("*.npz"))
    assert len(npz_paths) == 1
    npz_path = npz_paths[0]
    json_path = npz_path.with_suffix(".json")
    if damage == "npz_junk":
        npz_path.write_bytes(b"not a zip file at all")
    elif damage == "npz_truncated":
        npz_path.write_bytes(npz_path.read_bytes()[:100])
    elif damage == "json_junk":
        json_path.write_text("{ not json")
    elif damage == "json_other_key":
        json_path.write_text(json_path.read_text().replace('"key": "', '"key": "0'))
    else:
        with np.load(npz_path) as npz:
            arrays = {name: npz[name] for name in npz.files}
        arrays["ids"] = arrays["ids"].astype(np.int32) + 1000
        np.savez(npz_path, **arrays)
    with pytest.warns(CacheWarning, match="rebuilding"):
        rebuilt = load(mixed_smi)
    assert not rebuilt.cache_hit and rebuilt.texts == first.texts and np.array_equal(rebuilt.ids, first.ids)
    assert load(mixed_smi).cache_hit  # and the rebuilt entry is written back


def test_cache_files_are_plain_arrays_and_json(mixed_smi: Path) -> None:
    ds = load(mixed_smi)
    [npz_path] = (mixed_smi.parent / "cache" / "datasets").glob("*.npz")
    with np.load(npz_path, allow_pickle=False) as npz:  # loads without pickle
        assert all(npz[name].dtype != object for name in npz.files)
    meta = json.loads(npz_path.with_suffix(".json").read_text())
    assert meta["file_sha256"] == ds.file_sha256 and meta["grammar_hash"] == SMILES.content_hash
    assert cache_files(mixed_smi.parent / "cache", meta["key"])[0] == npz_path
    assert not list(npz_path.parent.glob("*.tmp"))  # no temporary files left behind


def test_worker_pool_matches_inline(tmp_path: Path) -> None:
    lines = (ROOT / "data" / "moses_sample.smi").read_text().split()[:2400]
    lines[1000] = "C1CC"  # one failure inside the second half
    path = tmp_path / "sample.smi"
    path.write_text("\n".join(lines) + "\n")
    pooled = load(path, processes=2, use_cache=False)
    inline = load(path, processes=1, use_cache=False)
    assert pooled.texts == inline.texts and np.array_equal(pooled.ids, inline.ids)
    assert np.array_equal(pooled.line_numbers, inline.line_numbers) and pooled.failures == inline.failures
    assert [f.line for f in pooled.failures] == [1001] and len(pooled) == 2399
