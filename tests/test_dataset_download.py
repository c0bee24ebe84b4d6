"""Downloads, offline: file:// URLs to local files, with right and wrong checksums."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from molks.dataset import DATASETS, DatasetError, download, download_dataset

CONTENT = b'smiles,logP,qed,SAS\n"CCO\n",0.1,0.4,1.9\n"c1ccccc1\n",1.7,0.4,1.0\n'


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "remote" / "zinc.csv"
    path.parent.mkdir()
    path.write_bytes(CONTENT)
    return path


def test_download_with_matching_checksum(tmp_path: Path, source: Path) -> None:
    out = tmp_path / "data" / "zinc250k.csv"
    digest = hashlib.sha256(CONTENT).hexdigest()
    assert download(source.as_uri(), out, digest, progress=False) == out
    assert out.read_bytes() == CONTENT
    assert sorted(p.name for p in out.parent.iterdir()) == ["zinc250k.csv"]  # no temporary file left
    # Present and verified: kept as is, even if the source disappears.
    source.unlink()
    assert download(source.as_uri(), out, digest.upper(), progress=False) == out


def test_checksum_mismatch_deletes_the_download(tmp_path: Path, source: Path) -> None:
    out = tmp_path / "data" / "zinc250k.csv"
    wrong = "0" * 64
    with pytest.raises(DatasetError) as err:
        download(source.as_uri(), out, wrong, progress=False)
    message = str(err.value)
    assert "checksum mismatch" in message and wrong in message
    assert f"--sha256 {hashlib.sha256(CONTENT).hexdigest()}" in message
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_mismatch_leaves_an_existing_file_alone(tmp_path: Path, source: Path) -> None:
    out = tmp_path / "zinc250k.csv"
    out.write_bytes(b"older content")
    with pytest.raises(DatasetError, match="checksum mismatch"):
        download(source.as_uri(), out, "1" * 64, progress=False)
    assert out.read_bytes() == b"older content"


def test_download_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cannot download file://"):
        download((tmp_path / "missing.csv").as_uri(), tmp_path / "out.csv", "0" * 64, progress=False)
    with pytest.raises(DatasetError, match="not a SHA-256 hex digest"):
        download("file:///dev/null", tmp_path / "out.csv", "abc", progress=False)
    assert not (tmp_path / "out.csv").exists()


def test_named_dataset_with_url_override(tmp_path: Path, source: Path) -> None:
    zinc = DATASETS["zinc250k"]
    assert zinc.url.startswith("https://raw.githubusercontent.com/aspuru-guzik-group/chemical_vae/")
    assert "37b9f96470d4471c0593cffefa448e0a8a184ef6" in zinc.url and len(zinc.sha256) == 64
    # The pinned checksum is ZINC's, so the small local file is refused unless its own is given.
    with pytest.raises(DatasetError, match="checksum mismatch"):
        download_dataset("zinc250k", tmp_path / "z.csv", url=source.as_uri(), progress=False)
    out = download_dataset(
        "zinc250k", tmp_path / "z.csv", url=source.as_uri(), sha256=hashlib.sha256(CONTENT).hexdigest(), progress=False
    )
    assert out.read_bytes() == CONTENT
    with pytest.raises(DatasetError, match="unknown dataset 'qm9'; known: zinc250k"):
        download_dataset("qm9", tmp_path / "q.csv")
