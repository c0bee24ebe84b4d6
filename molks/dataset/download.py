"""Downloading public datasets, checked against a pinned SHA-256.

The file is streamed to a temporary name next to the destination, hashed as it arrives, and
renamed into place only when the checksum matches; on a mismatch the temporary file is deleted.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from molks.dataset.errors import DatasetError
from molks.progress import progress_bar
from molks.files import atomic_write, file_sha256

__all__ = ["DATASETS", "RemoteDataset", "download", "download_dataset", "file_sha256"]

_BLOCK = 1 << 20


@dataclass(frozen=True)
class RemoteDataset:
    """A public dataset file: where it is, what it hashes to, what to call it locally."""

    name: str
    url: str
    sha256: str
    filename: str
    description: str


ZINC250K = RemoteDataset(
    name="zinc250k",
    url=(
        "https://raw.githubusercontent.com/aspuru-guzik-group/chemical_vae/"
        "37b9f96470d4471c0593cffefa448e0a8a184ef6/models/zinc_properties/250k_rndm_zinc_drugs_clean_3.csv"
    ),
    # Not yet checked against a real download by anyone: if the first download reports a mismatch,
    # inspect the file and pass the reported hash with --sha256 (and fix it here).
    sha256="35e3f1a52b1badc0697e373d73a18ad773f415936ff992f4c6baa2e067b3e6ae",
    filename="zinc250k.csv",
    description="ZINC-250k as used by the Grammar VAE and chemical VAE papers (CSV: smiles, logP, qed, SAS)",
)
DATASETS: dict[str, RemoteDataset] = {ZINC250K.name: ZINC250K}


def download(
    url: str, out: str | os.PathLike[str], sha256: str, *, progress: bool = True, timeout: float = 60.0
) -> Path:
    """Fetch ``url`` to ``out`` if its SHA-256 is ``sha256``; returns ``out``.

    An ``out`` that already holds the right bytes is kept without downloading. Raises
    :class:`DatasetError` when the download fails or the checksum does not match (the partial
    file is removed and ``out`` is left as it was), :class:`~molks.errors.FileAccessError` when
    ``out`` cannot be written.
    """
    out = Path(out).expanduser()
    expected = sha256.strip().lower()
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise DatasetError(None, f"{sha256!r} is not a SHA-256 hex digest (64 hex digits)")
    if out.is_file() and file_sha256(out) == expected:
        return out

    def fetch(f: IO[bytes]) -> None:
        actual = _stream(url, f, timeout=timeout, progress=progress)
        if actual != expected:
            raise DatasetError(
                None,
                f"checksum mismatch for {url}: expected SHA-256 {expected}, got {actual}; the download was "
                f"deleted. If you trust this file, pass --sha256 {actual}",
            )

    atomic_write(out, fetch)  # renamed into place only when the checksum matches
    return out


def _stream(url: str, f: IO[bytes], *, timeout: float, progress: bool) -> str:
    """Copy ``url`` into ``f``; returns the SHA-256 of what arrived."""
    digest = hashlib.sha256()
    try:
        response = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 -- the user's URL, by design
    except (OSError, ValueError, http.client.HTTPException) as err:  # URLError is an OSError
        reason = getattr(err, "reason", err)
        raise DatasetError(None, f"cannot download {url}: {reason}") from None
    length = response.headers.get("Content-Length") if getattr(response, "headers", None) else None
    total = int(length) if length and str(length).isdigit() else None
    with response, progress_bar(total, url.rsplit("/", 1)[-1], progress, unit="B", unit_scale=True, unit_divisor=1024) as bar:
        try:
            while block := response.read(_BLOCK):
                digest.update(block)
                f.write(block)
                bar.update(len(block))
        except (OSError, http.client.HTTPException) as err:
            raise DatasetError(None, f"download of {url} broke off: {err!r}") from None
    return digest.hexdigest()


def download_dataset(
    name: str,
    out: str | os.PathLike[str] | None = None,
    *,
    url: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
) -> Path:
    """Fetch a dataset of :data:`DATASETS` (to ``out``, default ``<cache dir>/<its filename>``).

    ``url`` and ``sha256`` override the pinned ones. Note: the SHA-256 pinned for ``zinc250k``
    (35e3f1a5...) has not yet been checked against a real download by anyone; if it reports a
    mismatch, inspect the file and pass the reported checksum with ``sha256`` / ``--sha256``.
    """
    if name not in DATASETS:
        raise DatasetError(None, f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    dataset = DATASETS[name]
    if out is None:
        from molks.dataset.cache import default_cache_dir

        out = default_cache_dir() / dataset.filename
    return download(url or dataset.url, out, sha256 or dataset.sha256, progress=progress)
