"""Reading dataset files: formats, line numbers, and clear errors for unusable files."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest

from molks.dataset import DatasetError, load_texts


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_smi_with_names_blank_lines_and_header(tmp_path: Path) -> None:
    path = write(tmp_path / "mols.smi", "SMILES\nCCO ethanol\n\n  c1ccccc1\tbenzene ring  \r\nCC(=O)O\n\n")
    assert load_texts(path) == [(2, "CCO"), (4, "c1ccccc1"), (5, "CC(=O)O")]


def test_txt_whole_lines_keep_spaces(tmp_path: Path) -> None:
    path = write(tmp_path / "expr.txt", "x + 1\n\nsin( x ) * 2\n")
    assert load_texts(path, whole_lines=True) == [(1, "x + 1"), (3, "sin( x ) * 2")]
    assert load_texts(path) == [(1, "x"), (3, "sin(")]  # SMILES reading drops what follows a space


def test_csv_smiles_column_zinc_style_multiline_cells(tmp_path: Path) -> None:
    # ZINC-250k quotes each SMILES with a trailing newline inside: a row spans two lines.
    path = write(tmp_path / "zinc.csv", 'smiles,logP\n"CCO\n",0.1\n\n"c1ccccc1\n",1.5\n')
    assert load_texts(path) == [(2, "CCO"), (5, "c1ccccc1")]


def test_csv_uppercase_column_and_explicit_column(tmp_path: Path) -> None:
    path = write(tmp_path / "m.csv", "id,SMILES,other\n1, CCO ,x\n2,CCN,y\n3\n")
    # A short row has no SMILES cell: kept as an empty item so the pipeline reports it.
    assert load_texts(path) == [(2, "CCO"), (3, "CCN"), (4, "")]
    assert load_texts(path, column="other") == [(2, "x"), (3, "y"), (4, "")]
    assert load_texts(path, column="Other") == [(2, "x"), (3, "y"), (4, "")]  # case-insensitive fallback


def test_tsv_with_column_option(tmp_path: Path) -> None:
    path = write(tmp_path / "m.tsv", "name\tmol\na\tCCO\nb\tCCC\n")
    assert load_texts(path, column="mol") == [(2, "CCO"), (3, "CCC")]


@pytest.mark.parametrize("name", ["m.smi.gz", "m.csv.gz"])
def test_gzipped_files(tmp_path: Path, name: str) -> None:
    text = "SMILES\nCCO\nCCN\n" if ".csv" in name else "CCO a\nCCN b\n"
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()))
    assert [t for _, t in load_texts(path)] == ["CCO", "CCN"]


@pytest.mark.parametrize("column", [None, "smiles", "logP"])
def test_a_column_named_twice_in_the_header_is_refused(tmp_path: Path, column: str | None) -> None:
    path = write(tmp_path / "twice.csv", "smiles,logP,smiles,logP\nCCO,0.5,c1ccccc1,2.0\n")
    named = column or "smiles"
    places = "1, 3" if named == "smiles" else "2, 4"
    with pytest.raises(DatasetError, match=f"the header names 2 columns '{named}' \\(columns {places}\\)") as err:
        load_texts(path, column)
    assert str(err.value).startswith(f"{path}:1:")


def test_missing_column_lists_the_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "m.csv", "id,smile_string,logP\n1,CCO,0.5\n")
    with pytest.raises(DatasetError) as err:
        load_texts(path)
    message = str(err.value)
    assert str(path) in message and "'id', 'smile_string', 'logP'" in message and "column" in message
    with pytest.raises(DatasetError, match="no column 'mol'; the columns are: 'id', 'smile_string', 'logP'"):
        load_texts(path, column="mol")


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.smi", b"", "is empty"),
        ("blank.smi", b"\n  \n\t\n", "is empty"),
        ("header_only.csv", b"smiles,logP\n", "header but no rows"),
        ("nothing.csv", b"", "is empty"),
    ],
)
def test_empty_files(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=reason) as err:
        load_texts(path)
    assert err.value.path == str(path)


def test_binary_junk_is_rejected_with_file_and_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.smi"
    junk.write_bytes(bytes(random.Random(0).getrandbits(8) for _ in range(4096)))
    with pytest.raises(DatasetError, match="binary") as err:
        load_texts(junk)
    assert str(junk) in str(err.value) and err.value.line is not None

    png = tmp_path / "image.smi"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(DatasetError, match=r"image\.smi:1: is not UTF-8 text \(byte 0x89\)"):
        load_texts(png)

    nul = tmp_path / "nul.smi"  # valid UTF-8, but NUL bytes mean binary
    nul.write_bytes(b"CCO\nCC\x00N\n")
    with pytest.raises(DatasetError, match=r"nul\.smi:2: contains NUL bytes"):
        load_texts(nul)


def test_corrupt_gzip(tmp_path: Path) -> None:
    truncated = tmp_path / "t.smi.gz"
    truncated.write_bytes(gzip.compress(b"CCO\n" * 1000)[:40])
    with pytest.raises(DatasetError, match=r"t\.smi\.gz: is a corrupt or truncated gzip file"):
        load_texts(truncated)
    fake = tmp_path / "f.csv.gz"
    fake.write_bytes(b"smiles\nCCO\n")
    with pytest.raises(DatasetError, match="not gzip-compressed"):
        load_texts(fake)


def test_unreadable_paths_and_types(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        load_texts(tmp_path / "missing.smi")
    (tmp_path / "dir.smi").mkdir()
    with pytest.raises(DatasetError, match="is a directory"):
        load_texts(tmp_path / "dir.smi")
    with pytest.raises(DatasetError, match=r"unknown file type '\.xlsx'"):
        load_texts(write(tmp_path / "m.xlsx", "CCO\n"))
    with pytest.raises(DatasetError, match="column='smiles' applies only to .csv and .tsv"):
        load_texts(write(tmp_path / "m.smi", "CCO\n"), column="smiles")


def test_malformed_csv_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.csv", 'smiles\nCCO\n"CC\n')  # a quote never closed
    with pytest.raises(DatasetError, match=r"bad\.csv:\d+: is not valid CSV"):
        load_texts(path)
